"""Reading the audit trail: filter, count, page through and export audit events.

This module only reads. The trail is append-only from the app: events are added by
``audit.record`` inside the transaction of the change they describe, and nothing in the UI or the
CLI edits or deletes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select

from nexus_core.audit import AuditRecord, to_record
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent
from nexus_core.errors import ValidationError
from nexus_core.spreadsheet import csv_text

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
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
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
    with db.session() as session:
        rows = session.scalars(statement.limit(limit).offset(offset))
        return [to_record(e) for e in rows]


def count(db: Database, query: AuditQuery) -> int:
    """How many events match ``query``."""
    statement = _filtered(select(func.count()).select_from(AuditEvent), query)
    with db.session() as session:
        return session.scalar(statement) or 0


def actions(db: Database) -> list[str]:
    """Every action name that occurs in the trail, alphabetically (for the filter)."""
    with db.session() as session:
        return list(session.scalars(select(AuditEvent.action).distinct().order_by("action")))


def actors(db: Database) -> list[str]:
    """Every actor name that occurs in the trail, alphabetically (for the filter)."""
    statement = (
        select(AuditEvent.actor_name)
        .where(AuditEvent.actor_name.is_not(None))
        .distinct()
        .order_by("actor_name")
    )
    with db.session() as session:
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
