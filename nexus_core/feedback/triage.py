"""Feedback triage for analysts and admins: explore every item, move it through its statuses,
assign it, keep internal notes, chart and export the filtered set.

Statuses move along these edges only; anything else is refused with a ValidationError::

    open         → in_progress | resolved | closed
    in_progress  → open | resolved | closed
    resolved     → open   (reopen)
    closed       → open   (reopen)

Setting the status an item already has is a no-op: nothing changes and nothing is audited, so a
double click or a bulk change over a mixed selection is harmless. Every change is an audit event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.chat import CONTROL_CHARS, MessageView, message_view
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    FEEDBACK_STATUSES,
    AuditEvent,
    ChatSession,
    Feedback,
    FeedbackNote,
    Message,
    Persona,
    User,
)
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.feedback.filters import (
    FeedbackFilters,
    FeedbackRow,
    filtered,
    joined,
    ordered,
    row_query,
    to_row,
)
from nexus_core.feedback.tables import FeedbackStats, csv_bytes, feedback_stats, parquet_bytes
from nexus_core.privacy.redaction import Redactor
from nexus_core.users import UserView

TRIAGE_ROLES = ("analyst", "admin")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "resolved", "closed"),
    "in_progress": ("open", "resolved", "closed"),
    "resolved": ("open",),
    "closed": ("open",),
}
STATUSES = FEEDBACK_STATUSES
STATUS_LABELS = {status: status.replace("_", " ") for status in STATUSES}
PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
EXPORT_MAX_ROWS = 50_000
MAX_NOTE_CHARS = 5000
NOT_FOUND = "Feedback #{id} does not exist."


@dataclass(frozen=True)
class FeedbackDetail:
    """One item with what a triager needs: its context, the linked conversation, next statuses."""

    item: FeedbackRow
    context: dict[str, Any]
    session_title: str | None
    conversation: list[MessageView]
    conversation_deleted: bool
    next_statuses: tuple[str, ...]


@dataclass(frozen=True)
class HistoryEntry:
    """One line of an item's history: an audit event or an internal note."""

    at: datetime
    actor: str | None
    action: str
    summary: str


def can_triage(user: UserView) -> bool:
    """Whether ``user`` may explore and triage all feedback."""
    return user.role in TRIAGE_ROLES and not user.disabled


def _require_triager(user: UserView) -> None:
    if not can_triage(user):
        raise PermissionDenied("Only analysts and admins may explore and triage feedback.")


def _check_status(status: str) -> str:
    if status not in FEEDBACK_STATUSES:
        raise ValidationError(
            f"Unknown status {status!r}; choose one of {', '.join(FEEDBACK_STATUSES)}."
        )
    return status


def _summary(action: str, details: dict[str, Any]) -> str:
    """A short sentence for an audit event in an item's history."""
    if action == audit.FEEDBACK_SUBMITTED:
        return f"Submitted: {details.get('category')}, {details.get('priority')} priority"
    if action == audit.FEEDBACK_RATED:
        return f"Rated the reply thumbs {details.get('rating')}"
    if action == audit.FEEDBACK_STATUS_CHANGED:
        old, new = details.get("from", ""), details.get("to", "")
        return f"Status {STATUS_LABELS.get(old, old)} → {STATUS_LABELS.get(new, new)}"
    if action == audit.FEEDBACK_ASSIGNED:
        return f"Assigned to {details['to']}" if details.get("to") else "Unassigned"
    return action


def _name(user: User | None) -> str | None:
    return user.username if user else None


