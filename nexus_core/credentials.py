"""Credentials kept out of text that people or logs see: URLs shown without their user info,
messages scrubbed of ``scheme://user:pass@``, ``password=…`` pairs and the secrets we know.

Two uses, one rule set: a provider's error names the URL it could not reach with `safe_url`
(built from the URL's parts, so nothing but scheme, host, port and path survives); a health check
describes a driver's failure with `scrub`, which cannot parse free text and so removes what a
credential looks like in it, plus every secret it is given (`url_passwords` finds the password of
a URL as written and decoded).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, urlsplit

REDACTED: Final = "[redacted]"
UNPRINTABLE_URL: Final = "(the configured URL)"

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]*@")
_PASSWORD_PAIR = re.compile(r"(?i)\b(password|passwd|pwd)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)")


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return UNPRINTABLE_URL
    if not parts.scheme or not parts.hostname:
        return UNPRINTABLE_URL
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without URL credentials, ``password=`` values or the given secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    return _PASSWORD_PAIR.sub(rf"\1\2{REDACTED}", text)


def url_passwords(url: str) -> tuple[str, ...]:
    """The password in ``url`` as written and decoded, so messages can be scrubbed of both."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    if not password:
        return ()
    return tuple({password, unquote(password)})
