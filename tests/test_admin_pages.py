"""The Users, Personas and Audit pages through AppTest: what an admin can do and see, what gets
stored and audited, and that members browse personas but never reach the admin controls."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.audit import AuditQuery
from nexus_core.auth import LOCKOUT_THRESHOLD
from nexus_core.db.models import AuditEvent
from nexus_core.ui import admin_view, audit_view, persona_view, state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.users import (
    FEATURE_BY_DEVELOPMENT,
    FEATURE_BY_ROLE,
    FEATURE_OFF,
    FEATURE_SET,
    KNOWN_FEATURES,
)
from tests.apptest import TIMEOUT, seen_text, signed_in_app
from tests.constants import PASSWORD


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A seeded database with a member, an analyst and two admins (``admin`` and ``ada``)."""
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, role="member", display_name="Mia Member")
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.create("ada", PASSWORD, role="admin")
    return ctx


def open_page(username: str, page: str) -> AppTest:
    return signed_in_app(username, page=page, timeout=TIMEOUT)


def button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def successes(at: AppTest) -> list[str]:
    return [seen_text(s.value) for s in at.success]


def errors(at: AppTest) -> list[str]:
    return [seen_text(e.value) for e in at.error]


def features(at: AppTest) -> pd.DataFrame:
    """The Users page's features table (the second), by username."""
    return at.dataframe[1].value.set_index("Username")


def column_widths(at: AppTest, table: int) -> dict[str, str]:
    """The width each configured column of the page's ``table``-th table asks for."""
    config = json.loads(at.dataframe[table].proto.columns)
    return {name: column.get("width") for name, column in config.items()}


# --- users --------------------------------------------------------------------------------


def test_an_admin_creates_a_user_and_sees_the_temporary_password_once(
    app_ctx: AppContext,
) -> None:
    at = open_page("ada", "users")
    assert not at.exception
    table = at.dataframe[0].value
    assert {"mia", "ana", "ada", "admin"} <= set(table["Username"])
    assert list(table.columns)[:5] == ["Username", "Name", "Role", "Status", "Last sign-in"]
    at.text_input(key=admin_view.NEW_USERNAME).set_value("Noor")
    at.text_input(key=admin_view.NEW_DISPLAY_NAME).set_value("Noor New")
    at.selectbox(key=admin_view.NEW_ROLE).set_value("analyst")
    button(at, "Create user").click().run()

    assert any("Created noor (analyst)" in s for s in successes(at))
    shown = [c.value for c in at.code]
    assert len(shown) == 1 and len(shown[0]) >= 16
    noor = app_ctx.users.get("noor")
    assert (noor.role, noor.display_name, noor.must_change_password) == (
        "analyst",
        "Noor New",
        True,
    )
    assert "noor" in set(at.dataframe[0].value["Username"])
    created = audit.search(app_ctx.db, AuditQuery(actions=(audit.USER_CREATED,)), limit=1)[0]
    assert (created.actor_name, created.target_id) == ("ada", str(noor.id))
    # The password works (and must be changed); it is not shown again.
    app_ctx.users.change_own_password("noor", shown[0], "noor-own-password-1")
    at.run()
    assert not at.code and not at.success


def test_the_last_active_admin_cannot_be_disabled_or_demoted(app_ctx: AppContext) -> None:
    app_ctx.users.set_disabled("admin", True)
    at = open_page("ada", "users")
    at.selectbox(key=admin_view.PICK_USER).set_value("ada").run()
    at.button(key=admin_view.DISABLE_PREFIX + "ada").click().run()
    assert errors(at) == ["The last active admin cannot be disabled."]
    assert not app_ctx.users.get("ada").disabled
    at.selectbox(key=admin_view.ROLE_PREFIX + "ada").set_value("member")
    button(at, "Change role").click().run()
    assert errors(at) == ["The last active admin cannot be demoted."]
    assert app_ctx.users.get("ada").role == "admin"
    assert at.selectbox(key=admin_view.ROLE_PREFIX + "ada").value == "admin"


