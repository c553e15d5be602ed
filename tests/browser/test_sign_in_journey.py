"""Sign-in journeys in a real browser: the form, the login cookie, logout revocation, roles and
lock-out, against a live server (the parts AppTest cannot see: the authenticator's cookie
component and ``st.context.cookies``)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from nexus_core import audit
from nexus_core.auth import COOKIE_NAME, SignInService
from nexus_core.db.engine import Database
from tests.browser.conftest import ADMIN_PASSWORD, MEMBER, LiveApp, NewPage

pytestmark = pytest.mark.browser

FAILED_MESSAGE = "Incorrect username or password"
MEMBER_USERNAME, MEMBER_NAME, MEMBER_PASSWORD = MEMBER


def submit_login(page: Page, url: str, username: str, password: str) -> None:
    """Open the app and submit the login form."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    sign_in_button(page).click()


def heading(page: Page, title: str) -> Locator:
    """A page title; ``first`` because a rerun briefly shows the stale copy beside the new one."""
    return page.get_by_role("heading", name=title).first


def chat_heading(page: Page) -> Locator:
    """The title of the Chat page, where every role lands after signing in."""
    return heading(page, "Chat")


def sign_in_button(page: Page) -> Locator:
    """The login form's submit button; present exactly when the form is drawn."""
    return page.get_by_role("button", name="Sign in")


def expect_login_form(page: Page) -> None:
    expect(sign_in_button(page)).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()


def nav_link(page: Page, title: str) -> Locator:
    """A page link in the sidebar navigation (only pages the role may open are registered)."""
    return page.get_by_test_id("stSidebarNav").get_by_role("link", name=title)


HAS_LOGIN_COOKIE_JS = f"document.cookie.split('; ').some(c => c.startsWith('{COOKIE_NAME}='))"


def login_cookie(page: Page) -> str:
    """The value of the login cookie once the authenticator's component has written it."""
    page.wait_for_function(HAS_LOGIN_COOKIE_JS)
    values = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE_NAME]
    assert len(values) == 1, page.context.cookies()
    return values[0]


def test_member_signs_in_through_the_real_form_and_sees_the_chat_page(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    submit_login(page, live_app.url, MEMBER_USERNAME, MEMBER_PASSWORD)

    expect(chat_heading(page)).to_be_visible()
    expect(sign_in_button(page)).to_have_count(0)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text(MEMBER_NAME)
    expect(sidebar).to_contain_text("member")
    expect(nav_link(page, "Chat")).to_be_visible()
    expect(nav_link(page, "Feedback")).to_be_visible()
    expect(nav_link(page, "Users")).to_have_count(0)
    expect(nav_link(page, "Dashboard")).to_have_count(0)
    assert login_cookie(page)


def test_wrong_password_is_refused_with_the_generic_message(
    live_app: LiveApp, new_page: NewPage
) -> None:
    for username, password in (
        (MEMBER_USERNAME, "not-her-password"),
        ("nobody-by-this-name", MEMBER_PASSWORD),
    ):
        page = new_page()
        submit_login(page, live_app.url, username, password)

        expect(page.get_by_text(FAILED_MESSAGE)).to_be_visible()
        expect(chat_heading(page)).to_have_count(0)
        expect_login_form(page)


def test_cookie_signs_in_again_after_reload_but_not_after_logout(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    submit_login(page, live_app.url, MEMBER_USERNAME, MEMBER_PASSWORD)
    expect(chat_heading(page)).to_be_visible()
    cookie = login_cookie(page)

    page.reload()
    expect(chat_heading(page)).to_be_visible()
    expect(sign_in_button(page)).to_have_count(0)

    # Control: while she is signed in, the cookie alone signs another browser in.
    before_logout = new_page()
    before_logout.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": live_app.url}])
    before_logout.goto(live_app.url)
    expect(chat_heading(before_logout)).to_be_visible()

    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect_login_form(page)
    expect(chat_heading(page)).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # no menu left behind
    page.wait_for_function(f"!({HAS_LOGIN_COOKIE_JS})")  # the authenticator deletes it

    after_logout = new_page()
    after_logout.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": live_app.url}])
    after_logout.goto(live_app.url)
    expect_login_form(after_logout)
    expect(chat_heading(after_logout)).to_have_count(0)


def test_a_link_to_a_page_survives_the_login_form_the_cookie_and_a_reload(
    live_app: LiveApp, new_page: NewPage
) -> None:
    leaderboard = f"{live_app.url}/compare?view=leaderboard"
    on_leaderboard = re.compile(r"/compare\?view=leaderboard$")
    page = new_page()
    submit_login(page, leaderboard, "admin", ADMIN_PASSWORD)
    expect(page.get_by_label("Prompt tag")).to_be_visible()  # the leaderboard section
    expect(page).to_have_url(on_leaderboard)
    cookie = login_cookie(page)  # written although the run signed in on another page

    # A fresh browser holding only the cookie opens the link, then reloads it.
    other = new_page()
    other.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": live_app.url}])
    other.goto(leaderboard)
    expect(other.get_by_label("Prompt tag")).to_be_visible()
    expect(other).to_have_url(on_leaderboard)
    other.reload()
    expect(other.get_by_label("Prompt tag")).to_be_visible()
    expect(other).to_have_url(on_leaderboard)
    expect(chat_heading(other)).to_have_count(0)


def test_admin_sees_admin_pages(live_app: LiveApp, new_page: NewPage) -> None:
    page = new_page()
    submit_login(page, live_app.url, "admin", ADMIN_PASSWORD)
    expect(chat_heading(page)).to_be_visible()

    for title in ("Users", "Dashboard", "Audit", "Personas"):
        expect(nav_link(page, title)).to_be_visible()
    nav_link(page, "Users").click()
    expect(heading(page, "Users")).to_be_visible()


def test_five_wrong_passwords_lock_the_account(live_app: LiveApp, new_page: NewPage) -> None:
    username, password = "lockme", "lockme-password-1"
    live_app.nexus("users", "add", username, "--password-stdin", stdin=password + "\n")
    page = new_page()

    for attempt in range(5):
        # A fresh load per attempt: a visible message then belongs to this attempt.
        submit_login(page, live_app.url, username, f"wrong-password-{attempt}")
        expect(page.get_by_text(FAILED_MESSAGE)).to_be_visible()

    submit_login(page, live_app.url, username, password)
    expect(page.get_by_text(FAILED_MESSAGE)).to_be_visible()
    expect(chat_heading(page)).to_have_count(0)

    db = Database(f"sqlite:///{live_app.data_dir / 'nexus.db'}")
    try:
        assert SignInService(db).is_locked(username)
        lockouts = [
            r for r in audit.recent(db, action=audit.LOCKED_OUT) if r.actor_name == username
        ]
    finally:
        db.dispose()
    assert len(lockouts) == 1, lockouts
