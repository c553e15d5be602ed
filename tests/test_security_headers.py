"""The security headers of every response (nexus_core/web/server.py): the Content-Security-Policy
keeps images, connections and frames to the app itself and the allow-listed image hosts."""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from nexus_core.settings import Settings
from nexus_core.web.server import SecurityHeaders, security_headers


def directives(policy: str) -> dict[str, list[str]]:
    parts = [d.split() for d in policy.split(";") if d.strip()]
    return {d[0]: d[1:] for d in parts}


def test_the_policy_allows_images_only_from_the_app_and_the_allow_listed_hosts() -> None:
    settings = Settings.from_sources(
        environ={"NEXUS_IMAGE_HOSTS": "images.example.com"}, secrets_file=None
    )
    policy = directives(security_headers(settings)[b"content-security-policy"].decode())

    assert policy["img-src"] == [
        "'self'",
        "data:",
        "blob:",
        "http://images.example.com:*",
        "https://images.example.com:*",
    ]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]


def test_without_image_hosts_no_outside_image_is_allowed() -> None:
    settings = Settings.from_sources(environ={}, secrets_file=None)
    policy = directives(security_headers(settings)[b"content-security-policy"].decode())

    assert policy["img-src"] == ["'self'", "data:", "blob:"]


def test_every_response_carries_the_headers_and_a_route_cannot_weaken_them() -> None:
    async def loose(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse("x", headers={"content-security-policy": "img-src *"})
        await response(scope, receive, send)

    headers = security_headers(Settings.from_sources(environ={}, secrets_file=None))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(SecurityHeaders(loose, headers=headers)(scope, receive, send))

    start = next(m for m in sent if m["type"] == "http.response.start")
    policies = [v for k, v in start["headers"] if k == b"content-security-policy"]
    assert policies == [headers[b"content-security-policy"]]
    assert (b"x-content-type-options", b"nosniff") in start["headers"]
