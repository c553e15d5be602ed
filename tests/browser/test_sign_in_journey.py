"""Sign-in journeys in a real browser against a live server: the form, the HttpOnly login cookie
and its hand-off frame, sign-out / password change / disabling reaching every open browser, the old
JWT cookie, roles and lock-out (the parts AppTest cannot see: the frame, the cookie jar and
``st.context.cookies``)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from itertools import count

import jwt
import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from nexus_core import audit
from nexus_core.audit import AuditQuery
from nexus_core.auth import LEGACY_COOKIE, resolve_cookie_key
from nexus_core.db.engine import Database
from nexus_core.db.models import User
from nexus_core.settings import Settings
from nexus_core.ui.auth import ENDED_NOTES, PASSWORD_CHANGED, SIGNED_OUT_NOTE
from nexus_core.ui.dashboard_view import REFRESH_SECONDS
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    LOGIN_COOKIE,
    MEMBER,
    LiveApp,
    NewPage,
    fill_form,
    login_cookie,
    open_expander,
    sign_in,
    wait_for_login_cookie,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

FAILED_MESSAGE = "Incorrect username or password"
MEMBER_USERNAME, MEMBER_NAME, MEMBER_PASSWORD = MEMBER
COOKIE_DAYS = 7  # the default NEXUS_COOKIE_EXPIRY_DAYS the live server runs with
_numbers = count(1)


def submit_login(page: Page, url: str, username: str, password: str) -> None:
    """Open the app and submit the login form."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    sign_in_button(page).click()


def add_member(live_app: LiveApp, stem: str, *options: str) -> tuple[str, str]:
    """A new user of this test alone (signing out ends every session of a user); a member unless
    ``options`` (of `nexus users add`) say otherwise."""
    username, password = f"{stem}{next(_numbers)}", f"{stem}-password-1"
    add = ("users", "add", username, "--password-stdin", *options)
    live_app.nexus(*add, stdin=password + "\n")
    return username, password


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


def sign_out(page: Page) -> None:
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect_login_form(page)
    expect(page.get_by_text(SIGNED_OUT_NOTE)).to_be_visible()


def with_cookie(new_page: NewPage, live_app: LiveApp, name: str, value: str) -> Page:
    """A fresh browser holding only the cookie ``name``."""
    page = new_page()
    page.context.add_cookies([{"name": name, "value": value, "url": live_app.url}])
    return page


def expect_signed_out_on_next_click(page: Page, note: str) -> None:
    """The browser's next interaction (opening another page) shows the login form and ``note``."""
    nav_link(page, "Feedback").click()
    expect_login_form(page)
    expect(page.get_by_text(note)).to_be_visible()
    expect(heading(page, "Feedback")).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)


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
    assert wait_for_login_cookie(page)


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


def test_the_login_cookie_is_httponly_strict_and_hidden_from_javascript(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, live_app.url, MEMBER_USERNAME, MEMBER_PASSWORD)

    cookie = login_cookie(page.context)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False  # plain HTTP here; behind HTTPS it is Secure too
    lifetime = float(str(cookie["expires"])) - time.time()
    assert abs(lifetime - timedelta(days=COOKIE_DAYS).total_seconds()) < 3600
    seen_by_scripts = str(page.evaluate("document.cookie"))
    assert LOGIN_COOKIE not in seen_by_scripts and LEGACY_COOKIE not in seen_by_scripts


