"""Streamlit's HTML at a nested address (``/a/b``) loads from the app's root
(nexus_core/web/nested_addresses.py); the browser half — the friendly 404 at such an address —
is in tests/browser/test_addresses_journey.py."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from nexus_core.web.nested_addresses import NestedAddresses, is_nested_address, root_base_tags

INDEX = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8" />'
    b'<link rel="shortcut icon" href="./favicon.png" />'
    b'<script type="module" crossorigin src="./static/js/index.DormvYxC.js"></script>'
    b'</head><body><div id="root"></div></body></html>'
)


@pytest.mark.parametrize(
    ("path", "base", "nested"),
    [
        ("/a/b", "", True),
        ("/dashboard/x", "", True),
        ("/a/b/c", "", True),
        ("/a/b/", "", True),
        ("/", "", False),
        ("/dashboard", "", False),
        ("/no-such-page/", "", False),
        ("/static/js/index.js", "", False),
        ("/_stcore/health", "", False),
        ("/media/abc.png", "", False),
        ("/component/cookie/index.html", "", False),
        ("/nexus/a/b", "nexus", True),
        ("/nexus/dashboard", "/nexus/", False),
        ("/nexus/static/js/x.js", "nexus", False),
        ("/other/a/b", "nexus", False),
    ],
)
def test_a_nested_address_is_two_segments_or_more_outside_streamlits_prefixes(
    path: str, base: str, nested: bool
) -> None:
    assert is_nested_address(path, base) is nested


def serve(response: Response, path: str, *, base: str = "") -> tuple[Message, bytes, Scope]:
    """Send a GET for ``path`` through ``NestedAddresses`` around an app answering ``response``;
    the response's start, its whole body and the scope the app saw."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await response(scope, receive, send)

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(b"accept-encoding", b"gzip"), (b"accept", b"text/html")],
        "query_string": b"",
    }
    asyncio.run(NestedAddresses(app, base_path=base)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, body, seen[0]


def header(start: Message, name: bytes) -> bytes | None:
    return next((v for k, v in start["headers"] if k == name), None)


def test_the_page_html_at_a_nested_address_loads_its_scripts_and_server_from_the_root() -> None:
    index = HTMLResponse(INDEX, headers={"etag": '"abc"', "last-modified": "yesterday"})
    start, body, scope = serve(index, "/dashboard/x")

    assert body.startswith(b'<!DOCTYPE html><html lang="en"><head><base href="/"><script>')
    assert b'{BACKEND_BASE_URL: new URL("/", location.origin).href}' in body
    assert body.endswith(INDEX.split(b"<head>", 1)[1])  # the rest as Streamlit sent it
    assert header(start, b"content-length") == str(len(body)).encode()
    # Not the file's validators: a blank copy cached before the rewrite is not revalidated.
    assert header(start, b"etag") is None and header(start, b"last-modified") is None
    # Asked uncompressed, so it can be read; the rest of the request is untouched.
    assert dict(scope["headers"]) == {b"accept": b"text/html"}


def test_under_a_base_url_path_the_root_is_that_path() -> None:
    _, body, _ = serve(HTMLResponse(INDEX), "/nexus/a/b", base="/nexus/")

    assert b'<base href="/nexus/">' in body
    assert root_base_tags("nexus") in body


@pytest.mark.parametrize(
    ("response", "path"),
    [
        (HTMLResponse(INDEX), "/dashboard"),  # one segment: Streamlit's own HTML already works
        (HTMLResponse(INDEX), "/static/js/missing.js"),
        (HTMLResponse(b"<html><head></head><body>our 404</body></html>", 404), "/a/b"),
        (HTMLResponse(b"<html><head></head><body>a route's page</body></html>"), "/a/b"),
        (PlainTextResponse("<head> ./static/js/index."), "/a/b"),
    ],
)
def test_anything_else_passes_unchanged(response: Response, path: str) -> None:
    start, body, _ = serve(response, path)

    assert body == response.body
    assert start["status"] == response.status_code
    assert b"<base" not in body
