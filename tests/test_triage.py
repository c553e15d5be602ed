"""Feedback triage: filters, sort and paging, status transitions (invalid ones refused),
assignment, notes, history, charts data and exports — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl
import pytest
from sqlalchemy import delete, select, update

from nexus_core import audit
from nexus_core.analytics.charts import EmptyChart
from nexus_core.analytics.feedback_charts import (
    EMPTY_TEXT,
    backlog_figure,
    category_figure,
    persona_figure,
)
from nexus_core.app_context import AppContext
from nexus_core.db.models import Feedback, FeedbackNote, Message, User
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.feedback.filters import NO_PERSONA, FeedbackFilters
from nexus_core.feedback.triage import TriageService
from nexus_core.users import UserView

ALL = FeedbackFilters()


@dataclass
class World:
    ctx: AppContext
    triage: TriageService
    analyst: UserView
    admin: UserView
    mia: UserView
    max: UserView
    ids: dict[str, int]

    def ids_of(self, filters: FeedbackFilters, sort: str = "oldest") -> list[int]:
        return [r.id for r in self.triage.search(filters, viewer=self.analyst, sort=sort)]


def _at(ctx: AppContext, feedback_id: int, when: datetime) -> None:
    with ctx.db.session() as session:
        session.execute(update(Feedback).where(Feedback.id == feedback_id).values(created_at=when))


def _user(ctx: AppContext, username: str, role: str = "member") -> UserView:
    # Straight into the table: these tests never sign in, and bcrypt would cost seconds each.
    with ctx.db.session() as session:
        session.add(User(username=username, display_name=username, password_hash="-", role=role))
    return ctx.users.get(username)


@pytest.fixture
def world(ctx: AppContext) -> World:
    """Two members' feedback: about an assistant reply, a Code Reviewer chat and the app."""
    ctx.personas.seed_defaults()
    admin = _user(ctx, "admin", "admin")
    analyst = _user(ctx, "ana", "analyst")
    mia = _user(ctx, "mia")
    max_ = _user(ctx, "max")
    chat = ctx.chat.create_session(mia, "Nexus Assistant")
    question = ctx.chat.add_user_message(chat.public_id, mia, "What is our p95 target?")
    with ctx.db.session() as session:
        reply = Message(session_id=chat.id, role="assistant", content="Under **3 s**.")
        session.add(reply)
        session.flush()
        reply_id = reply.id
    review = ctx.chat.create_session(max_, "Code Reviewer")
    fb = ctx.feedback
    ids = {
        "slow": fb.submit(
            mia,
            category="performance",
            priority="high",
            description="Replies are SLOW in the morning",
            message_id=reply_id,
        ).id,
        "typo": fb.submit(
            max_,
            category="content",
            priority="low",
            description="Typo in the review: 100%_done",
            session_public_id=review.public_id,
        ).id,
        "idea": fb.submit(
            mia, category="suggestion", priority="critical", description="Dark mode please"
        ).id,
    }
    _at(ctx, ids["slow"], datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # a Monday
    _at(ctx, ids["typo"], datetime(2026, 3, 3, 23, 59, tzinfo=UTC))
    _at(ctx, ids["idea"], datetime(2026, 3, 10, 0, 0, tzinfo=UTC))
    del question
    return World(ctx, TriageService(ctx.db), analyst, admin, mia, max_, ids)


# --- exploring ------------------------------------------------------------------------------


def test_each_filter_narrows_the_feedback_to_what_it_names(world: World) -> None:
    ids = world.ids
    assert world.ids_of(ALL) == [ids["slow"], ids["typo"], ids["idea"]]
    assert world.ids_of(FeedbackFilters(categories=("content", "suggestion"))) == [
        ids["typo"],
        ids["idea"],
    ]
    assert world.ids_of(FeedbackFilters(priorities=("critical",))) == [ids["idea"]]
    assert world.ids_of(FeedbackFilters(personas=("Code Reviewer",))) == [ids["typo"]]
    assert world.ids_of(FeedbackFilters(personas=(NO_PERSONA, "Nexus Assistant"))) == [
        ids["slow"],
        ids["idea"],
    ]
    assert world.ids_of(FeedbackFilters(author="MAX")) == [ids["typo"]]
    world.triage.set_status(ids["idea"], "in_progress", world.analyst)
    assert world.ids_of(FeedbackFilters(statuses=("in_progress",))) == [ids["idea"]]
    both = FeedbackFilters(categories=("performance",), author="max")
    assert world.ids_of(both) == []
    assert world.triage.count(FeedbackFilters(author="mia"), viewer=world.analyst) == 2


def test_the_date_range_covers_whole_utc_days_at_both_ends(world: World) -> None:
    ids = world.ids
    march_3 = FeedbackFilters(date_from=date(2026, 3, 3), date_to=date(2026, 3, 3))
    assert world.ids_of(march_3) == [ids["typo"]]
    assert world.ids_of(FeedbackFilters(date_to=date(2026, 3, 2))) == [ids["slow"]]
    assert world.ids_of(FeedbackFilters(date_from=date(2026, 3, 10))) == [ids["idea"]]
    with pytest.raises(ValidationError, match="start date is after the end date"):
        world.ids_of(FeedbackFilters(date_from=date(2026, 3, 4), date_to=date(2026, 3, 3)))


def test_text_search_ignores_case_and_treats_wildcards_literally(world: World) -> None:
    assert world.ids_of(FeedbackFilters(text="slow")) == [world.ids["slow"]]
    assert world.ids_of(FeedbackFilters(text="100%_d")) == [world.ids["typo"]]
    assert world.ids_of(FeedbackFilters(text="%")) == [world.ids["typo"]]
    assert world.ids_of(FeedbackFilters(text="_")) == [world.ids["typo"]]


def test_rows_carry_author_persona_session_and_assignee_names(world: World) -> None:
    world.triage.assign(world.ids["typo"], "ana", world.admin)
    rows = {r.id: r for r in world.triage.search(ALL, viewer=world.analyst)}
    typo, idea = rows[world.ids["typo"]], rows[world.ids["idea"]]
    assert (typo.author, typo.persona, typo.assignee, typo.source) == (
        "max",
        "Code Reviewer",
        "ana",
        "conversation",
    )
    assert typo.session_public_id is not None
    assert (idea.persona, idea.session_public_id, idea.source) == (None, None, "general")
    assert rows[world.ids["slow"]].source == "reply"


def test_sorting_and_paging(world: World) -> None:
    ids = world.ids
    assert world.ids_of(ALL, "newest") == [ids["idea"], ids["typo"], ids["slow"]]
    assert world.ids_of(ALL, "priority") == [ids["idea"], ids["slow"], ids["typo"]]
    world.triage.set_status(ids["slow"], "resolved", world.analyst)
    assert world.ids_of(ALL, "status")[-1] == ids["slow"]
    page = world.triage.search(ALL, viewer=world.analyst, sort="oldest", limit=1, offset=1)
    assert [r.id for r in page] == [ids["typo"]]
    with pytest.raises(ValidationError, match="Unknown sort"):
        world.ids_of(ALL, "loudest")
    with pytest.raises(ValidationError, match="Unknown category"):
        world.ids_of(FeedbackFilters(categories=("rant",)))


def test_members_can_neither_explore_nor_triage(world: World) -> None:
    triage, mia, some_id = world.triage, world.mia, world.ids["idea"]
    for call in (
        lambda: triage.search(ALL, viewer=mia),
        lambda: triage.count(ALL, viewer=mia),
        lambda: triage.detail(some_id, mia),
        lambda: triage.history(some_id, mia),
        lambda: triage.set_status(some_id, "closed", mia),
        lambda: triage.bulk_set_status([some_id], "closed", mia),
        lambda: triage.assign(some_id, "ana", mia),
        lambda: triage.add_note(some_id, "hi", mia),
        lambda: triage.export_csv(ALL, viewer=mia),
        lambda: triage.stats(ALL, viewer=mia),
    ):
        with pytest.raises(PermissionDenied, match="analysts and admins"):
            call()
    assert world.triage.detail(some_id, world.admin).item.status == "open"


# --- triage ---------------------------------------------------------------------------------


def _status_changes(world: World, feedback_id: int) -> list[dict[str, object]]:
    events = audit.for_target(world.ctx.db, "feedback", str(feedback_id))
    return [e.details for e in events if e.action == audit.FEEDBACK_STATUS_CHANGED]


def test_allowed_transitions_move_the_item_and_are_audited_with_from_and_to(world: World) -> None:
    item = world.ids["slow"]
    for new in ("in_progress", "open", "resolved", "open", "closed", "open"):
        assert world.triage.set_status(item, new, world.analyst).status == new
    assert [(c["from"], c["to"]) for c in _status_changes(world, item)] == [
        ("open", "in_progress"),
        ("in_progress", "open"),
        ("open", "resolved"),
        ("resolved", "open"),
        ("open", "closed"),
        ("closed", "open"),
    ]
    event = audit.for_target(world.ctx.db, "feedback", str(item))[-1]
    assert (event.actor_name, event.actor_id) == ("ana", world.analyst.id)


@pytest.mark.parametrize(
    ("path", "refused", "message"),
    [
        (("resolved",), "closed", "is resolved; it cannot move to closed, only to open"),
        (("resolved",), "in_progress", "cannot move to in progress, only to open"),
        (("closed",), "resolved", "is closed; it cannot move to resolved, only to open"),
    ],
)
def test_invalid_transitions_are_refused_with_a_clear_message_and_change_nothing(
    world: World, path: tuple[str, ...], refused: str, message: str
) -> None:
    item = world.ids["typo"]
    for status in path:
        world.triage.set_status(item, status, world.analyst)
    with pytest.raises(ValidationError, match=message):
        world.triage.set_status(item, refused, world.analyst)
    assert world.triage.detail(item, world.analyst).item.status == path[-1]
    assert len(_status_changes(world, item)) == len(path)


def test_unknown_statuses_and_missing_items_are_refused(world: World) -> None:
    with pytest.raises(ValidationError, match="Unknown status 'done'"):
        world.triage.set_status(world.ids["typo"], "done", world.analyst)
    with pytest.raises(NotFound, match="#999999 does not exist"):
        world.triage.set_status(999_999, "closed", world.analyst)


def test_setting_the_status_an_item_already_has_is_a_silent_no_op(world: World) -> None:
    assert world.triage.set_status(world.ids["idea"], "open", world.analyst).status == "open"
    assert _status_changes(world, world.ids["idea"]) == []


def test_bulk_change_moves_what_it_may_and_says_why_it_refused_the_rest(world: World) -> None:
    slow, typo, idea = world.ids["slow"], world.ids["typo"], world.ids["idea"]
    world.triage.set_status(typo, "closed", world.analyst)
    world.triage.set_status(idea, "resolved", world.analyst)
    changed, refused = world.triage.bulk_set_status(
        [slow, typo, idea, slow, 424242], "resolved", world.analyst
    )
    assert changed == [slow]
    assert set(refused) == {typo, 424242}
    assert "is closed; it cannot move to resolved" in refused[typo]
    assert "does not exist" in refused[424242]
    statuses = {r.id: r.status for r in world.triage.search(ALL, viewer=world.analyst)}
    assert statuses == {slow: "resolved", typo: "closed", idea: "resolved"}
    assert len(_status_changes(world, slow)) == 1


def test_items_are_assigned_to_analysts_or_admins_only_and_every_change_is_audited(
    world: World,
) -> None:
    item = world.ids["idea"]
    assert world.triage.assign(item, "ana", world.admin).assignee == "ana"
    assert world.triage.assign(item, "ana", world.admin).assignee == "ana"  # no-op
    assert world.triage.assign(item, "admin", world.analyst).assignee == "admin"
    with pytest.raises(ValidationError, match="mia cannot be assigned"):
        world.triage.assign(item, "mia", world.analyst)
    with pytest.raises(NotFound, match="No user named 'nobody'"):
        world.triage.assign(item, "nobody", world.analyst)
    assert world.triage.assign(item, None, world.analyst).assignee is None
    events = audit.for_target(world.ctx.db, "feedback", str(item))
    assigned = [e.details for e in events if e.action == audit.FEEDBACK_ASSIGNED]
    assert assigned == [
        {"from": None, "to": "ana"},
        {"from": "ana", "to": "admin"},
        {"from": "admin", "to": None},
    ]
    assert world.triage.triagers(world.analyst) == ["admin", "ana"]


def test_notes_are_stored_audited_and_shown_in_the_history_in_order(world: World) -> None:
    item = world.ids["slow"]
    world.triage.set_status(item, "in_progress", world.analyst)
    world.triage.add_note(item, "  Reproduced at 09:00 UTC\x07 ", world.analyst)
    world.triage.assign(item, "ana", world.admin)
    with pytest.raises(ValidationError, match="note is empty"):
        world.triage.add_note(item, " \x07 ", world.analyst)
    history = world.triage.history(item, world.analyst)
    assert [(h.actor, h.summary) for h in history] == [
        ("mia", "Submitted: performance, high priority"),
        ("ana", "Status open → in progress"),
        ("ana", "Note: Reproduced at 09:00 UTC"),
        ("admin", "Assigned to ana"),
    ]
    with world.ctx.db.session() as session:
        note = session.scalars(select(FeedbackNote)).one()
        assert (note.feedback_id, note.author_id, note.text) == (
            item,
            world.analyst.id,
            "Reproduced at 09:00 UTC",
        )
    actions = [e.action for e in audit.for_target(world.ctx.db, "feedback", str(item))]
    assert audit.FEEDBACK_NOTE_ADDED in actions


def test_notes_go_with_their_feedback_item(world: World) -> None:
    world.triage.add_note(world.ids["typo"], "duplicate of an older report", world.analyst)
    with world.ctx.db.session() as session:
        session.execute(delete(Feedback).where(Feedback.id == world.ids["typo"]))
    with world.ctx.db.session() as session:
        assert session.scalars(select(FeedbackNote)).all() == []


def test_the_detail_shows_the_linked_conversation_unless_it_was_deleted(world: World) -> None:
    detail = world.triage.detail(world.ids["slow"], world.analyst)
    assert [(m.role, m.content) for m in detail.conversation] == [
        ("user", "What is our p95 target?"),
        ("assistant", "Under **3 s**."),
    ]
    assert detail.next_statuses == ("in_progress", "resolved", "closed")
    assert detail.item.message_id == detail.conversation[1].id
    session_id = detail.item.session_public_id
    assert session_id is not None
    world.ctx.chat.delete(session_id, world.mia)
    deleted = world.triage.detail(world.ids["slow"], world.analyst)
    assert deleted.conversation == [] and deleted.conversation_deleted
    general = world.triage.detail(world.ids["idea"], world.analyst)
    assert general.conversation == [] and not general.conversation_deleted
    with pytest.raises(NotFound):
        world.triage.detail(31337, world.analyst)


# --- charts and exports ---------------------------------------------------------------------


def test_chart_frames_count_by_category_per_day_and_week_by_persona_and_the_backlog(
    world: World,
) -> None:
    world.triage.set_status(world.ids["slow"], "resolved", world.analyst)
    world.triage.set_status(world.ids["slow"], "open", world.analyst)
    world.triage.set_status(world.ids["typo"], "closed", world.analyst)
    daily = world.triage.stats(ALL, viewer=world.analyst, bucket="day")
    assert daily.by_category.rows() == [
        (date(2026, 3, 2), "performance", 1),
        (date(2026, 3, 3), "content", 1),
        (date(2026, 3, 10), "suggestion", 1),
    ]
    weekly = world.triage.stats(ALL, viewer=world.analyst, bucket="week")
    assert weekly.by_category.rows() == [
        (date(2026, 3, 2), "content", 1),
        (date(2026, 3, 2), "performance", 1),
        (date(2026, 3, 9), "suggestion", 1),
    ]
    assert sorted(daily.by_persona.rows()) == [
        (NO_PERSONA, 1),
        ("Code Reviewer", 1),
        ("Nexus Assistant", 1),
    ]
    backlog = daily.backlog
    assert backlog.columns == ["period", "opened", "resolved", "reopened", "open_at_end"]
    assert backlog["opened"].sum() == 3
    assert backlog["resolved"].sum() == 2 and backlog["reopened"].sum() == 1
    assert backlog["open_at_end"][-1] == 2  # slow (reopened) and idea are still open
    only_typo = world.triage.stats(FeedbackFilters(author="max"), viewer=world.analyst)
    assert only_typo.backlog["resolved"].sum() == 1 and only_typo.by_persona.height == 1


FORMULAS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR"]


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(world: World) -> None:
    for text in FORMULAS:
        world.ctx.feedback.submit(world.mia, category="other", priority="low", description=text)
    with world.ctx.db.session() as session:  # stored descriptions are stripped on submit
        for text in FORMULAS:
            session.execute(
                update(Feedback)
                .where(Feedback.description == text.strip())
                .values(description=text)
            )
    data = world.triage.export_csv(FeedbackFilters(categories=("other",)), viewer=world.analyst)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [r["description"] for r in rows] == ["'" + t for t in FORMULAS]
    assert {r["author"] for r in rows} == {"mia"}
    plain = world.triage.export_csv(FeedbackFilters(author="max"), viewer=world.analyst)
    (row,) = csv.DictReader(io.StringIO(plain.decode("utf-8-sig"), newline=""))
    assert row["description"] == "Typo in the review: 100%_done"
    assert row["created_at"] == "2026-03-03T23:59:00Z"
    assert row["persona"] == "Code Reviewer"


def test_parquet_export_round_trips_the_raw_values(world: World) -> None:
    world.ctx.feedback.submit(
        world.max, category="bug", priority="medium", description="=HYPERLINK(x)"
    )
    data = world.triage.export_parquet(ALL, viewer=world.analyst)
    frame = pl.read_parquet(io.BytesIO(data))
    expected = world.triage.search(ALL, viewer=world.analyst, sort="oldest")
    assert frame["id"].to_list() == [r.id for r in expected]
    assert frame["description"].to_list()[-1] == "=HYPERLINK(x)"
    assert frame.schema["created_at"] == pl.Datetime("us", "UTC")
    assert frame["created_at"].to_list() == [r.created_at for r in expected]
    assert frame.row(0, named=True)["persona"] == "Nexus Assistant"
    empty = pl.read_parquet(
        io.BytesIO(world.triage.export_parquet(FeedbackFilters(text="nothing"), viewer=world.admin))
    )
    assert empty.height == 0 and empty.columns == frame.columns


def test_chart_builders_draw_the_frames_and_say_when_nothing_matches(world: World) -> None:
    stats = world.triage.stats(ALL, viewer=world.analyst, bucket="week")
    categories = category_figure(stats.by_category, "week")
    assert [t.name for t in categories.data] == ["performance", "content", "suggestion"]
    one = world.triage.stats(FeedbackFilters(categories=("content",)), viewer=world.analyst)
    only_content = category_figure(one.by_category, "week")
    # One colour still needs its name: the legend is there for a single category too.
    assert [t.name for t in only_content.data] == ["content"]
    assert only_content.layout.showlegend is True
    assert categories.layout.xaxis.tick0 == "2000-01-03"  # a Monday, like the weeks
    backlog = backlog_figure(stats.backlog, "week")
    assert [t.name for t in backlog.data] == ["opened", "resolved or closed", "still open"]
    personas = persona_figure(stats.by_persona)
    # Plotly draws the first bar at the bottom: the list is reversed so the first row is on top.
    assert list(personas.data[0].y) == ["Nexus Assistant", "Code Reviewer", NO_PERSONA]
    empty = world.triage.stats(FeedbackFilters(text="no such words"), viewer=world.analyst)
    # Nothing to draw: the empty state says so and what would appear, instead of blank axes.
    for chart, would_appear in (
        (category_figure(empty.by_category, "day"), "the items of each category per day"),
        (persona_figure(empty.by_persona), "the items about each persona"),
        (backlog_figure(empty.backlog, "day"), "the items opened and resolved per day"),
    ):
        assert isinstance(chart, EmptyChart)
        assert chart.message.startswith(f"{EMPTY_TEXT} — {would_appear}")