def test_an_admin_disables_changes_role_and_resets_a_password(app_ctx: AppContext) -> None:
    at = open_page("ada", "users")
    at.selectbox(key=admin_view.PICK_USER).set_value("mia").run()
    at.button(key=admin_view.DISABLE_PREFIX + "mia").click().run()
    assert app_ctx.users.get("mia").disabled
    assert at.button(key=admin_view.DISABLE_PREFIX + "mia").label == "Enable"
    at.selectbox(key=admin_view.ROLE_PREFIX + "mia").set_value("analyst")
    button(at, "Change role").click().run()
    assert app_ctx.users.get("mia").role == "analyst"
    at.button(key=admin_view.RESET_PREFIX + "mia").click().run()
    password = at.code[0].value
    app_ctx.users.change_own_password("mia", password, "mia-new-password-1")
    actions = [e.action for e in audit.search(app_ctx.db, AuditQuery(actor="ada"), limit=10)]
    assert actions[:3] == [
        audit.USER_PASSWORD_RESET,
        audit.USER_ROLE_CHANGED,
        audit.USER_DISABLED,
    ]


def test_a_feature_toggle_is_saved_and_audited(app_ctx: AppContext) -> None:
    at = open_page("ada", "users")
    at.selectbox(key=admin_view.PICK_USER).set_value("mia").run()
    key = f"{admin_view.FEATURE_PREFIX}mia.pro_session_analytics"
    assert at.toggle(key=key).value is False
    at.toggle(key=key).set_value(True).run()
    assert app_ctx.users.get("mia").features == {"pro_session_analytics": True}
    assert at.toggle(key=key).value is True
    assert "pro_session_analytics is on for mia." in successes(at)
    table = features(at)
    assert table.loc["mia", "pro_session_analytics"] == FEATURE_SET
    assert table.loc["mia", "prompt_compare"] == FEATURE_OFF
    toggled = audit.search(app_ctx.db, AuditQuery(actions=(audit.USER_FEATURE_TOGGLED,)), limit=1)[
        0
    ]
    assert toggled.details == {"feature": "pro_session_analytics", "enabled": True}