def test_cookie_signs_in_again_after_reload_but_not_after_logout(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = add_member(live_app, "rex")
    page = new_page()
    sign_in(page, live_app.url, username, password)
    cookie = login_cookie(page.context)
    assert cookie is not None

    page.reload()
    expect(chat_heading(page)).to_be_visible()
    expect(sign_in_button(page)).to_have_count(0)

    # Control: while he is signed in, the cookie alone signs another browser in.
    before_logout = with_cookie(new_page, live_app, LOGIN_COOKIE, str(cookie["value"]))
    before_logout.goto(live_app.url)
    expect(chat_heading(before_logout)).to_be_visible()
    wait_until_idle(before_logout)

    sign_out(page)
    expect(chat_heading(page)).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # no menu left behind
    wait_for_login_cookie(page, present=False)  # the server clears it

    after_logout = with_cookie(new_page, live_app, LOGIN_COOKIE, str(cookie["value"]))
    after_logout.goto(live_app.url)
    expect_login_form(after_logout)
    expect(chat_heading(after_logout)).to_have_count(0)
    # The browser that was signed in by the cookie is signed out at its next click.
    expect_signed_out_on_next_click(before_logout, ENDED_NOTES["sign_out"])


def test_signing_out_in_one_browser_signs_out_the_other_at_its_next_click(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = add_member(live_app, "sam")
    laptop, phone = new_page(), new_page()
    sign_in(laptop, live_app.url, username, password)
    sign_in(phone, live_app.url, username, password)

    sign_out(laptop)

    expect_signed_out_on_next_click(phone, ENDED_NOTES["sign_out"])
    phone.reload()  # nor does its cookie sign it in again
    expect_login_form(phone)


def test_a_password_change_keeps_this_browser_and_signs_out_the_other(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = add_member(live_app, "pat")
    new_password = "pat-new-password-2"
    laptop, phone = new_page(), new_page()
    sign_in(laptop, live_app.url, username, password)
    sign_in(phone, live_app.url, username, password)
    old_cookie = login_cookie(laptop.context)
    assert old_cookie is not None

    sidebar = laptop.get_by_test_id("stSidebar")
    open_expander(laptop, "Change password", "Change password", within=sidebar)
    entries = {
        "Current password": password,
        "New password (10+ characters)": new_password,
        "Repeat the new password": new_password,
    }

    def fill() -> None:
        for label, text in entries.items():
            sidebar.get_by_label(label).fill(text)

    def filled() -> bool:
        return all(sidebar.get_by_label(lb).input_value() == t for lb, t in entries.items())

    fill_form(laptop, fill, filled)
    with laptop.expect_response(lambda r: r.url.endswith("/auth/session")) as claimed:
        sidebar.get_by_role("button", name="Change password").click()
        expect(laptop.get_by_text(PASSWORD_CHANGED)).to_be_visible()
    assert claimed.value.status == 204  # this browser got a cookie of its new session
    new_cookie = login_cookie(laptop.context)
    assert new_cookie is not None and new_cookie["value"] != old_cookie["value"]

    wait_until_idle(laptop)
    nav_link(laptop, "Feedback").click()  # still signed in …
    expect(heading(laptop, "Feedback")).to_be_visible()
    laptop.reload()  # … and its new cookie signs it in again
    expect(heading(laptop, "Feedback")).to_be_visible()
    expect(sign_in_button(laptop)).to_have_count(0)

    expect_signed_out_on_next_click(phone, ENDED_NOTES["password"])
    stale = with_cookie(new_page, live_app, LOGIN_COOKIE, str(old_cookie["value"]))
    stale.goto(live_app.url)
    expect_login_form(stale)


def test_disabling_a_user_signs_out_their_open_browser_at_its_next_click(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = add_member(live_app, "dee")
    page = new_page()
    sign_in(page, live_app.url, username, password)

    live_app.nexus("users", "disable", username)

    expect_signed_out_on_next_click(page, ENDED_NOTES["disabled"])


def test_an_auto_refreshing_dashboard_shows_the_login_form_once_its_sign_in_ends(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = add_member(live_app, "ops", "--role", "admin")
    page = new_page()
    sign_in(page, f"{live_app.url}/dashboard", username, password, lands_on="Dashboard")
    expect(page.get_by_text("Last updated")).to_be_visible()

    live_app.nexus("users", "disable", username)

    # No click: the data part's own auto-refresh is the next run, and it checks the sign-in too.
    refreshes = timedelta(seconds=REFRESH_SECONDS * 3).total_seconds() * 1000
    expect(sign_in_button(page)).to_be_visible(timeout=refreshes)
    expect(page.get_by_text(ENDED_NOTES["disabled"])).to_be_visible()
    expect(page.get_by_text("Last updated")).to_have_count(0)


def test_an_old_jwt_login_cookie_signs_nobody_in_and_is_cleared(
    live_app: LiveApp, new_page: NewPage
) -> None:
    # The cookie streamlit-authenticator wrote: the username and an expiry, signed with the key.
    key = resolve_cookie_key(Settings(data_dir=live_app.data_dir))
    token = jwt.encode(
        {"username": MEMBER_USERNAME, "exp_date": time.time() + 86_400 * COOKIE_DAYS},
        key,
        algorithm="HS256",
    )
    page = with_cookie(new_page, live_app, LEGACY_COOKIE, token)
    page.goto(live_app.url)

    expect_login_form(page)
    expect(chat_heading(page)).to_have_count(0)
    expect(page.get_by_test_id("stSidebar").get_by_text(MEMBER_NAME)).to_have_count(0)
    wait_for_login_cookie(page, present=False, name=LEGACY_COOKIE)  # the server clears it


def test_a_link_to_a_page_survives_the_login_form_the_cookie_and_a_reload(
    live_app: LiveApp, new_page: NewPage
) -> None:
    leaderboard = f"{live_app.url}/compare?view=leaderboard"
    on_leaderboard = re.compile(r"/compare\?view=leaderboard$")
    page = new_page()
    submit_login(page, leaderboard, "admin", ADMIN_PASSWORD)
    expect(page.get_by_label("Prompt tag")).to_be_visible()  # the leaderboard section
    expect(page).to_have_url(on_leaderboard)
    cookie = wait_for_login_cookie(page)  # set although the run signed in on another page
    assert cookie is not None

    # A fresh browser holding only the cookie opens the link, then reloads it.
    other = with_cookie(new_page, live_app, LOGIN_COOKIE, str(cookie["value"]))
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
    username, password = add_member(live_app, "lockme")
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
        with db.session() as session:
            locked_until = session.scalar(
                select(User.locked_until).where(User.username == username)
            )
        lockouts = audit.search(
            db, AuditQuery(actor=username, actions=(audit.LOCKED_OUT,)), limit=100
        )
    finally:
        db.dispose()
    assert locked_until is not None
    assert len(lockouts) == 1, lockouts
