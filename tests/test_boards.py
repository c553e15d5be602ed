"""Boards of pinned workbench results, on SQLite and PostgreSQL: a pin keeps its cell, the named
cells it reads, its chart and the parameter values chosen; it runs when due on its own schedule
(an injected clock) and is served from its cache otherwise; a shared board opens for another
analyst with that analyst's visibility, a member is refused, a personal board is hidden from
others; one broken pin fails alone; pins, unpins, boards made and shared are audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.boards.service import BoardService, PinView
from nexus_core.db.models import AuditEvent
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.ops.events import ApiEventLogger
from nexus_core.users import UserView
from nexus_core.workbench.cells import Cell, ChartSpec
from nexus_core.workbench.parameters import Parameter
from nexus_core.workbench.sandbox import Workbench

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
PERSONAS = ("Helper", "Helper", "Coder", "Helper", "Coder")
PASSWORD = "correct-horse-1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def app(ctx: AppContext) -> AppContext:
    """A fresh install with an admin, two analysts, a member and five replies in the log."""
    ctx.init()
    days = iter(datetime(2026, 12, 3 + n, 12) for n in range(len(PERSONAS)))
    logger = ApiEventLogger(ctx.settings.event_log_path, clock=lambda: next(days))
    for n, persona in enumerate(PERSONAS):
        logger.emit("job_success", job_id=f"j{n}", latency_ms=1000.0 * (n + 1), persona=persona)
    logger.close()
    ctx.users.create("ana", PASSWORD, role="analyst", display_name="Ana")
    ctx.users.create("bo", PASSWORD, role="analyst", display_name="Bo")
    ctx.users.create("mia", PASSWORD, role="member")
    return ctx


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def boards(app: AppContext, clock: Clock) -> BoardService:
    return BoardService(app.db, Workbench(app.settings, app.db), clock=clock)


def user(app: AppContext, name: str) -> UserView:
    return app.users.get(name)


PARAMETERS = [
    Parameter("persona", "persona", "Helper"),
    Parameter("period", "date_range", "last 30 days"),
    Parameter("unused", "int", "3"),
]
REPLIES = Cell(
    "sql",
    "SELECT persona, latency_ms FROM events WHERE event = 'job_success' "
    "AND ($persona IS NULL OR persona = $persona) AND ts >= $period_start AND ts < $period_end",
    name="replies",
)
BY_PERSONA = Cell(
    "sql",
    "SELECT persona, count(*) AS replies FROM replies GROUP BY persona ORDER BY persona",
    chart=ChartSpec(kind="bar", x="persona", y="replies"),
)
UNRELATED = Cell("sql", "SELECT 1 AS one", name="unrelated")
NOTEBOOK = [UNRELATED, Cell("markdown", "notes"), REPLIES, BY_PERSONA]


def pin_by_persona(
    boards: BoardService, who: UserView, board_id: int, *, refresh: str = "hourly", **chosen: str
) -> PinView:
    return boards.pin(
        who,
        board_id,
        title="Replies by persona",
        cells=NOTEBOOK,
        cell_id=BY_PERSONA.id,
        parameters=PARAMETERS,
        chosen=chosen,
        refresh=refresh,
    )


def rows(pin: PinView) -> list[dict[str, object]]:
    assert pin.result is not None and pin.result.frame is not None, pin.result
    return pin.result.frame.to_dicts()


def test_a_pin_keeps_its_cell_the_named_cells_it_reads_its_chart_and_values(
    app: AppContext, boards: BoardService
) -> None:
    ana = user(app, "ana")
    board = boards.create(ana, "Monday")
    pin = pin_by_persona(boards, ana, board.id, persona="Coder")
    kept = pin.snapshot
    assert kept is not None
    assert [c.id for c in kept.cells] == [REPLIES.id, BY_PERSONA.id]  # not the unrelated cell
    assert kept.cell.source == BY_PERSONA.source and pin.chart == BY_PERSONA.chart
    assert [p.name for p in kept.parameters] == ["persona", "period"]  # only those it uses
    # A chosen value is kept as chosen; one left at its default keeps rolling with the days.
    assert pin.values == {"persona": "Coder", "period": "last 30 days"}
    assert pin.due and pin.result is None


def test_a_pin_runs_when_due_and_is_served_from_its_cache_until_then(
    app: AppContext, boards: BoardService, clock: Clock
) -> None:
    ana = user(app, "ana")
    board = boards.create(ana, "Monday")
    pin_by_persona(boards, ana, board.id, persona="Coder", refresh="hourly")
    manual = pin_by_persona(boards, ana, board.id, refresh="manual")

    opened = boards.open(ana, board.id)
    hourly, manual_pin = opened.pins
    assert rows(hourly) == [{"persona": "Coder", "replies": 2}]  # the chosen value, bound
    assert rows(manual_pin) == [{"persona": "Helper", "replies": 3}]  # the default
    first = hourly.result.refreshed_at if hourly.result else None
    assert first == START and not hourly.due and not manual_pin.due

    clock.advance(timedelta(minutes=59))
    again = boards.get(ana, board.id)
    assert [p.due for p in again.pins] == [False, False]
    clock.advance(timedelta(minutes=2))
    assert [p.due for p in boards.get(ana, board.id).pins] == [True, False]  # manual never
    reopened = boards.open(ana, board.id)
    assert [p.result.refreshed_at for p in reopened.pins if p.result] == [clock.now, START]

    # "Refresh" runs a manual pin now.
    boards.refresh(ana, manual.id)
    assert boards.get(ana, board.id).pins[1].result.refreshed_at == clock.now  # type: ignore[union-attr]


def test_a_shared_board_opens_for_another_analyst_and_a_member_is_refused(
    app: AppContext, boards: BoardService
) -> None:
    ana, bo, mia = user(app, "ana"), user(app, "bo"), user(app, "mia")
    board = boards.create(ana, "Team", shared=True)
    pin_by_persona(boards, ana, board.id)
    assert [b.title for b in boards.list_for(bo)] == ["Team"]
    seen = boards.open(bo, board.id)
    assert not seen.editable and seen.owner_name == "Ana"
    assert rows(seen.pins[0]) == [{"persona": "Helper", "replies": 3}]
    assert not seen.pins[0].removable  # not Bo's board, not Bo's pin
    with pytest.raises(PermissionDenied):
        boards.unpin(bo, seen.pins[0].id)
    with pytest.raises(PermissionDenied):
        boards.set_shared(bo, board.id, False)
    # Bo may pin to it, and take his own pin off again.
    bos = pin_by_persona(boards, bo, board.id, persona="Coder")
    assert bos.removable
    boards.unpin(bo, bos.id)
    for action in (
        lambda: boards.list_for(mia),
        lambda: boards.get(mia, board.id),
        lambda: boards.create(mia, "Mine"),
        lambda: boards.refresh(mia, seen.pins[0].id),
    ):
        with pytest.raises(PermissionDenied):
            action()


def test_a_personal_board_is_hidden_from_everyone_but_its_owner(
    app: AppContext, boards: BoardService
) -> None:
    ana, bo = user(app, "ana"), user(app, "bo")
    admin = app.users.get("admin")
    board = boards.create(ana, "Just mine")
    pin = pin_by_persona(boards, ana, board.id)
    for other in (bo, admin):
        assert boards.list_for(other) == []
        with pytest.raises(NotFound):
            boards.get(other, board.id)
        with pytest.raises(NotFound):
            pin_by_persona(boards, other, board.id)
        with pytest.raises(NotFound):
            boards.refresh(other, pin.id)
    boards.set_shared(ana, board.id, True)
    assert [b.title for b in boards.list_for(bo)] == ["Just mine"]


def test_a_pin_runs_with_the_viewers_visibility_not_its_pinners(
    app: AppContext, boards: BoardService
) -> None:
    admin, bo = app.users.get("admin"), user(app, "bo")
    board = boards.create(admin, "Admin's", shared=True)
    cell = Cell("sql", "SELECT count(content) AS texts FROM messages")
    boards.pin(admin, board.id, title="Message text", cells=[cell], cell_id=cell.id)
    assert rows(boards.open(admin, board.id).pins[0]) == [{"texts": 0}]
    # Bo's open does not reuse the admin's cached result: it runs with what Bo may see.
    seen = boards.open(bo, board.id).pins[0]
    assert seen.result is not None and seen.result.frame is None
    assert "content" in (seen.result.error or "")
    assert rows(boards.get(admin, board.id).pins[0]) == [{"texts": 0}]  # the admin's stays


def test_a_broken_pin_fails_on_its_own(app: AppContext, boards: BoardService) -> None:
    ana = user(app, "ana")
    board = boards.create(ana, "Mixed")
    broken = Cell("sql", "SELECT no_such_column FROM events")
    boards.pin(ana, board.id, title="Broken", cells=[broken], cell_id=broken.id)
    pin_by_persona(boards, ana, board.id)
    first, second = boards.open(ana, board.id).pins
    assert first.result is not None and first.result.frame is None
    assert "no_such_column" in (first.result.error or "")
    assert rows(second) == [{"persona": "Helper", "replies": 3}]


def test_a_cell_that_cannot_run_is_not_pinned(app: AppContext, boards: BoardService) -> None:
    ana = user(app, "ana")
    board = boards.create(ana, "Monday")
    orphan = Cell("sql", "SELECT * FROM nowhere")
    with pytest.raises(ValidationError, match="nowhere"):
        boards.pin(ana, board.id, title="x", cells=[orphan], cell_id=orphan.id)
    with pytest.raises(ValidationError, match="SQL cell"):
        boards.pin(ana, board.id, title="x", cells=NOTEBOOK, cell_id=NOTEBOOK[1].id)
    with pytest.raises(ValidationError, match="period"):
        pin_by_persona(boards, ana, board.id, period="not a range")
    with pytest.raises(ValidationError, match="refresh"):
        pin_by_persona(boards, ana, board.id, refresh="weekly")
    assert boards.get(ana, board.id).pins == []


def test_boards_made_shared_pinned_and_unpinned_are_audited(
    app: AppContext, boards: BoardService
) -> None:
    ana = user(app, "ana")
    board = boards.create(ana, "Monday")
    boards.set_shared(ana, board.id, True)
    pin = pin_by_persona(boards, ana, board.id)
    boards.unpin(ana, pin.id)
    boards.delete(ana, board.id)
    with app.db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.target_type == "board").order_by(AuditEvent.id)
        ).all()
        actions = [(e.action, e.actor_name, e.target_id) for e in events]
        details = [e.details for e in events]
    assert actions == [
        (name, "ana", str(board.id))
        for name in (
            audit.BOARD_CREATED,
            audit.BOARD_SHARED,
            audit.BOARD_PINNED,
            audit.BOARD_UNPINNED,
            audit.BOARD_DELETED,
        )
    ]
    assert details[2]["pin"] == "Replies by persona" and details[2]["pin_id"] == pin.id
    with pytest.raises(NotFound):
        boards.get(ana, board.id)
