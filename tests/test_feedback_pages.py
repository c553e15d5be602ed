"""The Feedback page and the Feedback explorer through AppTest: sending general feedback and
following it, exploring with filters, opening an item and triaging it, bulk status change,
and a member who can neither see nor reach the explorer."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Dataframe

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.db.models import Feedback, Message, User
from nexus_core.ui import explorer_view, feedback_view, links, state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.users import hash_password
from tests.apptest import TIMEOUT, seen_text, signed_in_app
from tests.constants import PASSWORD


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def app_ctx(app_env: AppContext, password_hash: str) -> AppContext:
    """Personas, a member (mia, with one chat), an analyst (ana) and an admin (ada)."""
    ctx = app_env
    ctx.personas.seed_defaults()
    with ctx.db.session() as session:  # one bcrypt hash for everybody: sign-in is not under test
        for name, role in (("mia", "member"), ("ana", "analyst"), ("ada", "admin")):
            session.add(
                User(username=name, display_name=name, password_hash=password_hash, role=role)
            )
    return ctx


def signed_in(username: str, page: str) -> AppTest:
    return signed_in_app(username, page=page, timeout=TIMEOUT)


def chat_with_reply(ctx: AppContext, persona: str = "Nexus Assistant") -> tuple[str, int]:
    """A chat of mia's with one question and one reply; its public id and the reply id."""
    mia = ctx.users.get("mia")
    chat = ctx.chat.create_session(mia, persona)
    ctx.chat.add_user_message(chat.public_id, mia, "How fast are replies?")
    with ctx.db.session() as session:
        reply = Message(session_id=chat.id, role="assistant", content="Usually **under 3 s**.")
        session.add(reply)
        session.flush()
        return chat.public_id, reply.id


def feedback_table(at: AppTest) -> Dataframe | None:
    prefix = explorer_view.TABLE_PREFIX
    return next((d for d in at.dataframe if d.key and d.key.startswith(prefix)), None)


def table_ids(at: AppTest) -> list[int]:
    table = feedback_table(at)
    return [] if table is None else table.value["#"].tolist()


def history(at: AppTest) -> list[str]:
    table = next(d for d in at.dataframe if "What" in d.value.columns)
    return table.value["What"].tolist()


# --- the Feedback page ----------------------------------------------------------------------


def test_general_feedback_is_saved_and_listed_under_my_submissions(app_ctx: AppContext) -> None:
    public_id, _ = chat_with_reply(app_ctx)
    at = signed_in("mia", "feedback")
    assert "📝 Feedback" in [t.value for t in at.title]
    assert any("not sent any feedback" in i.value for i in at.info)
    at.selectbox(key=feedback_view.CATEGORY).set_value("ux")
    at.selectbox(key=feedback_view.PRIORITY).set_value("high")
    at.text_area(key=feedback_view.DESCRIPTION).input("The sidebar hides my chats")
    at.selectbox(key=feedback_view.SESSION).set_value(public_id)
    at.button(key=feedback_view.SEND).click().run()

    with app_ctx.db.session() as session:
        row = session.scalars(select(Feedback)).one()
        saved = (row.category, row.priority, row.status, row.description, row.context)
    assert saved == ("ux", "high", "open", "The sidebar hides my chats", {"session": public_id})
    assert any(f"feedback #{row.id} was saved" in seen_text(s.value) for s in at.success)
    mine = at.dataframe[0].value
    assert mine[["#", "About", "Category", "Status", "Feedback"]].values.tolist() == [
        [row.id, "a chat", "ux", "open", "The sidebar hides my chats"]
    ]


def test_my_submissions_follow_the_status_the_team_sets(app_ctx: AppContext) -> None:
    mia = app_ctx.users.get("mia")
    item = app_ctx.feedback.submit(mia, category="bug", priority="low", description="Broken")
    app_ctx.triage.set_status(item.id, "resolved", app_ctx.users.get("ana"))
    at = signed_in("mia", "feedback")
    mine = at.dataframe[0].value
    assert mine[["#", "About", "Status"]].values.tolist() == [[item.id, "Nexus AI", "resolved"]]


def test_feedback_without_a_description_is_refused_with_the_reason(app_ctx: AppContext) -> None:
    at = signed_in("mia", "feedback")
    at.button(key=feedback_view.SEND).click().run()
    assert any("Describe the problem or idea" in e.value for e in at.error)
    with app_ctx.db.session() as session:
        assert session.scalars(select(Feedback)).all() == []


# --- who may explore ------------------------------------------------------------------------


