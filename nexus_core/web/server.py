"""The ASGI side of the app: `/health`, `/metrics`, the login cookie's routes
(``session_cookie``), security headers, pages at nested addresses (``nested_addresses``), branded
404 and the script error handler that `app.py` hands to ``st.App``."""

from __future__ import annotations

import functools
import html
import logging
import sys
from collections.abc import Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_core.ai.lanes import live_lane_loads
from nexus_core.errors import ConfigError
from nexus_core.ops.health import run_health
from nexus_core.ops.incidents import withhold_exception_text
from nexus_core.settings import Settings, load_settings
from nexus_core.web import session_cookie
from nexus_core.web.nested_addresses import NestedAddresses

log = logging.getLogger("nexus.server")

BASE_SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"strict-origin-when-cross-origin",
    b"x-frame-options": b"SAMEORIGIN",
}
# What the browser may fetch, whatever a renderer let through: images, connections and frames
# from the app itself (Streamlit draws data: and blob: images and runs components in frames of
# its own origin), images also from the allow-listed hosts.
CONTENT_SECURITY_POLICY = (
    "frame-ancestors 'self'",
    "img-src 'self' data: blob:{image_hosts}",
    "connect-src 'self'",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
)
NOT_FOUND_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Not found · Nexus AI</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;
color:#1f2937}}a{{color:#4F46E5}}</style></head><body>
<h1>🧠 Nexus AI</h1><h2>We could not find that page</h2>
<p>There is nothing at <code>{path}</code>. It may have moved, or the link may be mistyped.</p>
<p><a href="/">Back to Nexus AI</a></p></body></html>"""


async def health(request: Request) -> JSONResponse:
    """``GET /health``: 200 when every configured check passes, else 503; never a secret."""
    settings = load_settings()
    # A fresh connection each time: health must not depend on the app's pool or schema. The
    # worker pools are read where they live, without building the app's context.
    report = await run_in_threadpool(
        functools.partial(run_health, settings, lanes=live_lane_loads())
    )
    return JSONResponse(
        report.to_dict(), status_code=report.http_status, headers={"cache-control": "no-store"}
    )


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    from nexus_core.ui.resources import get_context  # the pages' context holds the counters

    try:
        ctx = await run_in_threadpool(get_context)
    except Exception as exc:  # not initialised yet: say so without details
        log.warning("metrics unavailable: %s", type(exc).__name__)
        return PlainTextResponse("# metrics unavailable: app not initialised\n", status_code=503)
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


async def not_found(request: Request, exc: Exception) -> HTMLResponse:
    """A branded 404 with a way back."""
    return HTMLResponse(NOT_FOUND_PAGE.format(path=html.escape(request.url.path)), 404)


def content_security_policy(image_hosts: Iterable[str]) -> str:
    """The CSP header value: the app's own origin, plus images from ``image_hosts``."""
    hosts = "".join(f" http://{host}:* https://{host}:*" for host in image_hosts)
    return "; ".join(CONTENT_SECURITY_POLICY).format(image_hosts=hosts)


def security_headers(settings: Settings) -> dict[bytes, bytes]:
    """Every security header of a response, the CSP allowing ``settings``' image hosts."""
    policy = content_security_policy(settings.allowed_image_hosts)
    return {**BASE_SECURITY_HEADERS, b"content-security-policy": policy.encode("ascii")}


class SecurityHeaders:
    """Adds security headers to every HTTP response (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp, headers: dict[bytes, bytes] | None = None) -> None:
        self.app = app
        self.headers = headers if headers is not None else security_headers(load_settings())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in self.headers
                ]
                headers.extend(self.headers.items())
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def refuse_misconfigured_start() -> None:
    """Exit with one line on stderr when the settings are invalid or production lacks secrets."""
    try:
        load_settings().require_production_secrets()
    except ConfigError as exc:
        print(f"nexus: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def withhold_exception_text_from_logs() -> None:
    """No log line of the server carries an exception's message (see ``nexus_core.ops.incidents``),
    whether Streamlit's own log of script errors, a fallback path with the database down or a
    library's logger."""
    withhold_exception_text()


def routes() -> list[Route]:
    """The extra HTTP routes served beside the pages."""
    return [Route("/health", health), Route("/metrics", metrics), *session_cookie.routes()]


def middleware(base_path: str = "") -> list[Middleware]:
    """Middleware for every request: security headers outermost, so that they are on the HTML
    ``NestedAddresses`` rewrites too; ``base_path`` is Streamlit's ``server.baseUrlPath``."""
    return [Middleware(SecurityHeaders), Middleware(NestedAddresses, base_path=base_path)]


def exception_handlers() -> dict[Any, Any]:
    """Branded pages for HTTP errors."""
    return {404: not_found}
