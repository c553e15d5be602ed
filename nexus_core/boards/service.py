"""Boards: who may see them, pinning and unpinning, and each pin's cached, scheduled result.

Access follows the workbench's: boards are for analysts and admins. A personal board is its
owner's alone (to anyone else it does not exist); a shared board is open to every analyst and
admin, who may read it, refresh it and pin to it. Only the owner shares, unshares or deletes a
board; a pin is removed by the board's owner or by whoever pinned it.

**Whose visibility a pin runs with: the viewer's.** A pin runs through the workbench's sandbox
with what the person looking at the board may see (``include_message_content`` for admins only,
as in the workbench), never with its pinner's: an admin's pin on a shared board cannot show an
analyst message text or private titles. Results are therefore cached per visibility — one for
admins, one for everyone else (``VISIBILITIES``) — and a viewer only ever gets the one of their
own class. A pin that needs columns the viewer may not see fails on that pin, with DuckDB's
message, and nowhere else.

Opening a board runs the pins that are due (``pins.is_due``: older than their interval, or never
run for this visibility) and shows the others from their cache; "Refresh" runs one now. A pin's
failure is stored as its result (and tried again after ``RETRY_FAILED_AFTER``), never the board's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import polars as pl
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.boards.pins import (
    DEFAULT_REFRESH,
    MAX_PIN_ROWS,
    PinSnapshot,
    is_due,
    rows_from_bytes,
    rows_to_bytes,
    snapshot,
    validate_pin_title,
    validate_refresh,
)
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import Board, BoardPin, BoardPinResult, User
from nexus_core.errors import NexusError, NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserView
from nexus_core.workbench.cells import (
    MAX_TITLE_CHARS,
    Cell,
    ChartSpec,
    cells_from_json,
    cells_to_json,
)
from nexus_core.workbench.notebooks import NOTEBOOK_ROLES
from nexus_core.workbench.parameters import Parameter, parameters_from_json, parameters_to_json
from nexus_core.workbench.runs import NotebookRunner
from nexus_core.workbench.sandbox import Workbench

BOARD_ROLES: Final = NOTEBOOK_ROLES  # the workbench's rule: analysts and admins
ADMIN_VISIBILITY: Final = "admin"
ANALYST_VISIBILITY: Final = "analyst"
VISIBILITIES: Final = (ADMIN_VISIBILITY, ANALYST_VISIBILITY)
NOT_FOUND: Final = "Board #{id} does not exist or is not shared with you."
PIN_NOT_FOUND: Final = "That pin is no longer on the board; reload the page."
TARGET_TYPE: Final = "board"
BROKEN_PIN: Final = "This pin cannot be read back ({reason}); unpin it and pin the cell again."
NO_ROWS: Final = "The query ran but its rows could not be kept for the board."


def can_use_boards(user: UserView) -> bool:
    """Whether ``user`` may keep and read boards."""
    return user.role in BOARD_ROLES and not user.disabled


def visibility_of(user: UserView) -> str:
    """The class of viewer whose cached results ``user`` sees (and whose data a run reads)."""
    return ADMIN_VISIBILITY if user.is_admin else ANALYST_VISIBILITY


def validate_board_title(title: str) -> str:
    """A board title without surrounding spaces; refuses an empty or over-long one."""
    title = title.strip()
    if not title:
        raise ValidationError("Give the board a title.")
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationError(f"A board title has at most {MAX_TITLE_CHARS} characters.")
    return title


@dataclass(frozen=True)
class PinResult:
    """A pin's last run for one visibility: its rows (the first ``MAX_PIN_ROWS``) or its error."""

    refreshed_at: datetime
    frame: pl.DataFrame | None
    row_count: int
    elapsed_ms: float
    error: str | None = None

    @property
    def truncated(self) -> bool:
        """Whether the kept rows leave some out."""
        return self.frame is not None and self.row_count > self.frame.height


