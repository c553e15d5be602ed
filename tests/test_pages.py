"""Pages through Streamlit's AppTest: the login form, navigation by role and the page guards."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.ui import state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from tests.apptest import APP, signed_in_app
from tests.constants import PASSWORD

TIMEOUT = 30


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A migrated, seeded database that the app under test reads through the environment."""
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, role="member", display_name="Mia Member")
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.create("ada", PASSWORD, role="admin")
    return ctx


def signed_in(username: str) -> AppTest:
    return signed_in_app(username, timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.title] + [e.value for e in at.markdown]
    parts += (
        [e.value for e in at.info] + [e.value for e in at.error] + [e.value for e in at.caption]
    )
    return "\n".join(str(p) for p in parts)


def test_anonymous_visitors_see_only_the_login_form(app_ctx: AppContext) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    labels = [t.label for t in at.text_input]
    assert labels == ["Username", "Password"]
    assert "Chat" not in [t.value for t in at.title]
    assert "Accounts are created by an administrator" in texts(at)


def test_a_member_sees_the_chat_page_and_their_name(app_ctx: AppContext) -> None:
    at = signed_in("mia")
    assert not at.exception
    assert "💬 Chat" in [t.value for t in at.title]
    assert "**Mia Member** · member" in [m.value for m in at.sidebar.markdown]


def test_a_member_cannot_switch_to_an_admin_page(app_ctx: AppContext) -> None:
    at = signed_in("mia")
    # The page is not registered for a member at all, so there is nothing to switch to.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("users"))
    assert "👥 Users" not in [t.value for t in at.run().title]


def test_admin_pages_refuse_a_member_who_reaches_them_directly(app_ctx: AppContext) -> None:
    at = AppTest.from_file(page_path("dashboard"), default_timeout=TIMEOUT)
    at.session_state[state.AUTH_STATUS] = True
    at.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    at.run()
    assert [e.value for e in at.error] == [ACCESS_DENIED]
    assert not at.title


def test_an_admin_can_switch_to_admin_pages(app_ctx: AppContext) -> None:
    at = signed_in("ada")
    at.switch_page(page_path("users")).run()
    assert "👥 Users" in [t.value for t in at.title]
    at.switch_page(page_path("dashboard")).run()
    assert "📈 Dashboard" in [t.value for t in at.title]


def test_an_analyst_reaches_the_workbench_but_not_the_audit_page(app_ctx: AppContext) -> None:
    at = signed_in("ana")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("audit"))
    at.switch_page(page_path("workbench")).run()
    assert "🧪 Workbench" in [t.value for t in at.title]


def test_a_disabled_user_with_a_live_session_is_signed_out(app_ctx: AppContext) -> None:
    live = signed_in("mia")
    assert "💬 Chat" in [t.value for t in live.title]
    app_ctx.users.set_disabled("mia", True)
    # AppTest reruns only the page after the first run, so a fresh run (holding the same sign-in
    # session) shows what the frame does.
    at = opened_with("mia", **{state.AUTH_SESSION: live.session_state[state.AUTH_SESSION]})
    assert "💬 Chat" not in [t.value for t in at.title]
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_pages_refuse_a_user_disabled_after_the_page_was_opened(app_ctx: AppContext) -> None:
    at = signed_in("mia")
    app_ctx.users.set_disabled("mia", True)
    at.run()
    assert "💬 Chat" not in [t.value for t in at.title]
    assert [t.label for t in at.text_input] == ["Username", "Password"]  # signed out
    assert not at.error


def test_a_temporary_password_must_be_changed_before_anything_else(app_ctx: AppContext) -> None:
    app_ctx.users.set_password("mia", "temporary-pass-1", must_change=True)
    at = signed_in("mia")
    assert "Choose a new password" in [t.value for t in at.title]
    assert "💬 Chat" not in [t.value for t in at.title]
    assert [t.key for t in at.text_input] == [state.NEW_PASSWORD, state.NEW_PASSWORD_REPEAT]
    assert not at.sidebar.expander  # no second password form in the sidebar


def test_the_app_explains_an_uninitialised_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    st.cache_resource.clear()
    assert not at.exception
    assert "nexus init" in at.error[0].value


def opened_with(username: str, **session: object) -> AppTest:
    return signed_in_app(username, session=session, timeout=TIMEOUT)


def test_after_sign_in_the_page_asked_for_opens_with_its_query(app_ctx: AppContext) -> None:
    at = opened_with("ana", **{state.RETURN_TO: ("workbench", {"notebook": "starter-slo"})})
    assert not at.exception
    assert "🧪 Workbench" in [t.value for t in at.title]
    assert at.query_params["notebook"] == "starter-slo"
    assert state.RETURN_TO not in at.session_state


def test_a_deferred_return_is_dropped_once_the_user_has_gone_to_another_page(
    app_ctx: AppContext,
) -> None:
    deferred = {state.RETURN_TO: ("workbench", {}), state.RETURN_DEFERRED_ON: "feedback"}
    at = opened_with("ana", **deferred)  # now on Chat, not where the return was deferred
    assert not at.exception
    assert "💬 Chat" in [t.value for t in at.title]
    assert state.RETURN_TO not in at.session_state

    still_there = opened_with("ana", **{**deferred, state.RETURN_DEFERRED_ON: ""})  # Chat's path
    assert "🧪 Workbench" in [t.value for t in still_there.title]


def test_a_page_the_role_may_not_open_is_not_returned_to(app_ctx: AppContext) -> None:
    at = opened_with("mia", **{state.RETURN_TO: ("audit", {})})
    assert not at.exception
    assert "💬 Chat" in [t.value for t in at.title]
