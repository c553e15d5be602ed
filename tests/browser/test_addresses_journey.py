"""Addresses in a real Chromium: every known page opens at its own address without Streamlit's
own "Page not found" notice, and an unknown address keeps its address (and a reload keeps the
friendly 404) instead of being rewritten to the root — also one typed with characters the browser
escapes (a space, an accent, "%", "#"), one of several segments (``/a/b``), and through the
sign-in form."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    LiveApp,
    NewPage,
    open_from_sidebar,
    sign_in,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

FRIENDLY_404 = "There is no page called"


def _opens_cleanly(page: Page, url: str, heading: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name=heading).first).to_be_visible()
    wait_until_idle(page)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page).to_have_url(re.compile(re.escape(url) + "$"))


def test_every_page_opens_at_its_own_address_without_streamlits_notice(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, f"{live_app.url}/chat", "admin", ADMIN_PASSWORD)
    expect(page.get_by_role("dialog")).to_have_count(0)
    for path, heading in (
        ("/chat", "Chat"),
        ("/dashboard", "Dashboard"),
        ("/personas", "Personas"),
        ("/workbench", "Workbench"),
    ):
        _opens_cleanly(page, f"{live_app.url}{path}", heading)
    page.goto(live_app.url)
    expect(page.get_by_role("heading", name="Chat").first).to_be_visible()
    wait_until_idle(page)
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_an_unknown_address_keeps_its_address_and_a_reload_keeps_the_404(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, live_app.url, "admin", ADMIN_PASSWORD)
    for path in ("/no-such-page", "/not-found![x](http:example)"):
        url = f"{live_app.url}{path}"
        page.goto(url)
        expect(page.get_by_text(FRIENDLY_404)).to_be_visible()
        wait_until_idle(page)
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(page).to_have_url(url)
        page.reload()
        expect(page.get_by_text(FRIENDLY_404)).to_be_visible()
        wait_until_idle(page)
        expect(page).to_have_url(url)
    expect(page.get_by_role("link", name="Back to Chat")).to_be_visible()


def _shows_the_404_at(page: Page, url: str, path: str) -> None:
    expect(page.get_by_text(FRIENDLY_404)).to_be_visible()
    expect(page.get_by_text(path, exact=False).first).to_be_visible()
    wait_until_idle(page)
    expect(page.get_by_role("dialog")).to_have_count(0)  # not Streamlit's own notice
    expect(page).to_have_url(url)


def test_an_escaped_unknown_address_keeps_its_404_through_sign_in_and_reloads(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    url = f"{live_app.url}/caf%C3%A9%20menu"
    # Typed while signed out: the sign-in form's reruns keep the address and then show its 404.
    sign_in(page, url, "admin", ADMIN_PASSWORD, lands_on="Page not found")
    _shows_the_404_at(page, url, "café menu")
    page.reload()
    _shows_the_404_at(page, url, "café menu")
    for path, shown in (("/100%25", "100%"), ("/a%23b", "a#b")):
        page.goto(f"{live_app.url}{path}")
        _shows_the_404_at(page, f"{live_app.url}{path}", shown)
        page.reload()
        _shows_the_404_at(page, f"{live_app.url}{path}", shown)
    page.get_by_role("link", name="Back to Chat").click()
    expect(page.get_by_role("heading", name="Chat").first).to_be_visible()
    expect(page).to_have_url(re.compile(re.escape(live_app.url) + "/?$"))


def test_a_nested_unknown_address_shows_the_404_and_keeps_its_address(
    live_app: LiveApp, new_page: NewPage
) -> None:
    # Streamlit's HTML loads its scripts relative to the address: at /a/b it asked for
    # /a/static/… and stayed blank. Typed while signed out, through the sign-in form, as well.
    page = new_page()
    url = f"{live_app.url}/a/b"
    sign_in(page, url, "admin", ADMIN_PASSWORD, lands_on="Page not found")
    _shows_the_404_at(page, url, "a/b")
    for path in ("/dashboard/x", "/a/b/c"):
        page.goto(f"{live_app.url}{path}")
        _shows_the_404_at(page, f"{live_app.url}{path}", path.lstrip("/"))
        page.reload()
        _shows_the_404_at(page, f"{live_app.url}{path}", path.lstrip("/"))
    # The menu and the way back still lead to the pages at the root, not under /dashboard/.
    open_from_sidebar(page, "Dashboard", "Dashboard")
    expect(page).to_have_url(f"{live_app.url}/dashboard")
    page.goto(f"{live_app.url}/dashboard/x")
    _shows_the_404_at(page, f"{live_app.url}/dashboard/x", "dashboard/x")
    page.get_by_role("link", name="Back to Chat").click()
    expect(page.get_by_role("heading", name="Chat").first).to_be_visible()
    expect(page).to_have_url(re.compile(re.escape(live_app.url) + "/?$"))
