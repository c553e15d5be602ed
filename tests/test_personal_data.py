"""One person's data: exported whole (no secrets), and erased without moving a dashboard number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from nexus_core import audit, audit_chain
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.app_context import AppContext
from nexus_core.audit import AuditQuery
from nexus_core.cost.usage import usage_report
from nexus_core.db.models import ChatSession, Feedback, Message, ModelPrice, Notebook, User
from nexus_core.errors import NotFound, PermissionDenied
from nexus_core.privacy.personal_data import ERASED_TEXT, ERASED_TITLE
from nexus_core.simulation import simulate
from nexus_core.ui import admin_view
from nexus_core.users import UserView
from tests.apptest import TIMEOUT, seen_text, signed_in_app
from tests.test_cli import run_nexus

PERSON = "demo-user-1"


@pytest.fixture
def demo(ctx: AppContext) -> Iterator[AppContext]:
    """A fresh install after a small simulation: demo people with chats, feedback and votes."""
    ctx.init()
    simulate(ctx, users=2, sessions=6, days=2, seed=11, word_latency=(0.0, 0.0))
    person = person_as_analyst(ctx, ctx.users.get(PERSON))
    ctx.notebooks.create(person, "My private notes", [])
    ctx.boards.create(person, "Monday numbers", shared=True)
    with ctx.db.session() as session:
        session.add(
            ModelPrice(
                model="gpt-x",
                input_usd=1.0,
                output_usd=2.0,
                effective_from=date(2026, 1, 1),
                created_by=PERSON,
            )
        )
    yield ctx


def person_as_analyst(ctx: AppContext, person: UserView) -> UserView:
    """Notebooks belong to analysts: make the demo person one, as a workplace might."""
    return ctx.users.set_role(person.username, "analyst")


def counts(ctx: AppContext, user_id: int) -> dict[str, object]:
    """What the person's rows add up to (the numbers erasure must not change)."""
    with ctx.db.session() as session:
        chats = select(ChatSession.id).where(ChatSession.user_id == user_id)
        mine = Message.session_id.in_(chats)
        return {
            "messages": session.scalar(select(func.count()).where(mine)),
            "tokens": session.scalar(select(func.sum(Message.tokens_out)).where(mine)),
            "cost": session.scalar(select(func.sum(Message.cost_usd)).where(mine)),
            "feedback": session.scalar(
                select(func.count()).select_from(Feedback).where(Feedback.user_id == user_id)
            ),
        }


def test_the_export_holds_their_chats_feedback_and_notebooks_and_no_secret(
    demo: AppContext,
) -> None:
    person = demo.users.get(PERSON)
    admin = demo.users.get("admin")

    data = demo.personal_data.export(PERSON, actor=admin)

    assert data["account"]["username"] == PERSON
    assert "password_hash" not in json.dumps(data)
    with demo.db.session() as session:
        stored = session.scalar(select(User.password_hash).where(User.id == person.id))
    assert stored and stored not in json.dumps(data)
    texts = [m["content"] for chat in data["chat_sessions"] for m in chat["messages"]]
    assert len(texts) == counts(demo, person.id)["messages"]
    assert [n["title"] for n in data["notebooks"]] == ["My private notes"]
    assert len(data["feedback"]) == counts(demo, person.id)["feedback"]
    assert any(e["action"] == audit.USER_CREATED for e in data["audit_events"])
    exported = audit.search(demo.db, AuditQuery(actions=(audit.USER_DATA_EXPORTED,)), limit=5)
    assert [(e.actor_name, e.target_id) for e in exported] == [("admin", str(person.id))]