def test_in_development_the_users_page_shows_every_feature_on_and_why(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_ENV", "development")
    app_ctx.users.set_feature("ana", "workbench_export", True)
    at = open_page("ada", "users")
    assert not at.exception
    table = features(at)
    assert set(table.loc["mia", list(KNOWN_FEATURES)]) == {FEATURE_BY_DEVELOPMENT}
    assert table.loc["ana", "workbench_export"] == FEATURE_SET
    assert table.loc["ana", "prompt_compare"] == FEATURE_BY_DEVELOPMENT
    assert set(table.loc["ada", list(KNOWN_FEATURES)]) == {FEATURE_BY_ROLE}
    assert any("every user has every feature here" in seen_text(c.value) for c in at.caption)
    # Each switch is the user's own flag (still off), and says that the user has the feature.
    at.selectbox(key=admin_view.PICK_USER).set_value("mia").run()
    for name in KNOWN_FEATURES:
        assert at.toggle(key=f"{admin_view.FEATURE_PREFIX}mia.{name}").value is False
    notes = [seen_text(c.value) for c in at.caption]
    assert notes.count(f"Has it now: {FEATURE_BY_DEVELOPMENT}") == len(KNOWN_FEATURES)


def test_outside_development_a_member_without_a_flag_is_shown_without_the_feature(
    app_ctx: AppContext,
) -> None:
    at = open_page("ada", "users")
    table = features(at)
    assert set(table.loc["mia", list(KNOWN_FEATURES)]) == {FEATURE_OFF}
    assert not any("every user has every feature" in seen_text(c.value) for c in at.caption)
    at.selectbox(key=admin_view.PICK_USER).set_value("mia").run()
    assert [seen_text(c.value) for c in at.caption].count(f"Has it now: {FEATURE_OFF}") == len(
        KNOWN_FEATURES
    )


def test_the_last_sign_in_column_is_wide_enough_for_the_whole_time(app_ctx: AppContext) -> None:
    assert app_ctx.sign_in.attempt("mia", PASSWORD) is not None
    at = open_page("ada", "users")
    table = at.dataframe[0].value.set_index("Username")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", table.loc["mia", "Last sign-in"])
    assert table.loc["ana", "Last sign-in"] == admin_view.NEVER
    assert column_widths(at, 0)["Last sign-in"] == "medium"  # 200 px: the whole time fits
    feature_widths = column_widths(at, 1)
    assert {feature_widths[name] for name in KNOWN_FEATURES} == {"medium"}  # and each reason


# --- personas -----------------------------------------------------------------------------


def test_editing_a_persona_saves_version_2_and_the_history_shows_the_diff(
    app_ctx: AppContext,
) -> None:
    persona = app_ctx.personas.get("Code Reviewer")
    at = open_page("ada", "personas")
    at.selectbox(key=persona_view.EDIT_PICK).set_value("Code Reviewer").run()
    field = persona_view.FIELD_PREFIX + f"{persona.id}_system_instruction"
    new_instruction = persona.system_instruction + "\nAlways end with a one-line verdict."
    at.text_area(key=field).set_value(new_instruction)
    button(at, "Save new version").click().run()

    assert "Saved Code Reviewer version 2." in successes(at)
    saved = app_ctx.personas.get("Code Reviewer")
    assert (saved.version, saved.system_instruction) == (2, new_instruction)
    assert app_ctx.personas.get_by_id(persona.id, 1).system_instruction == (
        persona.system_instruction
    )
    at.selectbox(key=persona_view.HISTORY_PICK).set_value("Code Reviewer").run()
    diffs = [c.value for c in at.code if c.language == "diff"]
    assert len(diffs) == 1
    assert "+Always end with a one-line verdict." in diffs[0].splitlines()
    assert diffs[0].startswith("--- version 1\n+++ version 2")
    assert any("Version 2" in e.label for e in at.expander)


def test_saving_without_changes_makes_no_new_version(app_ctx: AppContext) -> None:
    at = open_page("ada", "personas")
    at.selectbox(key=persona_view.EDIT_PICK).set_value("Support Triage").run()
    button(at, "Save new version").click().run()
    assert errors(at) == ["Nothing changed, so no new version was saved."]
    assert app_ctx.personas.get("Support Triage").version == 1


def test_an_admin_previews_a_new_persona_then_creates_it(app_ctx: AppContext) -> None:
    at = open_page("ada", "personas")
    slot = persona_view.NEW_SLOT
    at.text_input(key=persona_view.FIELD_PREFIX + f"{slot}_name").set_value("Ship Cook")
    at.text_area(key=persona_view.FIELD_PREFIX + f"{slot}_system_instruction").set_value(
        "You are a ship's cook. Talk about food."
    )
    button(at, "Preview reply").click().run()
    preview = [m for m in at.chat_message if m.name == "assistant"]
    assert preview and "As a ship's cook," in preview[0].markdown[0].value
    assert [p.name for p in app_ctx.personas.list()].count("Ship Cook") == 0
    button(at, "Create persona").click().run()
    assert "Created Ship Cook (version 1)." in successes(at)
    assert app_ctx.personas.get("Ship Cook").system_instruction.startswith("You are a ship's")
    assert at.selectbox(key=persona_view.EDIT_PICK).value == "Ship Cook"


def test_an_admin_deactivates_and_reactivates_a_persona(app_ctx: AppContext) -> None:
    persona = app_ctx.personas.get("Technical Writer")
    at = open_page("ada", "personas")
    at.selectbox(key=persona_view.EDIT_PICK).set_value("Technical Writer").run()
    at.button(key=persona_view.ACTIVE_PREFIX + str(persona.id)).click().run()
    assert app_ctx.personas.get("Technical Writer").active is False
    assert "Technical Writer" not in [p.name for p in app_ctx.personas.list()]
    assert at.button(key=persona_view.ACTIVE_PREFIX + str(persona.id)).label == "Reactivate"
    at.button(key=persona_view.ACTIVE_PREFIX + str(persona.id)).click().run()
    assert app_ctx.personas.get("Technical Writer").active is True


def test_a_member_browses_personas_without_edit_controls(app_ctx: AppContext) -> None:
    at = open_page("mia", "personas")
    assert not at.exception
    assert "🎭 Personas" in [t.value for t in at.title]
    assert [t.label for t in at.tabs] == ["Browse", "History"]
    labels = {b.label for b in at.button}
    assert not labels & {"Save new version", "Create persona", "Preview reply", "Deactivate"}
    assert not at.text_area and not at.color_picker
    cards = "\n".join(h.value for h in at.html)
    assert all(p.name in cards for p in app_ctx.personas.list())


# --- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["users", "audit"])
def test_a_member_can_neither_see_nor_reach_users_or_audit(app_ctx: AppContext, page: str) -> None:
    at = signed_in_app("mia", timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path(page))
    direct = AppTest.from_file(page_path(page), default_timeout=TIMEOUT)
    direct.session_state[state.AUTH_STATUS] = True
    direct.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    direct.run()
    assert errors(direct) == [ACCESS_DENIED]
    assert not direct.title and not direct.dataframe


# --- audit --------------------------------------------------------------------------------


def test_the_audit_page_filters_by_action_paginates_and_links_targets(
    app_ctx: AppContext,
) -> None:
    mia = app_ctx.users.get("mia")
    chat = app_ctx.chat.create_session(mia, "Nexus Assistant")
    with app_ctx.db.session() as session:
        for n in range(60):
            audit.record(
                session, audit.SIGN_IN, actor_id=mia.id, actor_name="mia", details={"n": n}
            )
    at = open_page("ada", "audit")
    assert not at.exception
    at.multiselect(key=audit_view.ACTIONS).select(audit.SIGN_IN).run()
    page_one = at.dataframe[0].value
    assert len(page_one) == audit_view.PAGE_SIZE
    assert set(page_one["Action"]) == {audit.SIGN_IN}
    assert page_one["Details"].iloc[0] == '{"n": 59}'
    assert "Page 1 of 2 · 60 events" in [c.value for c in at.caption]
    assert at.button(key=audit_view.PREVIOUS).disabled
    at.button(key=audit_view.NEXT).click().run()
    page_two = at.dataframe[0].value
    assert len(page_two) == 10 and page_two["Details"].iloc[-1] == '{"n": 0}'
    assert "Page 2 of 2 · 60 events" in [c.value for c in at.caption]
    assert at.button(key=audit_view.NEXT).disabled

    # New filters start again at the first page.
    at.multiselect(key=audit_view.ACTIONS).unselect(audit.SIGN_IN)
    at.multiselect(key=audit_view.ACTIONS).select(audit.SESSION_CREATED).run()
    rows = at.dataframe[0].value
    assert list(rows["Action"]) == [audit.SESSION_CREATED]
    assert rows["Open"].iloc[0] == f"/chat?session={chat.public_id}"
    assert "Page 1 of 1 · 1 event" in [c.value for c in at.caption]  # not "1 events"
    assert at.download_button[0].label == "Download CSV"


def test_the_audit_page_filters_by_kind_and_actor(app_ctx: AppContext) -> None:
    ada = app_ctx.users.get("ada")
    app_ctx.users.set_feature("mia", "prompt_compare", True, actor=ada)
    app_ctx.personas.edit("Nexus Assistant", description="Helps.", actor=ada)
    at = open_page("ada", "audit")
    at.selectbox(key=audit_view.KIND).set_value("persona.").run()
    assert set(at.dataframe[0].value["Action"]) == {audit.PERSONA_EDITED, audit.PERSONA_CREATED}
    at.selectbox(key=audit_view.ACTOR).set_value("ada").run()
    assert list(at.dataframe[0].value["Action"]) == [audit.PERSONA_EDITED]
    at.selectbox(key=audit_view.KIND).set_value("feedback.").run()
    assert "No audit events match these filters." in [i.value for i in at.info]


def test_a_locked_account_shows_until_when_and_an_admin_unlocks_it(app_ctx: AppContext) -> None:
    sign_in = app_ctx.sign_in
    for attempt in range(LOCKOUT_THRESHOLD):
        sign_in.attempt("mia", f"wrong-{attempt}")
    at = open_page("ada", "users")
    status = at.dataframe[0].value.set_index("Username").loc["mia", "Status"]
    assert status.startswith("locked until ") and status.endswith(" UTC")

    at.selectbox(key=admin_view.PICK_USER).set_value("mia").run()
    at.button(key=admin_view.UNLOCK_PREFIX + "mia").click().run()

    assert successes(at) == ["mia is unlocked and can sign in again."]
    assert app_ctx.users.get("mia").status == "active"
    assert at.dataframe[0].value.set_index("Username").loc["mia", "Status"] == "active"
    assert not [b for b in at.button if b.key == admin_view.UNLOCK_PREFIX + "mia"]
    unlocked = audit.search(app_ctx.db, AuditQuery(actions=(audit.USER_UNLOCKED,)), limit=5)
    assert [(e.actor_name, e.target_id) for e in unlocked] == [
        ("ada", str(app_ctx.users.get("mia").id))
    ]


def test_the_audit_page_verifies_the_hash_chain_and_names_an_edited_event(
    app_ctx: AppContext,
) -> None:
    at = open_page("ada", "audit")
    at.button(key=audit_view.VERIFY).click().run()
    assert successes(at)[0].startswith("No event of the hash chain was changed, deleted or slipped")
    first = audit.search(app_ctx.db, AuditQuery(), limit=1000)[-1]
    with app_ctx.db.transaction() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == first.id).values(action="x.y"))

    at.button(key=audit_view.VERIFY).click().run()

    assert errors(at) == [
        f"The hash chain is broken: event {first.id} was changed after it was written."
    ]
