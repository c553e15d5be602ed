"""Streamlit's page at an address of more than one segment (``/a/b``, ``/dashboard/x``).

Streamlit 1.67 answers any unknown address with its ``index.html``, whose scripts and styles are
relative (``./static/js/…``): at ``/a/b`` the browser asks for ``/a/static/js/…``, gets the same
HTML back instead of JavaScript and shows a blank page. Its frontend also looks for the server
only at the address and its parent (``/a/b``, ``/a``), never at the root.

``NestedAddresses`` serves that HTML at such an address with the app's root as its base: a
``<base href>`` for the relative assets and ``window.__streamlit.BACKEND_BASE_URL`` (the
frontend's own setting for where the server is) for the connection. The address stays as
typed; the app then runs with that page name and ``nexus_core.ui.nav`` answers it with the
friendly 404.
"""

from __future__ import annotations

import json

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Streamlit's own prefixes: never a page.
RESERVED_PREFIXES = frozenset({"_stcore", "static", "media", "component"})
# The frontend's entry script in index.html: what tells its HTML from any other.
INDEX_MARKER = b'src="./static/js/index.'
HEAD = b"<head>"


def is_nested_address(path: str, base_path: str = "") -> bool:
    """Whether ``path`` (below ``base_path``, Streamlit's ``server.baseUrlPath``) names a page
    address of more than one segment, outside Streamlit's reserved prefixes."""
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if base and not (path == base or path.startswith(base + "/")):
        return False
    segments = path[len(base) :].strip("/").split("/")
    return len(segments) > 1 and segments[0] not in RESERVED_PREFIXES


def root_base_tags(base_path: str = "") -> bytes:
    """What goes first in the page's ``<head>``: the app's root as the base of its relative
    addresses and of the frontend's connection to the server."""
    root = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
    # json.dumps quotes the path for JavaScript; the URL is resolved against the page's origin.
    script = (
        "window.__streamlit = Object.assign({}, window.__streamlit, "
        f"{{BACKEND_BASE_URL: new URL({json.dumps(root)}, location.origin).href}});"
    )
    return f'<base href="{root}"><script>{script}</script>'.encode()


class NestedAddresses:
    """Rewrites Streamlit's HTML at a nested address so that it loads from the app's root."""

    def __init__(self, app: ASGIApp, base_path: str = "") -> None:
        self.app = app
        self.base_path = base_path  # Streamlit's server.baseUrlPath, which app.py reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not is_nested_address(scope["path"], self.base_path)
        ):
            await self.app(scope, receive, send)
            return
        # The HTML is read and changed here, so it must come uncompressed.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                content_type = MutableHeaders(raw=message["headers"]).get("content-type", "")
                if message["status"] == 200 and content_type.startswith("text/html"):
                    start = message  # held until the whole body is here
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                html = bytes(body)
                if INDEX_MARKER not in html or HEAD not in html:
                    await send(start)
                    await send({"type": "http.response.body", "body": html, "more_body": False})
                    return
                html = html.replace(HEAD, HEAD + root_base_tags(self.base_path), 1)
                response_headers = MutableHeaders(raw=list(start["headers"]))
                response_headers["content-length"] = str(len(html))
                # Not the file's validators: a copy cached before this rewrite must not be reused.
                del response_headers["etag"]
                del response_headers["last-modified"]
                await send({**start, "headers": response_headers.raw})
                await send({"type": "http.response.body", "body": html, "more_body": False})
                return
            await send(message)

        await self.app({**scope, "headers": headers}, receive, rewrite)