def test_a_member_can_neither_see_nor_reach_the_explorer(app_ctx: AppContext) -> None:
    at = signed_in("mia", "feedback")
    assert not at.get("page_link")  # no "Explore and triage all feedback" link for members
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("explorer"))

    direct = AppTest.from_file(page_path("explorer"), default_timeout=TIMEOUT)
    direct.session_state[state.AUTH_STATUS] = True
    direct.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    direct.run()
    assert [e.value for e in direct.error] == [ACCESS_DENIED]
    assert not direct.title and not direct.dataframe


def test_analysts_find_the_explorer_linked_from_the_feedback_page(app_ctx: AppContext) -> None:
    at = signed_in("ana", "feedback")
    assert [link.label for link in at.get("page_link")] == ["Explore and triage all feedback"]
    assert "🔎 Feedback explorer" in [
        t.value for t in at.switch_page(page_path("explorer")).run().title
    ]


# --- the explorer ---------------------------------------------------------------------------


def seed(ctx: AppContext) -> dict[str, int]:
    mia = ctx.users.get("mia")
    public_id, reply_id = chat_with_reply(ctx)
    submit = ctx.feedback.submit
    return {
        "slow": submit(
            mia,
            category="performance",
            priority="high",
            description="Replies are slow",
            message_id=reply_id,
        ).id,
        "typo": submit(
            mia,
            category="content",
            priority="low",
            description="A typo in the answer",
            session_public_id=public_id,
        ).id,
        "idea": submit(mia, category="suggestion", priority="medium", description="Dark mode").id,
    }


def test_the_explorer_filters_by_category_search_and_persona(app_ctx: AppContext) -> None:
    ids = seed(app_ctx)
    at = signed_in("ana", "explorer")
    assert table_ids(at) == [ids["idea"], ids["typo"], ids["slow"]]
    at.multiselect(key=explorer_view.CATEGORY_FILTER).set_value(["performance", "content"]).run()
    assert table_ids(at) == [ids["typo"], ids["slow"]]
    assert any(seen_text(c.value).startswith("2 items ·") for c in at.caption)
    at.text_input(key=explorer_view.SEARCH).input("TYPO").run()
    assert table_ids(at) == [ids["typo"]]
    assert any(seen_text(c.value).startswith("1 item ·") for c in at.caption)  # not "1 items"
    at.text_input(key=explorer_view.SEARCH).input("").run()
    at.multiselect(key=explorer_view.CATEGORY_FILTER).set_value([]).run()
    at.multiselect(key=explorer_view.PERSONA_FILTER).set_value(["(no conversation)"]).run()
    assert table_ids(at) == [ids["idea"]]
    at.selectbox(key=explorer_view.AUTHOR).set_value("ana").run()
    assert table_ids(at) == []
    assert any("No feedback matches" in i.value for i in at.info)
    assert not at.exception


def test_the_explorer_pages_through_many_items_and_new_filters_start_at_page_one(
    app_ctx: AppContext,
) -> None:
    mia = app_ctx.users.get("mia")
    many = explorer_view.TABLE_PAGE_SIZE + 5
    with app_ctx.db.session() as session:  # rows, not submissions: the service is not under test
        session.add_all(
            Feedback(user_id=mia.id, category="bug", description=f"Bug {n}") for n in range(many)
        )
    at = signed_in("ana", "explorer")
    first = table_ids(at)
    assert len(first) == explorer_view.TABLE_PAGE_SIZE
    assert f"Page 1 of 2 · {many} items" in [c.value for c in at.caption]
    at.button(key=f"{explorer_view.TABLE_PAGE}_next").click().run()
    second = table_ids(at)
    assert len(second) == 5 and not set(first) & set(second)
    assert at.button(key=f"{explorer_view.TABLE_PAGE}_next").disabled
    at.selectbox(key=explorer_view.SORT).set_value("oldest").run()
    assert table_ids(at) == sorted(first + second)[: explorer_view.TABLE_PAGE_SIZE]  # page 1
    assert not at.exception


def test_opening_an_item_shows_the_conversation_and_a_status_change_is_audited(
    app_ctx: AppContext,
) -> None:
    ids = seed(app_ctx)
    at = signed_in("ana", "explorer")
    at.selectbox(key=explorer_view.OPEN).set_value(ids["slow"]).run()
    assert at.query_params[links.ITEM_QUERY_PARAM] == str(ids["slow"])
    assert f"Feedback #{ids['slow']}" in [h.value for h in at.subheader]
    conversation = [(m.name, m.markdown[0].value) for m in at.chat_message]
    assert conversation == [
        ("user", "How fast are replies?"),
        ("assistant", "Usually **under 3 s**."),
    ]
    move_to = at.selectbox(key=f"{explorer_view.STATUS_PICK_PREFIX}{ids['slow']}")
    assert move_to.options == ["in progress", "resolved", "closed"]
    move_to.set_value("resolved")
    at.button(key=f"{explorer_view.STATUS_APPLY_PREFIX}{ids['slow']}").click().run()

    assert f"Feedback #{ids['slow']} is now resolved." in [seen_text(s.value) for s in at.success]
    events = audit.for_target(app_ctx.db, "feedback", str(ids["slow"]))
    changes = [
        (e.actor_name, e.details) for e in events if e.action == audit.FEEDBACK_STATUS_CHANGED
    ]
    assert changes == [("ana", {"from": "open", "to": "resolved"})]
    assert "Status open → resolved" in history(at)
    reopen = at.selectbox(key=f"{explorer_view.STATUS_PICK_PREFIX}{ids['slow']}")
    assert reopen.options == ["open"]  # resolved items can only be reopened


