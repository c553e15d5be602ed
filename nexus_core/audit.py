"""The audit trail: append-only records of who did what, and reading them back.

Events are added by ``record`` inside the transaction of the change they describe and linked into
a hash chain as it commits (``audit_chain``); the reading half (filter, count, page through,
export) only reads. Nothing in the UI or the CLI edits or deletes them: there is no update or
delete here, and ``nexus audit verify`` shows one made in the database directly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select
from sqlalchemy.orm import Session

from nexus_core import audit_chain
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent
from nexus_core.errors import ValidationError
from nexus_core.spreadsheet import csv_text

# Action names, grouped by what they are about.
SIGN_IN = "auth.sign_in"
SIGN_IN_FAILED = "auth.sign_in_failed"
LOCKED_OUT = "auth.locked_out"
SIGN_OUT = "auth.sign_out"
PASSWORD_CHANGED = "user.password_changed"
USER_CREATED = "user.created"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
USER_UNLOCKED = "user.unlocked"
USER_DATA_EXPORTED = "user.data_exported"
USER_ERASED = "user.erased"
USER_ROLE_CHANGED = "user.role_changed"
USER_PASSWORD_RESET = "user.password_reset"
USER_FEATURE_TOGGLED = "user.feature_toggled"
PERSONA_CREATED = "persona.created"
PERSONA_EDITED = "persona.edited"
PERSONA_DEACTIVATED = "persona.deactivated"
PERSONA_REACTIVATED = "persona.reactivated"
SESSION_CREATED = "session.created"
SESSION_RENAMED = "session.renamed"
SESSION_ARCHIVED = "session.archived"
SESSION_UNARCHIVED = "session.unarchived"
SESSION_DELETED = "session.deleted"
SESSION_EXPORTED = "session.exported"
PRICE_SET = "price.set"
BUDGET_SET = "budget.set"
BUDGET_REMOVED = "budget.removed"
BUDGET_THRESHOLD = "budget.threshold_reached"
ALERT_RULE_CREATED = "alert.rule_created"
ALERT_RULE_EDITED = "alert.rule_edited"
ALERT_RULE_DELETED = "alert.rule_deleted"
ALERT_SILENCED = "alert.silenced"
ALERT_UNSILENCED = "alert.unsilenced"
ALERT_WEBHOOK_ADDED = "alert.webhook_added"
ALERT_WEBHOOK_REMOVED = "alert.webhook_removed"
FEEDBACK_SUBMITTED = "feedback.submitted"
FEEDBACK_RATED = "feedback.rated"
FEEDBACK_STATUS_CHANGED = "feedback.status_changed"
FEEDBACK_ASSIGNED = "feedback.assigned"
FEEDBACK_NOTE_ADDED = "feedback.note_added"
ERROR_REPORTED = "error.reported"
NOTEBOOK_CREATED = "notebook.created"
NOTEBOOK_SHARED = "notebook.shared"
NOTEBOOK_DELETED = "notebook.deleted"
BOARD_CREATED = "board.created"
BOARD_SHARED = "board.shared"
BOARD_DELETED = "board.deleted"
BOARD_PINNED = "board.pinned"
BOARD_UNPINNED = "board.unpinned"
COMPARE_STARTED = "compare.started"
COMPARE_VOTED = "compare.voted"
TEST_SET_CREATED = "test_set.created"
TEST_SET_EDITED = "test_set.edited"
TEST_SET_DELETED = "test_set.deleted"
TEST_SET_RUN_STARTED = "test_set.run_started"
ASK_DRAFTED = "ask.drafted"
ASK_CORRECTED = "ask.corrected"
RETENTION_APPLIED = "retention.applied"


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as plain data."""

    id: int
    actor_id: int | None
    actor_name: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    created_at: datetime


