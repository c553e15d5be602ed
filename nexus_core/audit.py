"""The audit trail: append-only records of who did what. There is no update or delete here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent

# Action names, grouped by what they are about.
SIGN_IN = "auth.sign_in"
SIGN_IN_FAILED = "auth.sign_in_failed"
LOCKED_OUT = "auth.locked_out"
SIGN_OUT = "auth.sign_out"
PASSWORD_CHANGED = "user.password_changed"
USER_CREATED = "user.created"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
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
FEEDBACK_SUBMITTED = "feedback.submitted"
FEEDBACK_RATED = "feedback.rated"
FEEDBACK_STATUS_CHANGED = "feedback.status_changed"
FEEDBACK_ASSIGNED = "feedback.assigned"
FEEDBACK_NOTE_ADDED = "feedback.note_added"
ERROR_REPORTED = "error.reported"
NOTEBOOK_CREATED = "notebook.created"
NOTEBOOK_SHARED = "notebook.shared"
NOTEBOOK_DELETED = "notebook.deleted"
COMPARE_STARTED = "compare.started"
COMPARE_VOTED = "compare.voted"
TEST_SET_CREATED = "test_set.created"
TEST_SET_EDITED = "test_set.edited"
TEST_SET_DELETED = "test_set.deleted"
TEST_SET_RUN_STARTED = "test_set.run_started"


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
) -> None:
    """Add an audit event to ``session`` so it commits (or not) with the change it describes."""
    session.add(
        AuditEvent(
            actor_id=actor_id,
            actor_name=actor_name,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            details=details or {},
        )
    )


def recent(db: Database, *, limit: int = 100, action: str | None = None) -> list[AuditRecord]:
    """The newest audit events, optionally of one action."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    with db.session() as session:
        return [to_record(e) for e in session.scalars(query)]


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
    with db.session() as session:
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
