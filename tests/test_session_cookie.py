"""The login cookie's routes, as HTTP requests to the ASGI app (httpx's ASGI transport): a
one-time code buys one HttpOnly, SameSite=Strict cookie (Secure behind HTTPS); requests another
site could send are refused; a stale cookie is cleared, a valid one kept."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from nexus_core.app_context import AppContext
from nexus_core.auth import LEGACY_COOKIE, SESSION_COOKIE, SessionGrant
from nexus_core.web import session_cookie
from nexus_core.web.session_cookie import HANDOFF_PATH, HANDOFF_SCRIPT_PATH, SESSION_PATH
from tests.constants import PASSWORD

WEEK_SECONDS = 7 * 24 * 3600


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    app_env.init()
    app_env.users.create("mia", PASSWORD)
    return app_env


class Client:
    """Sends one request at a time to the routes, with the cookies it is given."""

    def __init__(self) -> None:
        self.app = Starlette(routes=session_cookie.routes())
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return asyncio.run(self._send(method, path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=self.cookies
        ) as http:
            return await http.request(method, path, **kwargs)


@pytest.fixture
def client(app_ctx: AppContext) -> Client:
    return Client()


def grant(app_ctx: AppContext) -> SessionGrant:
    return app_ctx.sign_in.open_session(app_ctx.users.get("mia").id)


def set_cookies(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each Set-Cookie header of ``response`` by cookie name."""
    headers = response.headers.get_list("set-cookie")
    return {h.split("=", 1)[0]: h for h in headers}


def test_a_code_buys_one_httponly_strict_cookie_of_its_session(
    client: Client, app_ctx: AppContext
) -> None:
    new = grant(app_ctx)
    claimed = client.post(SESSION_PATH, json={"code": new.handoff_code})
    assert claimed.status_code == 204
    cookies = set_cookies(claimed)
    cookie = cookies[SESSION_COOKIE]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    max_age = int(cookie.split("Max-Age=", 1)[1].split(";", 1)[0])
    assert WEEK_SECONDS - 60 < max_age <= WEEK_SECONDS  # the session's own expiry
    assert "Secure" not in cookie  # plain HTTP
    assert "Max-Age=0" in cookies[LEGACY_COOKIE]  # the old JWT cookie goes
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    assert app_ctx.sign_in.resume(token).session_id == new.session_id

    again = client.post(SESSION_PATH, json={"code": new.handoff_code})
    assert again.status_code == 403 and SESSION_COOKIE not in set_cookies(again)


def test_behind_https_the_cookie_is_also_secure(client: Client, app_ctx: AppContext) -> None:
    claimed = client.post(
        SESSION_PATH,
        json={"code": grant(app_ctx).handoff_code},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in set_cookies(claimed)[SESSION_COOKIE]


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"data": {"code": "CODE"}}, 403),  # a form another site could post
        ({"content": "CODE", "headers": {"Content-Type": "text/plain"}}, 403),
        ({"json": {"code": "CODE"}, "headers": {"Sec-Fetch-Site": "cross-site"}}, 403),
        ({"json": {"code": "CODE"}, "headers": {"Sec-Fetch-Site": "same-site"}}, 403),
        ({"content": "{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"token": "CODE"}}, 400),
        ({"json": ["CODE"]}, 400),
    ],
    ids=["form", "text", "cross-site", "same-site", "bad json", "no code", "not an object"],
)
def test_requests_another_site_could_send_or_malformed_ones_are_refused(
    client: Client, app_ctx: AppContext, request_kwargs: dict, status: int
) -> None:
    new = grant(app_ctx)
    kwargs = _with_code(request_kwargs, new.handoff_code)
    refused = client.post(SESSION_PATH, **kwargs)
    assert refused.status_code == status and SESSION_COOKIE not in set_cookies(refused)
    # The code was not spent by the refused request.
    assert client.post(SESSION_PATH, json={"code": new.handoff_code}).status_code == 204


def _with_code(kwargs: dict, code: str) -> dict:
    def swap(value: object) -> object:
        if isinstance(value, str):
            return value.replace("CODE", code)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return {k: (v if k == "headers" else swap(v)) for k, v in kwargs.items()}


def test_clearing_keeps_a_valid_cookie_and_clears_a_stale_one(
    client: Client, app_ctx: AppContext
) -> None:
    new = grant(app_ctx)
    claimed = client.post(SESSION_PATH, json={"code": new.handoff_code})
    token = set_cookies(claimed)[SESSION_COOKIE].split(";", 1)[0].split("=", 1)[1]
    client.cookies[SESSION_COOKIE] = token

    kept = client.request("DELETE", SESSION_PATH, json={})
    assert kept.status_code == 204 and SESSION_COOKIE not in set_cookies(kept)
    assert "Max-Age=0" in set_cookies(kept)[LEGACY_COOKIE]

    app_ctx.sign_in.sign_out(new.session_id)
    cleared = client.request("DELETE", SESSION_PATH, json={})
    assert "Max-Age=0" in set_cookies(cleared)[SESSION_COOKIE]

    cross_site = client.request(
        "DELETE", SESSION_PATH, json={}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403


def test_the_hand_off_frame_is_static_and_loads_only_this_sites_script(
    client: Client,
) -> None:
    page = client.get(HANDOFF_PATH)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert f'<script src="{HANDOFF_SCRIPT_PATH}"></script>' in page.text
    assert page.text.count("<script") == 1  # no inline code
    script = client.get(HANDOFF_SCRIPT_PATH)
    assert script.headers["content-type"].startswith("text/javascript")
    assert SESSION_PATH in script.text and "location.hash" in script.text