@dataclass(frozen=True)
class PinView:
    """One pin as plain data, with its cached result for the viewer and whether it is due."""

    id: int
    board_id: int
    title: str
    refresh: str
    pinned_by: str | None
    created_at: datetime
    removable: bool
    snapshot: PinSnapshot | None  # None when its stored form cannot be read back
    problem: str | None = None  # why ``snapshot`` is None
    result: PinResult | None = None
    due: bool = False

    @property
    def sql(self) -> str:
        """The pinned cell's SQL ("" when the pin cannot be read)."""
        return self.snapshot.cell.source if self.snapshot is not None else ""

    @property
    def chart(self) -> ChartSpec | None:
        """The pinned cell's chart, if it had one."""
        return self.snapshot.chart if self.snapshot is not None else None

    @property
    def values(self) -> dict[str, str]:
        """The parameter values it runs with (their text forms), by name."""
        return dict(self.snapshot.chosen) if self.snapshot is not None else {}


@dataclass(frozen=True)
class BoardView:
    """A board as plain data, with whether the viewer owns it, and its pins (when opened)."""

    id: int
    owner_id: int
    owner_name: str
    title: str
    shared: bool
    updated_at: datetime
    editable: bool
    pins: list[PinView] = field(default_factory=list)


def _require_board_user(viewer: UserView) -> None:
    if not can_use_boards(viewer):
        raise PermissionDenied("Only analysts and admins may use boards.")


def _board_view(board: Board, viewer: UserView, pins: list[PinView] | None = None) -> BoardView:
    return BoardView(
        id=board.id,
        owner_id=board.owner_id,
        owner_name=board.owner.display_name,
        title=board.title,
        shared=board.shared,
        updated_at=board.updated_at,
        editable=board.owner_id == viewer.id,
        pins=pins or [],
    )


def _stored_snapshot(pin: BoardPin) -> PinSnapshot:
    return PinSnapshot(
        cells=cells_from_json(pin.cells),
        cell_id=pin.cell_id,
        parameters=parameters_from_json(pin.parameters or []),
        chosen={str(k): str(v) for k, v in (pin.chosen or {}).items()},
        chart=ChartSpec.from_json(pin.chart) if pin.chart is not None else None,
    )


def _result(row: BoardPinResult | None) -> PinResult | None:
    if row is None:
        return None
    frame = rows_from_bytes(row.rows) if row.rows is not None else None
    return PinResult(row.refreshed_at, frame, row.row_count, row.elapsed_ms, row.error)