def test_erasure_removes_their_text_and_keeps_every_number(demo: AppContext) -> None:
    person = demo.users.get(PERSON)
    admin = demo.users.get("admin")
    now = datetime.now(UTC)
    before = counts(demo, person.id)
    metrics_before = compute_metrics(demo.event_store, "7d", now)
    usage_before = usage_report(demo.event_store, "7d", now, ["model"])

    report = demo.personal_data.erase(PERSON, actor=admin)

    assert report.account == f"erased-{person.id}" and report.messages == before["messages"]
    assert counts(demo, person.id) == before
    assert compute_metrics(demo.event_store, "7d", now) == metrics_before
    assert usage_report(demo.event_store, "7d", now, ["model"]) == usage_before
    with demo.db.session() as session:
        chats = select(ChatSession.id).where(ChatSession.user_id == person.id)
        contents = set(
            session.scalars(select(Message.content).where(Message.session_id.in_(chats)))
        )
        titles = set(
            session.scalars(select(ChatSession.title).where(ChatSession.user_id == person.id))
        )
        feedback = set(
            session.scalars(select(Feedback.description).where(Feedback.user_id == person.id))
        )
        notebooks = session.scalar(select(func.count()).where(Notebook.owner_id == person.id))
    assert contents == {ERASED_TEXT} and titles == {ERASED_TITLE}
    assert report.boards == 1 and demo.boards.list_for(admin) == []
    with demo.db.session() as session:
        assert session.scalar(select(ModelPrice.created_by)) == report.account
    assert feedback <= {ERASED_TEXT} and notebooks == 0
    with pytest.raises(NotFound):
        demo.users.get(PERSON)
    erased = demo.users.get(report.account)
    assert erased.disabled and erased.display_name == "Erased user" and erased.email is None
    assert demo.sign_in.attempt(report.account, "anything-at-all") is None
    assert audit_chain.verify(demo.db).intact
    (event,) = audit.search(demo.db, AuditQuery(actions=(audit.USER_ERASED,)), limit=5)
    assert event.actor_name == "admin" and event.details["messages"] == before["messages"]


def test_nobody_erases_themselves_or_the_last_admin(demo: AppContext) -> None:
    admin = demo.users.get("admin")
    with pytest.raises(PermissionDenied, match="your own account"):
        demo.personal_data.erase("admin", actor=admin)
    with pytest.raises(PermissionDenied, match="last active admin"):
        demo.personal_data.erase("admin")
    with pytest.raises(NotFound):
        demo.personal_data.erase("nobody-here")


def test_the_command_exports_json_and_erases_only_with_yes(demo: AppContext) -> None:
    settings = demo.settings
    exported = run_nexus(settings, "users", "export", PERSON)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["account"]["username"] == PERSON

    refused = run_nexus(settings, "users", "erase", PERSON)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"nexus: Erasing '{PERSON}' removes their text for good; add --yes to confirm."
    )
    assert demo.users.get(PERSON)

    erased = run_nexus(settings, "users", "erase", PERSON, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "the account is now 'erased-" in erased.stdout
    with pytest.raises(NotFound):
        demo.users.get(PERSON)


def test_an_admin_erases_a_person_on_the_users_page_after_typing_their_name(
    demo: AppContext, app_env: AppContext
) -> None:
    at = signed_in_app("admin", page="users", timeout=TIMEOUT)
    at.selectbox(key=admin_view.PICK_USER).set_value(PERSON).run()
    assert at.get("download_button")  # "Export their data (JSON)"
    at.text_input(key=admin_view.ERASE_CONFIRM_PREFIX + PERSON).input("demo-user-2")
    next(b for b in at.button if b.label == "Erase for good").click().run()
    assert [seen_text(e.value) for e in at.error] == [
        f"Nothing erased: type {PERSON} exactly to confirm."
    ]
    assert demo.users.get(PERSON)

    at.text_input(key=admin_view.ERASE_CONFIRM_PREFIX + PERSON).input(PERSON)
    next(b for b in at.button if b.label == "Erase for good").click().run()

    (success,) = [seen_text(s.value) for s in at.success]
    assert success.startswith(f"Erased {PERSON}'s data: ")
    with pytest.raises(NotFound):
        demo.users.get(PERSON)
    assert not at.exception
