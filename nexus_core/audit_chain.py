"""The audit trail's hash chain: each event carries the SHA-256 of its content and of the event
before it, so an event changed, deleted or slipped in afterwards shows when the chain is walked.

Ordering with concurrent writers: an event is linked when its transaction commits (``link``),
after taking the chain's one head row with ``SELECT … FOR UPDATE`` on PostgreSQL (SQLite's
``BEGIN IMMEDIATE`` already lets one writer in at a time). Linking is the last thing a transaction
does, so a writer waiting for the head holds nothing the head's holder needs: no deadlock. Events
are numbered 1, 2, 3 … (``seq``) in the order their transactions committed, without gaps.

What it proves: no event was edited, removed or inserted by someone writing to the database
directly — unless they also rewrote every later event and the head. Keep the head's hash (``nexus
audit verify --json`` prints it) somewhere else, say daily, and a rewritten chain shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

from sqlalchemy import Connection, Row, event, insert, select, text, update
from sqlalchemy.orm import Session

from nexus_core.db.engine import Database
from nexus_core.db.models import AuditChainHead, AuditEvent

GENESIS: Final = "0" * 64  # the "previous hash" of the first event
HEAD_ID: Final = 1
UNLINKED_KEY: Final = "nexus.audit.unlinked"  # in ``Session.info``: events this session added
VERIFY_BATCH: Final = 2_000

CONTENT_COLUMNS: Final = (
    AuditEvent.id,
    AuditEvent.seq,
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.actor_id,
    AuditEvent.actor_name,
    AuditEvent.action,
    AuditEvent.target_type,
    AuditEvent.target_id,
    AuditEvent.details.label("details"),
    AuditEvent.created_at,
)


def event_hash(prev_hash: str, seq: int, row: Row[Any]) -> str:
    """The SHA-256 (hex) over the previous event's hash, this event's number and its content
    (everything but its database id), as the database gives them back."""
    content = [
        seq,
        row.actor_id,
        row.actor_name,
        row.action,
        row.target_type,
        row.target_id,
        row.details or {},
        row.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    ]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}:{text}".encode()).hexdigest()


def link(conn: Connection, event_ids: Iterable[int]) -> None:
    """Number and chain the events ``event_ids`` after the chain's head, in id order, and move
    the head; call it last in the transaction that wrote them."""
    ids = sorted(event_ids)
    if not ids:
        return
    head_query = select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == HEAD_ID)
    head = conn.execute(head_query.with_for_update()).one_or_none()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    rows = conn.execute(select(*CONTENT_COLUMNS).where(AuditEvent.id.in_(ids)).order_by("id"))
    for row in rows.all():
        seq += 1
        digest = event_hash(prev, seq, row)
        conn.execute(
            update(AuditEvent)
            .where(AuditEvent.id == row.id)
            .values(seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
    if head is None:
        conn.execute(insert(AuditChainHead).values(id=HEAD_ID, seq=seq, hash=prev))
    else:
        conn.execute(
            update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(seq=seq, hash=prev)
        )


def link_on_commit(session: Session, added: AuditEvent) -> None:
    """Have ``added`` (just added to ``session``) linked when the session commits."""
    session.info.setdefault(UNLINKED_KEY, []).append(added)


@event.listens_for(Session, "before_commit")
def _link_unlinked(session: Session) -> None:
    added: list[AuditEvent] = session.info.pop(UNLINKED_KEY, [])
    if added:
        session.flush()
        link(session.connection(), [e.id for e in added])


@event.listens_for(Session, "after_rollback")
def _forget_unlinked(session: Session) -> None:
    session.info.pop(UNLINKED_KEY, None)


@dataclass(frozen=True)
class ChainReport:
    """What walking the chain found: intact, or the first bad event and what is wrong with it."""

    intact: bool
    events: int  # linked events walked
    head_seq: int
    head_hash: str
    problem: str | None = None
    event_id: int | None = None  # the first bad event's id, where it still exists
    seq: int | None = None  # its place in the chain

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "intact": self.intact,
            "events": self.events,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "problem": self.problem,
            "event_id": self.event_id,
            "seq": self.seq,
        }


def verify(db: Database) -> ChainReport:
    """Walk the chain up to its head, oldest first, and report the first event that was
    changed, deleted or inserted out of order (or that the newest events are gone).

    Reads only — on SQLite it never holds the write lock, so chats and sign-ins go on — and walks
    the events up to the head it read first: events committed meanwhile are the next walk's."""
    with db.reading() as conn:
        head = conn.execute(
            select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == HEAD_ID)
        ).one_or_none()
        if head is None:
            return ChainReport(False, 0, 0, GENESIS, "the chain's head is missing (deleted)")
        walked, prev, last_id = 0, GENESIS, None
        rows = conn.execution_options(yield_per=VERIFY_BATCH).execute(
            select(*CONTENT_COLUMNS)
            .where(AuditEvent.seq.is_not(None), AuditEvent.seq <= head.seq)
            .order_by(AuditEvent.seq)
        )
        try:
            for row in rows:
                problem = _problem(row, walked + 1, prev, last_id)
                if problem:
                    return ChainReport(False, walked, head.seq, head.hash, problem, row.id, row.seq)
                walked, prev, last_id = walked + 1, row.hash, row.id
        finally:
            rows.close()  # a server-side cursor on PostgreSQL: close it when stopping early
        outside = conn.execute(OUTSIDE_THE_CHAIN).scalar()
    if walked != head.seq or prev != head.hash:
        gone = f"events {walked + 1}–{head.seq}" if head.seq > walked else "events"
        problem = (
            f"the newest {gone} of the chain are missing (deleted): the head says "
            f"{head.seq} events, the trail holds {walked}"
        )
        return ChainReport(False, walked, head.seq, head.hash, problem, None, walked + 1)
    if outside is not None:
        problem = f"event {outside} is not in the chain: it was inserted outside Nexus"
        return ChainReport(False, walked, head.seq, head.hash, problem, outside, None)
    return ChainReport(True, walked, head.seq, head.hash)


