"""The sign-in frame through AppTest: the login form, and every run checking its sign-in session —
two AppTests are two browsers signed in as the same user. (The HttpOnly cookie and its hand-off
frame need a real browser: tests/browser/test_sign_in_journey.py.)"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.auth import SIGN_IN_FAILED_MESSAGE
from nexus_core.ui import state
from nexus_core.ui.auth import ENDED_NOTES, MISSING_CREDENTIALS, PASSWORD_CHANGED, SIGNED_OUT_NOTE
from tests.apptest import APP, seen_text, signed_in_app
from tests.constants import PASSWORD

NEW_PASSWORD = "a-new-password-2"
TIMEOUT = 30


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A migrated, seeded database that the app under test reads through the environment."""
    app_env.init()
    app_env.users.create("mia", PASSWORD, display_name="Mia Member")
    return app_env


def through_the_form(username: str, password: str) -> AppTest:
    """A fresh browser session that submits the login form."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key=state.LOGIN_USERNAME).input(username)
    at.text_input(key=state.LOGIN_PASSWORD).input(password)
    return button(at, "Sign in").click().run()


def button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    (found,) = [b for b in at.button if b.label == label]
    return found


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def shows_login_form(at: AppTest) -> bool:
    return [t.label for t in at.text_input] == ["Username", "Password"]


def notes(at: AppTest) -> list[str]:
    return [seen_text(i.value) for i in at.info]


def test_the_login_form_signs_in_with_a_sign_in_session(app_ctx: AppContext) -> None:
    at = through_the_form("  MIA ", PASSWORD)
    assert not at.exception
    assert "💬 Chat" in titles(at)
    assert at.session_state[state.AUTH_SESSION] is not None
    assert app_ctx.sign_in.check_session(at.session_state[state.AUTH_SESSION]).user is not None


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("mia", "not-her-password", SIGN_IN_FAILED_MESSAGE),
        ("nobody-of-that-name", PASSWORD, SIGN_IN_FAILED_MESSAGE),
        ("mia", "", MISSING_CREDENTIALS),
    ],
)
def test_a_refused_sign_in_keeps_the_form_with_one_message(
    app_ctx: AppContext, username: str, password: str, message: str
) -> None:
    at = through_the_form(username, password)
    assert [seen_text(e.value) for e in at.error] == [message]
    assert shows_login_form(at) and "💬 Chat" not in titles(at)


def test_signing_out_in_one_browser_ends_every_other_at_its_next_run(app_ctx: AppContext) -> None:
    laptop = signed_in_app("mia", timeout=TIMEOUT)
    phone = through_the_form("mia", PASSWORD)
    assert "💬 Chat" in titles(phone)

    button(laptop.sidebar, "Sign out").click().run()
    assert shows_login_form(laptop) and notes(laptop) == [SIGNED_OUT_NOTE]

    phone.run()  # its next interaction
    assert shows_login_form(phone) and "💬 Chat" not in titles(phone)
    assert notes(phone) == [ENDED_NOTES["sign_out"]]
    assert state.AUTH_SESSION not in phone.session_state


def test_a_password_change_keeps_this_browser_and_signs_out_the_others(
    app_ctx: AppContext,
) -> None:
    laptop = signed_in_app("mia", timeout=TIMEOUT)
    phone = signed_in_app("mia", timeout=TIMEOUT)
    before = laptop.session_state[state.AUTH_SESSION]

    laptop.session_state[state.PASSWORD_OPEN] = True  # the lazy expander opened
    laptop.run()
    laptop.text_input(key=state.CURRENT_PASSWORD).input(PASSWORD)
    laptop.text_input(key=state.NEW_PASSWORD).input(NEW_PASSWORD)
    laptop.text_input(key=state.NEW_PASSWORD_REPEAT).input(NEW_PASSWORD)
    button(laptop.sidebar, "Change password").click().run()

    assert [seen_text(s.value) for s in laptop.success] == [PASSWORD_CHANGED]
    assert laptop.session_state[state.AUTH_SESSION] != before  # re-issued
    laptop.run()
    assert "💬 Chat" in titles(laptop) and not shows_login_form(laptop)

    phone.run()
    assert shows_login_form(phone) and notes(phone) == [ENDED_NOTES["password"]]
    assert "💬 Chat" in titles(through_the_form("mia", NEW_PASSWORD))


def test_a_user_disabled_by_an_admin_sees_the_login_form_at_the_next_run(
    app_ctx: AppContext,
) -> None:
    at = signed_in_app("mia", timeout=TIMEOUT)
    app_ctx.users.set_disabled("mia", True)
    at.run()
    assert shows_login_form(at) and notes(at) == [ENDED_NOTES["disabled"]]


def test_a_browser_session_without_a_valid_sign_in_session_is_signed_out(
    app_ctx: AppContext,
) -> None:
    mia = app_ctx.users.get("mia")
    claims_only = AppTest.from_file(APP, default_timeout=TIMEOUT)
    claims_only.session_state[state.AUTH_STATUS] = True
    claims_only.session_state[state.USER_ID] = mia.id
    claims_only.run()
    assert shows_login_form(claims_only) and "💬 Chat" not in titles(claims_only)

    app_ctx.users.create("ola", PASSWORD)
    someone_else = signed_in_app(
        "ola", session={state.USER_ID: mia.id}, timeout=TIMEOUT
    )  # a session id that is not this browser's user's
    assert shows_login_form(someone_else)


SSO_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-cookie-secret-for-the-page-test",
    "okta": {
        "client_id": "nexus",
        "client_secret": "s3cret",
        "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
    },
}


def login_page(auth: dict[str, object] | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if auth is not None:
        at.secrets["auth"] = auth
    return at.run()


def test_single_sign_on_is_offered_beside_the_password_form(app_ctx: AppContext) -> None:
    at = login_page(SSO_SECRETS)
    assert [seen_text(b.label) for b in at.button] == ["Sign in with Okta", "Sign in"]
    assert shows_login_form(at)


def test_without_an_auth_section_only_the_password_form_shows(app_ctx: AppContext) -> None:
    at = login_page(None)
    assert [b.label for b in at.button] == ["Sign in"]


def test_password_login_off_leaves_only_single_sign_on(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_PASSWORD_LOGIN", "false")
    okta = SSO_SECRETS["okta"]
    assert isinstance(okta, dict)
    default_provider = {k: v for k, v in SSO_SECRETS.items() if k != "okta"} | okta

    at = login_page(default_provider)

    assert [seen_text(b.label) for b in at.button] == ["Sign in with single sign-on"]
    assert not at.text_input


def test_password_login_off_without_single_sign_on_keeps_the_password_form(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_PASSWORD_LOGIN", "false")
    at = login_page(None)
    assert shows_login_form(at)
