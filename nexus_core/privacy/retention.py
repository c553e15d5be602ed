"""Retention: text and event-log files older than the configured number of days are removed.

*Content* (``NEXUS_RETAIN_CONTENT_DAYS``): the text of messages (what people typed, the replies,
the error bubbles), of feedback and triage notes written before the cutoff, and the titles of
sessions started before it (a title is made from the first message), become "[removed by
retention policy]" (``content``). The rows stay — timestamps, latencies, tokens and costs — so the
dashboards, the Usage page and budgets count as before.

*Events* (``NEXUS_RETAIN_EVENTS_DAYS``): whole rotated log files whose newest event is older than
the cutoff are deleted with their compacted copies (``EventStore.expire``). A live file is never
cut: its old lines go when it has been rotated and its newest line is old enough; one last written
before the cutoff (a host that stopped writing) is rotated by retention first.

*When*: every process of the app runs a ``RetentionScheduler``; each check it tries to *claim*
the daily lease, which only succeeds when the last run's day is over — so one process of the
deployment runs retention once a day, whatever the number of replicas and restarts. A run that
fails gives the lease back and the next check tries again. ``nexus retention apply`` runs at once.
Every run that has a policy is an audit event (``retention.applied``) listing what it removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.lease import Lease, LeasedScheduler
from nexus_core.db.models import ChatSession, Feedback, FeedbackNote, Message
from nexus_core.privacy.content import REMOVED_TEXT, replace_text

if TYPE_CHECKING:
    from nexus_core.analytics.log_store import EventStore, ExpiredFile

LEASE_NAME: Final = "retention"
RUN_EVERY: Final = timedelta(days=1)
# How often each process tries the daily lease: a new day's run starts within this.
CHECK_INTERVAL: Final = timedelta(minutes=5)
UNTITLED: Final = "New chat"  # a session's title before its first message: nothing to remove


@dataclass(frozen=True)
class RetentionReport:
    """What one retention run removed (its ``to_json`` is the audit event's details)."""

    now: datetime
    content_before: datetime | None  # None: content is kept
    events_before: datetime | None  # None: the event log is kept
    messages: int = 0
    sessions: int = 0
    feedback: int = 0
    notes: int = 0
    event_files: tuple[ExpiredFile, ...] = ()

    @property
    def applied(self) -> bool:
        """Whether a policy was set (else nothing is removed and nothing audited)."""
        return self.content_before is not None or self.events_before is not None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data: cutoffs, counts and the deleted files."""
        return {
            "now": self.now.isoformat(),
            "content_before": _iso(self.content_before),
            "events_before": _iso(self.events_before),
            "removed": {
                "messages": self.messages,
                "sessions": self.sessions,
                "feedback": self.feedback,
                "notes": self.notes,
                "event_files": len(self.event_files),
                "events": sum(f.events for f in self.event_files),
            },
            "files": [
                {"name": f.name, "events": f.events, "newest": _iso(f.newest), "bytes": f.size}
                for f in self.event_files
            ],
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class RetentionService:
    """Removes content and event-log files older than the configured days (None: keep)."""

    def __init__(
        self,
        db: Database,
        events: EventStore,
        *,
        content_days: int | None,
        events_days: int | None,
    ) -> None:
        self.db = db
        self.events = events
        self.content_days = content_days
        self.events_days = events_days

    def apply(self, now: datetime) -> RetentionReport:
        """Remove what is older than the policy as of ``now``; audited when a policy is set."""
        content_before = _cutoff(now, self.content_days)
        events_before = _cutoff(now, self.events_days)
        if content_before is None and events_before is None:
            return RetentionReport(now, None, None)
        # Files first: a deletion cannot be rolled back, so the audit event that follows in the
        # content's transaction always lists them.
        files = tuple(self.events.expire(events_before)) if events_before else ()
        with self.db.session() as session:
            counts = _remove_content(session, content_before) if content_before else (0,) * 4
            report = RetentionReport(now, content_before, events_before, *counts, files)
            audit.record(
                session,
                audit.RETENTION_APPLIED,
                target_type="retention",
                details=report.to_json(),
                at=now,
            )
        return report


def _cutoff(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _remove_content(session: Session, before: datetime) -> tuple[int, int, int, int]:
    """Messages, session titles, feedback and notes older than ``before``, counted."""
    messages = replace_text(session, Message.content, REMOVED_TEXT, Message.created_at < before)
    sessions = replace_text(
        session,
        ChatSession.title,
        REMOVED_TEXT,
        ChatSession.created_at < before,
        ChatSession.title != UNTITLED,
    )
    feedback = replace_text(
        session,
        Feedback.description,
        REMOVED_TEXT,
        Feedback.created_at < before,
        Feedback.description != "",  # a thumb without words
    )
    notes = replace_text(session, FeedbackNote.text, REMOVED_TEXT, FeedbackNote.created_at < before)
    return messages, sessions, feedback, notes


class RetentionScheduler(LeasedScheduler[RetentionReport]):
    """Runs ``service.apply`` once a day in one process of the deployment (the daily lease)."""

    name = "nexus-retention"
    release_on_stop = False  # a stopping process keeps today's claim: no second run today

    def __init__(
        self,
        service: RetentionService,
        lease: Lease,
        interval: timedelta = CHECK_INTERVAL,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(lease, interval, clock)
        self.service = service

    @classmethod
    def for_service(cls, service: RetentionService) -> RetentionScheduler:
        """A scheduler checking every ``CHECK_INTERVAL`` for a lease of ``RUN_EVERY``."""
        return cls(service, Lease(service.db, LEASE_NAME, RUN_EVERY))

    def tick(self) -> RetentionReport | None:
        """Today's run if this process claims the daily lease; None when it is taken."""
        now = self.clock()
        if not self.lease.claim(now):
            return None
        try:
            return self.service.apply(now)
        except Exception:
            self.lease.release()  # the next check, here or elsewhere, tries again
            raise
