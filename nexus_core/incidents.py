"""`ErrorNotifierService`: the one place unexpected errors and users' error reports go through.

An unexpected error gets a short reference the user can quote. The service writes a structured
``error`` event (reference, exception type, page, user, session) and logs the stack *frames* on the
server — never the exception message, which may hold a URL with a password or a key. Trackers
(Sentry and the like) plug in as callables that receive the same `ErrorRecord`.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.events import EventSink
from nexus_core.feedback import FeedbackService, FeedbackView
from nexus_core.users import UserView

log = logging.getLogger("nexus.errors")

ERROR_EVENT = "error"
ERROR_REPORTED_EVENT = "error_reported"
REFERENCE_BYTES = 4


@dataclass(frozen=True)
class ErrorRecord:
    """What is kept about one unexpected error (no message text)."""

    reference: str
    exception_type: str
    page: str | None
    user_id: int | None
    chat_session_id: str | None
    frames: str


Tracker = Callable[[ErrorRecord], None]


def new_reference() -> str:
    """A short reference a user can read out, e.g. ``E-3F9A12C4``."""
    return "E-" + secrets.token_hex(REFERENCE_BYTES).upper()


def redacted_frames(exc: BaseException) -> str:
    """The traceback's frames and the exception type, without the exception's message."""
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
    return "".join(frames) + f"{type(exc).__module__}.{type(exc).__qualname__} (message withheld)"


class ErrorNotifierService:
    """Records unexpected errors and files users' reports about them."""

    def __init__(self, db: Database, events: EventSink, trackers: tuple[Tracker, ...] = ()) -> None:
        self.db = db
        self.events = events
        self.trackers = trackers

    def notify(
        self,
        exc: BaseException,
        *,
        page: str | None = None,
        user_id: int | None = None,
        chat_session_id: str | None = None,
    ) -> ErrorRecord:
        """Record an unexpected error; returns the record with its reference."""
        record = ErrorRecord(
            reference=new_reference(),
            exception_type=type(exc).__qualname__,
            page=page,
            user_id=user_id,
            chat_session_id=chat_session_id,
            frames=redacted_frames(exc),
        )
        log.error("unexpected error %s on page %s:\n%s", record.reference, page, record.frames)
        self.events.emit(
            ERROR_EVENT,
            chat_session_id=chat_session_id,
            user_id=user_id,
            reference=record.reference,
            exception_type=record.exception_type,
            page=page,
        )
        for tracker in self.trackers:
            try:
                tracker(record)
            except Exception:  # a broken tracker must not hide the original error
                log.exception("error tracker failed for %s", record.reference)
        return record

    def report(
        self,
        user: UserView,
        *,
        reference: str,
        page: str | None,
        chat_session_id: str | None,
        exception_type: str | None = None,
    ) -> FeedbackView:
        """File the user's report of an error as high-priority bug feedback."""
        item = FeedbackService(self.db).submit(
            user,
            category="bug",
            priority="high",
            description=f"Error {reference} reported from the {page or 'app'} page.",
            context={
                "page": page,
                "session": chat_session_id,
                "reference": reference,
                "exception_type": exception_type,
            },
        )
        with self.db.session() as session:
            audit.record(
                session,
                audit.ERROR_REPORTED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="feedback",
                target_id=item.id,
                details={"reference": reference, "page": page},
            )
        self.events.emit(
            ERROR_REPORTED_EVENT,
            chat_session_id=chat_session_id,
            user_id=user.id,
            reference=reference,
            feedback_id=item.id,
        )
        return item