class BoardService:
    """Create, list, open, share and delete boards; pin, unpin and refresh their pins."""

    def __init__(
        self, db: Database, workbench: Workbench, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.db = db
        self.workbench = workbench
        self.clock = clock

    # --- boards ---------------------------------------------------------------------------

    def _visible(self, session: Session, viewer: UserView, board_id: int) -> Board:
        board = session.get(Board, board_id)
        if board is None or not (board.shared or board.owner_id == viewer.id):
            raise NotFound(NOT_FOUND.format(id=board_id))
        return board

    def _owned(self, session: Session, viewer: UserView, board_id: int) -> Board:
        board = self._visible(session, viewer, board_id)
        if board.owner_id != viewer.id:
            raise PermissionDenied(f"Only the owner can change the board {board.title!r}.")
        return board

    def _audit(
        self, session: Session, action: str, viewer: UserView, board: Board, **details: object
    ) -> None:
        audit.record(
            session,
            action,
            actor_id=viewer.id,
            actor_name=viewer.username,
            target_type=TARGET_TYPE,
            target_id=board.id,
            details={"title": board.title, **details},
            at=self.clock(),
        )

    def list_for(self, viewer: UserView) -> list[BoardView]:
        """The viewer's boards and the shared ones, most recently updated first (no pins)."""
        _require_board_user(viewer)
        query = (
            select(Board)
            .join(User, User.id == Board.owner_id)
            .where(or_(Board.owner_id == viewer.id, Board.shared))
            .order_by(Board.updated_at.desc(), Board.id.desc())
        )
        with self.db.session() as session:
            return [_board_view(board, viewer) for board in session.scalars(query)]

    def create(self, viewer: UserView, title: str, *, shared: bool = False) -> BoardView:
        """A new board owned by the viewer (personal unless ``shared``)."""
        _require_board_user(viewer)
        title = validate_board_title(title)
        with self.db.session() as session:
            now = self.clock()
            board = Board(
                owner_id=viewer.id, title=title, shared=shared, created_at=now, updated_at=now
            )
            session.add(board)
            session.flush()
            self._audit(session, audit.BOARD_CREATED, viewer, board, shared=shared)
            return _board_view(board, viewer)

    def set_shared(self, viewer: UserView, board_id: int, shared: bool) -> BoardView:
        """Share a board the viewer owns with every analyst and admin, or make it personal."""
        _require_board_user(viewer)
        with self.db.session() as session:
            board = self._owned(session, viewer, board_id)
            if board.shared != shared:
                board.shared = shared
                session.flush()
                self._audit(session, audit.BOARD_SHARED, viewer, board, shared=shared)
            return _board_view(board, viewer)

    def delete(self, viewer: UserView, board_id: int) -> None:
        """Delete a board the viewer owns, with its pins, for good."""
        _require_board_user(viewer)
        with self.db.session() as session:
            board = self._owned(session, viewer, board_id)
            self._audit(session, audit.BOARD_DELETED, viewer, board, shared=board.shared)
            session.delete(board)

    def get(self, viewer: UserView, board_id: int) -> BoardView:
        """A board the viewer may see, its pins with their cached results for the viewer's
        visibility and whether each is due; ``NotFound`` for a board not theirs nor shared."""
        _require_board_user(viewer)
        now, visibility = self.clock(), visibility_of(viewer)
        with self.db.session() as session:
            board = self._visible(session, viewer, board_id)
            pins = session.scalars(
                select(BoardPin).where(BoardPin.board_id == board.id).order_by(BoardPin.id)
            ).all()
            results = {
                row.pin_id: row
                for row in session.scalars(
                    select(BoardPinResult).where(
                        BoardPinResult.pin_id.in_([p.id for p in pins]),
                        BoardPinResult.visibility == visibility,
                    )
                )
            }
            names = self._names(session, {p.pinned_by_id for p in pins})
            views = [
                self._pin_view(pin, board, viewer, results.get(pin.id), names, now) for pin in pins
            ]
            return _board_view(board, viewer, views)

    def open(self, viewer: UserView, board_id: int) -> BoardView:
        """A board with every due pin run first (``get`` then ``refresh`` of the due ones)."""
        board = self.get(viewer, board_id)
        for pin in board.pins:
            if pin.due:
                self.refresh(viewer, pin.id)
        return self.get(viewer, board_id)

    # --- pins -----------------------------------------------------------------------------

    def pin(
        self,
        viewer: UserView,
        board_id: int,
        *,
        title: str,
        cells: list[Cell],
        cell_id: str,
        parameters: list[Parameter] | None = None,
        chosen: dict[str, str] | None = None,
        refresh: str = DEFAULT_REFRESH,
        notebook_id: int | None = None,
    ) -> PinView:
        """Pin one SQL cell of a notebook (with the named cells it reads and the parameter
        values chosen) to a board the viewer may see; it runs on the board's next open."""
        _require_board_user(viewer)
        title, refresh = validate_pin_title(title), validate_refresh(refresh)
        kept = snapshot(
            cells, parameters or [], dict(chosen or {}), cell_id, today=self.clock().date()
        )
        with self.db.session() as session:
            board = self._visible(session, viewer, board_id)
            now = self.clock()
            pin = BoardPin(
                board_id=board.id,
                pinned_by_id=viewer.id,
                title=title,
                cells=cells_to_json(kept.cells),
                cell_id=kept.cell_id,
                parameters=parameters_to_json(kept.parameters),
                chosen=kept.chosen,
                chart=kept.chart.to_json() if kept.chart is not None else None,
                refresh=refresh,
                notebook_id=notebook_id,
                created_at=now,
            )
            session.add(pin)
            board.updated_at = now
            session.flush()
            self._audit(
                session,
                audit.BOARD_PINNED,
                viewer,
                board,
                pin_id=pin.id,
                pin=title,
                notebook_id=notebook_id,
                refresh=refresh,
            )
            names = {viewer.id: viewer.display_name}
            return self._pin_view(pin, board, viewer, None, names, now)

    def unpin(self, viewer: UserView, pin_id: int) -> None:
        """Take a pin off its board: the board's owner or the pin's pinner may."""
        _require_board_user(viewer)
        with self.db.session() as session:
            pin, board = self._pin(session, viewer, pin_id)
            if viewer.id not in (board.owner_id, pin.pinned_by_id):
                raise PermissionDenied("Only the board's owner or whoever pinned it can unpin it.")
            self._audit(session, audit.BOARD_UNPINNED, viewer, board, pin_id=pin.id, pin=pin.title)
            board.updated_at = self.clock()
            session.delete(pin)

    def refresh(self, viewer: UserView, pin_id: int) -> PinResult:
        """Run a pin now with the viewer's visibility and keep its result (or its error) as the
        cached one for that visibility; the pin's own failure is the result, not an exception."""
        _require_board_user(viewer)
        problem = ""
        with self.db.session() as session:
            pin, _ = self._pin(session, viewer, pin_id)
            try:
                kept: PinSnapshot | None = _stored_snapshot(pin)
            except NexusError as exc:
                kept, problem = None, BROKEN_PIN.format(reason=exc)
        result = self._run(viewer, kept) if kept is not None else self._failed(problem)
        self._store(pin_id, visibility_of(viewer), result)
        return result

    def _run(self, viewer: UserView, kept: PinSnapshot) -> PinResult:
        runner = NotebookRunner(
            self.workbench, include_message_content=viewer.is_admin, keep=MAX_PIN_ROWS
        )
        today = self.clock().date()
        try:
            runs = runner.run(
                kept.cells, kept.parameters, kept.chosen, only=kept.cell_id, today=today
            )
        except NexusError as exc:  # a value that no longer parses, a snapshot that failed
            return self._failed(str(exc))
        run = runs.get(kept.cell_id)
        if run is None or run.result is None:
            return self._failed(run.error if run is not None and run.error else NO_ROWS)
        result = run.result
        return PinResult(self.clock(), result.display, result.row_count, result.elapsed_ms)

    def _failed(self, error: str) -> PinResult:
        return PinResult(self.clock(), None, 0, 0.0, error)

    def _store(self, pin_id: int, visibility: str, result: PinResult) -> None:
        """Keep ``result`` as the pin's cached one (two viewers refreshing at once: last wins)."""
        data = None if result.frame is None else rows_to_bytes(result.frame)[0]
        for attempt in range(2):
            try:
                with self.db.session() as session:
                    if session.get(BoardPin, pin_id) is None:
                        return  # unpinned while it ran
                    row = session.scalar(
                        select(BoardPinResult).where(
                            BoardPinResult.pin_id == pin_id,
                            BoardPinResult.visibility == visibility,
                        )
                    )
                    if row is None:
                        row = BoardPinResult(pin_id=pin_id, visibility=visibility)
                        session.add(row)
                    row.refreshed_at, row.rows, row.error = result.refreshed_at, data, result.error
                    row.row_count, row.elapsed_ms = result.row_count, result.elapsed_ms
                return
            except IntegrityError:  # another viewer stored the first result meanwhile
                if attempt == 1:
                    raise

    def _pin(self, session: Session, viewer: UserView, pin_id: int) -> tuple[BoardPin, Board]:
        pin = session.get(BoardPin, pin_id)
        if pin is None:
            raise NotFound(PIN_NOT_FOUND)
        try:
            board = self._visible(session, viewer, pin.board_id)
        except NotFound as exc:
            raise NotFound(PIN_NOT_FOUND) from exc
        return pin, board

    def _names(self, session: Session, ids: set[int | None]) -> dict[int, str]:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        users = session.scalars(select(User).where(User.id.in_(wanted)))
        return {user.id: user.display_name for user in users}

    def _pin_view(
        self,
        pin: BoardPin,
        board: Board,
        viewer: UserView,
        row: BoardPinResult | None,
        names: dict[int, str],
        now: datetime,
    ) -> PinView:
        try:
            kept: PinSnapshot | None = _stored_snapshot(pin)
            problem = None
        except NexusError as exc:
            kept, problem = None, BROKEN_PIN.format(reason=exc)
        result = _result(row)
        refreshed = result.refreshed_at if result is not None else None
        failed = result is not None and result.error is not None
        return PinView(
            id=pin.id,
            board_id=board.id,
            title=pin.title,
            refresh=pin.refresh,
            pinned_by=names.get(pin.pinned_by_id) if pin.pinned_by_id is not None else None,
            created_at=pin.created_at,
            removable=viewer.id in (board.owner_id, pin.pinned_by_id),
            snapshot=kept,
            problem=problem,
            result=result,
            due=is_due(pin.refresh, refreshed, now, failed=failed),
        )