def record(
    session: Session,
    action: str,
    *,
    actor_id: int | None = None,
    actor_name: str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add an audit event to ``session`` so it commits (or not) with the change it describes;
    ``at`` is when it happened (by default now: a service with a clock passes its own time).
    Returns the event (its ``id`` is set once the session flushes)."""
    added = AuditEvent(
        actor_id=actor_id,
        actor_name=actor_name,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=details or {},
        created_at=at or utc_now(),
    )
    session.add(added)
    audit_chain.link_on_commit(session, added)
    return added


def record_in(
    conn: Connection,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Like ``record``, on a Core connection (the job pipeline's transactions), by the system;
    linked into the chain at once, so call it last in the transaction."""
    added = conn.execute(
        insert(AuditEvent)
        .values(
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            details=details or {},
            created_at=at or utc_now(),
        )
        .returning(AuditEvent.id)
    ).scalar_one()
    audit_chain.link(conn, [added])


def for_target(
    db: Database, target_type: str, target_id: str, *, limit: int = 500
) -> list[AuditRecord]:
    """Every audit event about one object, oldest first."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.target_type == target_type, AuditEvent.target_id == str(target_id))
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    with db.session(read_only=True) as session:
        return [to_record(e) for e in session.scalars(query)]


def to_record(e: AuditEvent) -> AuditRecord:
    """Copy an ``AuditEvent`` row into an ``AuditRecord``."""
    return AuditRecord(
        id=e.id,
        actor_id=e.actor_id,
        actor_name=e.actor_name,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        details=dict(e.details or {}),
        created_at=e.created_at,
    )


CSV_COLUMNS = (
    "id",
    "created_at",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "details",
)
MAX_EXPORT_ROWS = 100_000


@dataclass(frozen=True)
class AuditQuery:
    """Which audit events to show; every field left empty matches everything."""

    actor: str | None = None
    actions: tuple[str, ...] = ()
    action_prefix: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.created_from, self.created_to):
            if moment is not None and moment.tzinfo is None:
                raise ValidationError("Audit time filters need a timezone (use UTC).")
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValidationError("The start of the time range is after its end.")


def _filtered(statement: Select, query: AuditQuery) -> Select:  # type: ignore[type-arg]
    if query.actor:
        statement = statement.where(AuditEvent.actor_name == query.actor)
    if query.actions:
        statement = statement.where(AuditEvent.action.in_(query.actions))
    if query.action_prefix:
        statement = statement.where(AuditEvent.action.startswith(query.action_prefix))
    if query.target_type:
        statement = statement.where(AuditEvent.target_type == query.target_type)
    if query.target_id:
        statement = statement.where(AuditEvent.target_id == query.target_id.strip())
    if query.created_from:
        statement = statement.where(AuditEvent.created_at >= query.created_from)
    if query.created_to:
        statement = statement.where(AuditEvent.created_at < query.created_to)
    return statement


def search(db: Database, query: AuditQuery, *, limit: int, offset: int = 0) -> list[AuditRecord]:
    """One page of the events matching ``query``, newest first."""
    statement = _filtered(select(AuditEvent), query).order_by(AuditEvent.id.desc())
    with db.session(read_only=True) as session:
        rows = session.scalars(statement.limit(limit).offset(offset))
        return [to_record(e) for e in rows]


def count(db: Database, query: AuditQuery) -> int:
    """How many events match ``query``."""
    statement = _filtered(select(func.count()).select_from(AuditEvent), query)
    with db.session(read_only=True) as session:
        return session.scalar(statement) or 0


def actions(db: Database) -> list[str]:
    """Every action name that occurs in the trail, alphabetically (for the filter)."""
    with db.session(read_only=True) as session:
        return list(session.scalars(select(AuditEvent.action).distinct().order_by("action")))


def actors(db: Database) -> list[str]:
    """Every actor name that occurs in the trail, alphabetically (for the filter)."""
    statement = (
        select(AuditEvent.actor_name)
        .where(AuditEvent.actor_name.is_not(None))
        .distinct()
        .order_by("actor_name")
    )
    with db.session(read_only=True) as session:
        return [name for name in session.scalars(statement) if name]


def export_csv(db: Database, query: AuditQuery) -> bytes:
    """The events matching ``query`` as UTF-8 CSV, newest first, safe to open in a spreadsheet."""
    rows = (
        (
            event.id,
            event.created_at.isoformat(),
            event.actor_id,
            event.actor_name,
            event.action,
            event.target_type,
            event.target_id,
            json.dumps(event.details, ensure_ascii=False, sort_keys=True),
        )
        for event in search(db, query, limit=MAX_EXPORT_ROWS)
    )
    return csv_text(CSV_COLUMNS, rows).encode("utf-8")