# Events no commit linked: no place, or a place past the head (one statement, one snapshot, so
# an event committed meanwhile is seen with its head).
OUTSIDE_THE_CHAIN: Final = text(
    "SELECT min(e.id) FROM audit_events e WHERE e.seq IS NULL "
    f"OR e.seq > (SELECT h.seq FROM audit_chain_head h WHERE h.id = {HEAD_ID:d})"
)


def _problem(row: Row[Any], expected_seq: int, prev: str, last_id: int | None) -> str | None:
    after = f"after event {last_id}" if last_id is not None else "at the start of the chain"
    if row.seq > expected_seq:
        missing = (
            f"event {expected_seq}"
            if row.seq == expected_seq + 1
            else f"events {expected_seq}–{row.seq - 1}"
        )
        return f"{missing} of the chain missing (deleted) {after}, before event {row.id}"
    if row.seq < expected_seq:
        return f"event {row.id} repeats place {row.seq} of the chain: inserted out of order"
    if row.prev_hash != prev:
        return f"event {row.id} does not follow the event before it: inserted out of order"
    if event_hash(row.prev_hash, row.seq, row) != row.hash:
        return f"event {row.id} was changed after it was written"
    return None


def link_all_unlinked(conn: Connection, batch: int = VERIFY_BATCH) -> int:
    """Link every event that has no place in the chain yet, in id order (the migration that
    introduced the chain uses it for the events written before); how many were linked."""
    linked = 0
    while True:
        ids: Sequence[int] = (
            conn.execute(
                select(AuditEvent.id).where(AuditEvent.seq.is_(None)).order_by("id").limit(batch)
            )
            .scalars()
            .all()
        )
        if not ids:
            return linked
        link(conn, ids)
        linked += len(ids)
