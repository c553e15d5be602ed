"""Webhook messages about alerts: the body, its signature and its delivery.

One body serves both kinds of receiver: the generic fields (``rule``, ``state``, ``severity``,
``summary``, ``value``, ``threshold``, ``started_at``, links, …) and Slack's ``text`` plus
``blocks``, so the same POST is a valid Slack incoming-webhook message. With a secret, the raw
body is signed: ``X-Nexus-Signature: sha256=<hex HMAC-SHA256 of the body>``; a receiver
recomputes it over the bytes it got (``verify_signature``).

Delivery tries ``ATTEMPTS`` times with exponential backoff and jitter (tenacity), each try with
a short timeout, and returns what happened instead of raising: a dead webhook is recorded, it
never stops an evaluation. A webhook URL may itself be a secret (Slack's are), so what is
stored and shown of it is its host and a short hash (``target_label``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from nexus_core.errors import ValidationError

SIGNATURE_HEADER: Final = "X-Nexus-Signature"
SIGNATURE_PREFIX: Final = "sha256="
ATTEMPTS: Final = 3
TIMEOUT_SECONDS: Final = 5.0
BACKOFF_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 4.0
MAX_ERROR_CHARS: Final = 200
USER_AGENT: Final = "nexus-ai-alerts"
STATE_ICONS: Final = {"firing": "🚨", "resolved": "✅"}
SLACK_ESCAPES: Final = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


@dataclass(frozen=True)
class Delivery:
    """What one webhook made of one message: sent, or failed with the reason."""

    target: str
    sent: bool
    attempts: int
    status_code: int | None
    error: str | None


def target_label(url: str) -> str:
    """A webhook as it may be stored and shown: its host and a short hash of the whole URL."""
    host = urlsplit(url).hostname or "?"
    return f"{host} #{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def check_url(url: str) -> str:
    """``url`` stripped, if it is an http(s) URL with a host; ValidationError otherwise."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        httpx.URL(url).port  # noqa: B018  (a port that is not a number, an unclosed [ …)
        parts.port  # noqa: B018
    except (ValueError, httpx.InvalidURL):
        usable = False
    if not usable:
        raise ValidationError("A webhook is an http:// or https:// URL with a host.")
    return url


def sign(body: bytes, secret: str) -> str:
    """The header value that signs ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is ``body``'s signature with ``secret`` (compared in constant time)."""
    return header is not None and hmac.compare_digest(header, sign(body, secret))


def _slack(text: str) -> str:
    for raw, escaped in SLACK_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def message(fields: dict[str, Any], links: dict[str, str]) -> dict[str, Any]:
    """The body: the generic ``fields`` and ``links``, plus Slack's ``text`` and ``blocks``."""
    state = fields["state"]
    again = " (still firing)" if fields.get("renotification") else ""
    headline = (
        f"{STATE_ICONS.get(state, '')} [{state.upper()} · {fields['severity']}]{again} "
        f"{fields['summary']}"
    ).strip()
    link_line = " · ".join(f"<{url}|{_slack(name)}>" for name, url in links.items())
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack(headline)}},
    ]
    if link_line:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link_line}]})
    return {**fields, "links": links, "text": headline, "blocks": blocks}


def encode(body: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _describe(outcome: httpx.Response | Exception) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    text = f"{type(outcome).__name__}"
    return text[:MAX_ERROR_CHARS]


class WebhookSender:
    """POSTs messages to webhooks with retries; ``sleep`` is injectable so tests do not wait."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        http: httpx.Client | None = None,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.secret = secret
        self.http = http or httpx.Client(
            timeout=TIMEOUT_SECONDS, headers={"user-agent": USER_AGENT}, follow_redirects=False
        )
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def send(self, url: str, body: dict[str, Any]) -> Delivery:
        """POST ``body`` to ``url`` until a 2xx answer or the last attempt; never raises."""
        data = encode(body)
        headers = {"content-type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(data, self.secret)

        def post() -> httpx.Response | Exception:
            try:
                return self.http.post(url, content=data, headers=headers)
            except Exception as exc:  # refused, timed out, a URL httpx cannot use: recorded
                return exc

        options: dict[str, Any] = {}
        if self.sleep is not None:
            options["sleep"] = self.sleep
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_seconds,
                max=BACKOFF_MAX_SECONDS,
                jitter=self.backoff_seconds,
            ),
            retry=retry_if_result(lambda outcome: not _delivered(outcome)),
            retry_error_callback=_last_outcome,
            **options,
        )
        outcome = retrying(post)
        attempts = retrying.statistics.get("attempt_number", 1)
        code = outcome.status_code if isinstance(outcome, httpx.Response) else None
        if _delivered(outcome):
            return Delivery(target_label(url), True, attempts, code, None)
        return Delivery(target_label(url), False, attempts, code, _describe(outcome))

    def close(self) -> None:
        self.http.close()


def _delivered(outcome: httpx.Response | Exception) -> bool:
    return isinstance(outcome, httpx.Response) and outcome.is_success


def _last_outcome(state: RetryCallState) -> httpx.Response | Exception:
    return state.outcome.result()  # type: ignore[union-attr]