def test_an_audit_link_opens_the_item_and_triagers_assign_and_note_it(app_ctx: AppContext) -> None:
    ids = seed(app_ctx)
    at = signed_in_app("ada", timeout=TIMEOUT)
    at.query_params[links.ITEM_QUERY_PARAM] = str(ids["idea"])
    at.switch_page(page_path("explorer")).run()
    assert f"Feedback #{ids['idea']}" in [h.value for h in at.subheader]
    assignee = at.selectbox(key=f"{explorer_view.ASSIGNEE_PREFIX}{ids['idea']}")
    assert assignee.options == ["(nobody)", "ada", "ana"]
    assignee.set_value("ana")
    at.button(key=f"{explorer_view.ASSIGN_PREFIX}{ids['idea']}").click().run()
    assert f"Feedback #{ids['idea']} is assigned to ana." in [
        seen_text(s.value) for s in at.success
    ]
    at.text_area[0].input("Asked design for a mock-up")
    at.button(key=f"FormSubmitter:{explorer_view.NOTE_FORM_PREFIX}{ids['idea']}-Add note").click()
    at.run()
    assert history(at)[-2:] == ["Assigned to ana", "Note: Asked design for a mock-up"]
    at.button(key=explorer_view.CLOSE).click().run()
    assert links.ITEM_QUERY_PARAM not in at.query_params
    assert not [h for h in at.subheader if h.value.startswith("Feedback #")]


def test_bulk_status_change_moves_the_selected_rows_and_reports_refusals(
    app_ctx: AppContext,
) -> None:
    ids = seed(app_ctx)
    triage = app_ctx.triage
    triage.set_status(ids["typo"], "closed", app_ctx.users.get("ana"))
    at = signed_in("ana", "explorer")
    table = feedback_table(at)
    assert table is not None and table.key is not None
    shown = table.value["#"].tolist()
    positions = [shown.index(ids["slow"]), shown.index(ids["typo"])]
    at.session_state[table.key] = {"selection": {"rows": positions, "columns": [], "cells": []}}
    at.run()
    at.selectbox(key=explorer_view.BULK_STATUS).set_value("resolved")
    at.button(key=explorer_view.BULK_APPLY).click().run()

    notice = seen_text(at.success[0].value)
    assert notice.startswith("1 moved to resolved")
    assert f"#{ids['typo']} refused: Feedback #{ids['typo']} is closed" in notice
    rows = {
        r.id: r.status
        for r in triage.search(explorer_view.FeedbackFilters(), viewer=app_ctx.users.get("ana"))
    }
    assert rows == {ids["slow"]: "resolved", ids["typo"]: "closed", ids["idea"]: "open"}


def test_the_charts_and_downloads_are_there_for_the_filtered_set(app_ctx: AppContext) -> None:
    seed(app_ctx)
    at = signed_in("ana", "explorer")
    assert [t.label for t in at.tabs] == ["Items", "Charts"]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download Parquet"]
    # The charts are built only once their tab is opened: none on the first screen.
    assert not at.get("plotly_chart")
    at.session_state[explorer_view.TABS] = "Charts"
    at.run()
    assert len(at.get("plotly_chart")) == 3
    assert labels == [b.label for b in at.get("download_button")]  # the items stay


def test_charts_of_a_filter_that_matches_nothing_say_so_instead_of_drawing_blank_axes(
    app_ctx: AppContext,
) -> None:
    seed(app_ctx)
    at = signed_in("ana", "explorer")
    at.session_state[explorer_view.TABS] = "Charts"
    at.text_input(key=explorer_view.SEARCH).input("no such words").run()
    assert not at.exception
    assert not at.get("plotly_chart")
    empty_states = [seen_text(c.value) for c in at.caption if "📭" in c.value]
    assert [e.split(" — ")[0] for e in empty_states] == ["📭 No feedback matches these filters"] * 3
    assert "**Feedback by category per day**" in [seen_text(m.value) for m in at.markdown]
