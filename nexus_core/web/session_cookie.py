"""The login cookie, set and cleared by the server so that it can be HttpOnly.

A script run cannot send HTTP headers. After a sign-in the page therefore embeds a tiny frame of
this origin, ``/auth/handoff?v=ID#claim=CODE``; its script (a static file: no inline code, no
secret in it) POSTs the session's one-time code as JSON to ``/auth/session``, which answers
``Set-Cookie: nexus_session=TOKEN; HttpOnly; SameSite=Strict; Path=/`` (and ``Secure`` behind
HTTPS). The code travels in the URL fragment, which browsers never send to a server or to its
logs; it works once, for ``HANDOFF_SECONDS``. ``DELETE /auth/session`` clears the cookie unless it
still belongs to a valid session, and always clears the old JWT cookie. Both routes want a JSON
request, which a page of another site cannot send without a CORS preflight that is never granted,
and refuse a request the browser marks as not same-origin. Later runs read the cookie on the
server, from the websocket's request (``st.context.cookies``).

Single sign-on ends in the same place: Streamlit's ``st.login`` leaves its own signed identity
cookie (``_streamlit_user``, and ``_streamlit_user_tokens``, either split into numbered chunks
when large); the app turns that identity into a Nexus session once, and the response that sets
``nexus_session`` deletes Streamlit's cookies, as does ``DELETE /auth/session``. Nexus's session
is then the only sign-in the browser holds, so signing out, disabling and expiry work exactly as
for a password sign-in.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nexus_core.auth import LEGACY_COOKIE, SESSION_COOKIE, SignInService

log = logging.getLogger("nexus.session_cookie")

HANDOFF_PATH = "/auth/handoff"
HANDOFF_SCRIPT_PATH = "/auth/handoff.js"
SESSION_PATH = "/auth/session"
CLAIM_FRAGMENT = "claim="
CLEAR_FRAGMENT = "end"
MAX_CODE_CHARS = 128
NO_STORE = {"cache-control": "no-store"}
# Streamlit's identity cookies (``st.login``), deleted once the identity became a Nexus session.
STREAMLIT_IDENTITY_COOKIES = ("_streamlit_user", "_streamlit_user_tokens")
HANDOFF_PAGE = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Nexus AI sign-in</title></head>
<body><script src="{HANDOFF_SCRIPT_PATH}"></script></body></html>
"""
HANDOFF_SCRIPT = f"""// Claims this browser's login cookie (#{CLAIM_FRAGMENT}CODE) or clears a stale
// one (#{CLEAR_FRAGMENT}); the server sets it, HttpOnly (nexus_core/web/session_cookie.py).
(function () {{
  var fragment = window.location.hash.slice(1);
  var claim = fragment.indexOf("{CLAIM_FRAGMENT}") === 0;
  fetch("{SESSION_PATH}", {{
    method: claim ? "POST" : "DELETE",
    credentials: "same-origin",
    headers: {{"Content-Type": "application/json"}},
    body: claim ? JSON.stringify({{code: fragment.slice({len(CLAIM_FRAGMENT)})}}) : "{{}}"
  }});
}})();
"""


def handoff_url(session_id: int, code: str) -> str:
    """The frame that claims the login cookie of session ``session_id`` with ``code``."""
    # The query differs per session so that a new code loads the frame again (a change of
    # fragment alone would not).
    return f"{HANDOFF_PATH}?v={session_id}#{CLAIM_FRAGMENT}{code}"


def clear_url() -> str:
    """The frame that clears a login cookie that no longer signs anyone in."""
    return f"{HANDOFF_PATH}?v={CLEAR_FRAGMENT}#{CLEAR_FRAGMENT}"


async def handoff_page(request: Request) -> HTMLResponse:
    """``GET /auth/handoff``: the frame's page (static)."""
    return HTMLResponse(HANDOFF_PAGE, headers=NO_STORE)


async def handoff_script(request: Request) -> Response:
    """``GET /auth/handoff.js``: the frame's script (static)."""
    return Response(HANDOFF_SCRIPT, media_type="text/javascript", headers=NO_STORE)


async def claim_cookie(request: Request) -> Response:
    """``POST /auth/session`` with ``{"code": ...}``: 204 with the HttpOnly login cookie, or 403."""
    if not _from_this_site(request):
        return Response(status_code=403, headers=NO_STORE)
    code = await _code(request)
    service = await _sign_in_service()
    if code is None or service is None:
        return Response(status_code=400 if code is None else 503, headers=NO_STORE)
    cookie = await run_in_threadpool(service.claim_cookie, code)
    if cookie is None:
        return Response(status_code=403, headers=NO_STORE)
    response = Response(status_code=204, headers=NO_STORE)
    response.set_cookie(
        SESSION_COOKIE,
        cookie.token,
        max_age=cookie.max_age_seconds,
        path="/",
        secure=_is_https(request),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LEGACY_COOKIE, path="/")
    _clear_streamlit_identity(request, response)
    return response


async def clear_cookie(request: Request) -> Response:
    """``DELETE /auth/session``: 204, clearing the login cookie unless it is still valid."""
    if not _from_this_site(request):
        return Response(status_code=403, headers=NO_STORE)
    response = Response(status_code=204, headers=NO_STORE)
    token = request.cookies.get(SESSION_COOKIE)
    if token and not await _still_valid(token):
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=_is_https(request),
            httponly=True,
            samesite="strict",
        )
    response.delete_cookie(LEGACY_COOKIE, path="/")
    _clear_streamlit_identity(request, response)
    return response


def _clear_streamlit_identity(request: Request, response: Response) -> None:
    """Delete the identity cookies ``st.login`` set (and their chunks) that the request carries."""
    for name in request.cookies:
        base, _, chunk = name.rpartition("_")
        if name in STREAMLIT_IDENTITY_COOKIES or (
            base in STREAMLIT_IDENTITY_COOKIES and chunk.isdigit()
        ):
            response.delete_cookie(name, path="/", httponly=True, samesite="lax")


def _from_this_site(request: Request) -> bool:
    """A JSON request that the browser did not mark as coming from another origin."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fetch_site = request.headers.get("sec-fetch-site")
    return content_type == "application/json" and fetch_site in (None, "same-origin")


def _is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.lower() == "https"


async def _code(request: Request) -> str | None:
    try:
        body: Any = await request.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str) and 0 < len(code) <= MAX_CODE_CHARS:
        return code
    return None


async def _still_valid(token: str) -> bool:
    """Whether the cookie's session is valid; True when that cannot be told right now."""
    service = await _sign_in_service()
    if service is None:
        return True
    return (await run_in_threadpool(service.resume, token)).user is not None


async def _sign_in_service() -> SignInService | None:
    from nexus_core.ui.resources import get_context  # the pages' context: one per process

    try:
        ctx = await run_in_threadpool(get_context)
    except Exception as exc:  # not initialised or misconfigured: say so without details
        log.warning("sign-in cookie route unavailable: %s", type(exc).__name__)
        return None
    return ctx.sign_in


def routes() -> list[Route]:
    """The routes of the login cookie."""
    return [
        Route(HANDOFF_PATH, handoff_page, methods=["GET"]),
        Route(HANDOFF_SCRIPT_PATH, handoff_script, methods=["GET"]),
        Route(SESSION_PATH, claim_cookie, methods=["POST"]),
        Route(SESSION_PATH, clear_cookie, methods=["DELETE"]),
    ]