class TriageService:
    """Explore, triage, chart and export all feedback (analysts and admins only)."""

    def __init__(
        self, db: Database, *, clock: Clock = utc_now, redactor: Redactor | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.redactor = redactor or Redactor()  # NEXUS_REDACT: notes masked before storage

    # --- reading ----------------------------------------------------------------------------

    def search(
        self,
        filters: FeedbackFilters,
        *,
        viewer: UserView,
        sort: str = "newest",
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[FeedbackRow]:
        """The feedback matching ``filters`` in ``sort`` order, one page at a time."""
        _require_triager(viewer)
        if not 1 <= limit <= MAX_PAGE_SIZE or offset < 0:
            raise ValidationError(f"Ask for 1–{MAX_PAGE_SIZE} rows from a non-negative offset.")
        query = ordered(filtered(row_query(), filters), sort).limit(limit).offset(offset)
        with self.db.session() as session:
            return [to_row(found) for found in session.execute(query)]

    def count(self, filters: FeedbackFilters, *, viewer: UserView) -> int:
        """How many items match ``filters``."""
        _require_triager(viewer)
        with self.db.session() as session:
            return int(session.scalar(filtered(joined(func.count(Feedback.id)), filters)) or 0)

    def _all(self, filters: FeedbackFilters, viewer: UserView) -> list[FeedbackRow]:
        total = self.count(filters, viewer=viewer)
        if total > EXPORT_MAX_ROWS:
            raise ValidationError(
                f"{total:,} items match; narrow the filters to at most {EXPORT_MAX_ROWS:,}."
            )
        query = ordered(filtered(row_query(), filters), "oldest")
        with self.db.session() as session:
            return [to_row(found) for found in session.execute(query)]

    def detail(self, feedback_id: int, viewer: UserView) -> FeedbackDetail:
        """One item, with the linked conversation (read-only) when there is one."""
        _require_triager(viewer)
        with self.db.session() as session:
            found = session.execute(row_query().where(Feedback.id == feedback_id)).one_or_none()
            if found is None:
                raise NotFound(NOT_FOUND.format(id=feedback_id))
            row = to_row(found)
            feedback = found[0]
            chat = session.get(ChatSession, feedback.session_id) if feedback.session_id else None
            deleted = chat is not None and chat.deleted_at is not None
            messages: list[MessageView] = []
            if chat is not None and not deleted:
                rows = session.scalars(
                    select(Message).where(Message.session_id == chat.id).order_by(Message.id)
                )
                messages = [message_view(m) for m in rows]
            return FeedbackDetail(
                item=row,
                context=dict(feedback.context or {}),
                session_title=chat.title if chat is not None and not deleted else None,
                conversation=messages,
                conversation_deleted=deleted,
                next_statuses=TRANSITIONS[row.status],
            )

    def history(self, feedback_id: int, viewer: UserView) -> list[HistoryEntry]:
        """Everything that happened to an item, oldest first: audit events and internal notes."""
        _require_triager(viewer)
        with self.db.session() as session:
            self._get(session, feedback_id)
            events = session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.target_type == "feedback",
                    AuditEvent.target_id == str(feedback_id),
                    AuditEvent.action != audit.FEEDBACK_NOTE_ADDED,
                )
                .order_by(AuditEvent.id)
            )
            entries = [
                HistoryEntry(e.created_at, e.actor_name, e.action, _summary(e.action, e.details))
                for e in events
            ]
            notes = session.execute(
                select(FeedbackNote, User.username)
                .outerjoin(User, User.id == FeedbackNote.author_id)
                .where(FeedbackNote.feedback_id == feedback_id)
                .order_by(FeedbackNote.id)
            )
            entries += [
                HistoryEntry(
                    note.created_at, author, audit.FEEDBACK_NOTE_ADDED, f"Note: {note.text}"
                )
                for note, author in notes
            ]
        return sorted(entries, key=lambda e: e.at)

    def triagers(self, viewer: UserView) -> list[str]:
        """Usernames of the enabled analysts and admins, who may be assigned feedback."""
        _require_triager(viewer)
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(User.username)
                    .where(User.role.in_(TRIAGE_ROLES), User.disabled.is_(False))
                    .order_by(User.username)
                )
            )

    def personas(self, viewer: UserView) -> list[str]:
        """Names of the personas that feedback was given about, for the persona filter."""
        _require_triager(viewer)
        query = (
            select(Persona.name)
            .join(ChatSession, ChatSession.persona_id == Persona.id)
            .join(Feedback, Feedback.session_id == ChatSession.id)
            .distinct()
        )
        with self.db.session() as session:
            return sorted(session.scalars(query))

    # --- changing ---------------------------------------------------------------------------

    def _get(self, session: Session, feedback_id: int, *, lock: bool = False) -> Feedback:
        query = select(Feedback).where(Feedback.id == feedback_id)
        row = session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(NOT_FOUND.format(id=feedback_id))
        return row

    def _transition(self, session: Session, row: Feedback, new: str, actor: UserView) -> bool:
        """Move ``row`` to ``new`` (audited); False when it already is there."""
        if row.status == new:
            return False
        if new not in TRANSITIONS[row.status]:
            allowed = " or ".join(STATUS_LABELS[s] for s in TRANSITIONS[row.status])
            raise ValidationError(
                f"Feedback #{row.id} is {STATUS_LABELS[row.status]}; it cannot move to "
                f"{STATUS_LABELS[new]}, only to {allowed}."
            )
        old, row.status, row.updated_at = row.status, new, self.clock()
        audit.record(
            session,
            audit.FEEDBACK_STATUS_CHANGED,
            actor_id=actor.id,
            actor_name=actor.username,
            target_type="feedback",
            target_id=row.id,
            details={"from": old, "to": new},
            at=row.updated_at,
        )
        return True

    def set_status(self, feedback_id: int, new_status: str, actor: UserView) -> FeedbackRow:
        """Move an item to ``new_status`` along an allowed edge (same status: nothing happens)."""
        _require_triager(actor)
        _check_status(new_status)
        with self.db.session() as session:
            self._transition(session, self._get(session, feedback_id, lock=True), new_status, actor)
        return self._row(feedback_id)

    def bulk_set_status(
        self, ids: Iterable[int], new_status: str, actor: UserView
    ) -> tuple[list[int], dict[int, str]]:
        """Move many items at once: the ids changed, and why each refused one was refused.

        Items already at ``new_status`` are in neither list.
        """
        _require_triager(actor)
        _check_status(new_status)
        changed: list[int] = []
        refused: dict[int, str] = {}
        with self.db.session() as session:
            for feedback_id in dict.fromkeys(ids):
                try:
                    row = self._get(session, feedback_id, lock=True)
                    if self._transition(session, row, new_status, actor):
                        changed.append(feedback_id)
                except (NotFound, ValidationError) as exc:
                    refused[feedback_id] = str(exc)
        return changed, refused

    def assign(self, feedback_id: int, assignee: str | None, actor: UserView) -> FeedbackRow:
        """Give an item to an analyst or admin, or to nobody (``None``)."""
        _require_triager(actor)
        with self.db.session() as session:
            row = self._get(session, feedback_id, lock=True)
            new: User | None = None
            if assignee:
                new = session.scalar(select(User).where(User.username == assignee.strip().lower()))
                if new is None:
                    raise NotFound(f"No user named {assignee!r}.")
                if new.role not in TRIAGE_ROLES or new.disabled:
                    raise ValidationError(
                        f"{new.username} cannot be assigned feedback; "
                        "choose an enabled analyst or admin."
                    )
            old = session.get(User, row.assignee_id) if row.assignee_id else None
            if old is not new:  # the identity map gives one object per user
                row.assignee_id = new.id if new else None
                row.updated_at = self.clock()
                audit.record(
                    session,
                    audit.FEEDBACK_ASSIGNED,
                    actor_id=actor.id,
                    actor_name=actor.username,
                    target_type="feedback",
                    target_id=row.id,
                    details={"from": _name(old), "to": _name(new)},
                    at=row.updated_at,
                )
        return self._row(feedback_id)

    def add_note(self, feedback_id: int, text: str, actor: UserView) -> HistoryEntry:
        """Add an internal note (never shown to the item's author)."""
        _require_triager(actor)
        cleaned = self.redactor.redact(CONTROL_CHARS.sub("", text).strip())
        if not cleaned:
            raise ValidationError("The note is empty; write something first.")
        if len(cleaned) > MAX_NOTE_CHARS:
            raise ValidationError(f"A note has at most {MAX_NOTE_CHARS:,} characters.")
        with self.db.session() as session:
            row = self._get(session, feedback_id, lock=True)
            now = self.clock()
            note = FeedbackNote(
                feedback_id=row.id, author_id=actor.id, text=cleaned, created_at=now
            )
            session.add(note)
            row.updated_at = now
            session.flush()
            audit.record(
                session,
                audit.FEEDBACK_NOTE_ADDED,
                actor_id=actor.id,
                actor_name=actor.username,
                target_type="feedback",
                target_id=row.id,
                details={"note_id": note.id, "chars": len(cleaned)},
                at=now,
            )
            return HistoryEntry(
                note.created_at, actor.username, audit.FEEDBACK_NOTE_ADDED, f"Note: {cleaned}"
            )

    def _row(self, feedback_id: int) -> FeedbackRow:
        with self.db.session() as session:
            return to_row(session.execute(row_query().where(Feedback.id == feedback_id)).one())

    # --- charts and exports -----------------------------------------------------------------

    def stats(
        self,
        filters: FeedbackFilters,
        *,
        viewer: UserView,
        bucket: Literal["day", "week"] = "day",
    ) -> FeedbackStats:
        """Frames for the explorer's charts over the filtered set."""
        rows = self._all(filters, viewer)
        events_query = (
            select(AuditEvent.target_id, AuditEvent.created_at, AuditEvent.details)
            .where(
                AuditEvent.target_type == "feedback",
                AuditEvent.action == audit.FEEDBACK_STATUS_CHANGED,
                AuditEvent.target_id.in_(filtered(joined(cast(Feedback.id, String)), filters)),
            )
            .order_by(AuditEvent.id)
        )
        with self.db.session() as session:
            changes = [(int(t), at, dict(d or {})) for t, at, d in session.execute(events_query)]
        return feedback_stats(rows, changes, bucket=bucket)

    def export_csv(self, filters: FeedbackFilters, *, viewer: UserView) -> bytes:
        """The filtered set as CSV, with spreadsheet formulas neutralised."""
        return csv_bytes(self._all(filters, viewer))

    def export_parquet(self, filters: FeedbackFilters, *, viewer: UserView) -> bytes:
        """The filtered set as Parquet, values exactly as stored."""
        return parquet_bytes(self._all(filters, viewer))
