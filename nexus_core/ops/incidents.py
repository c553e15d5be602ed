"""`ErrorNotifierService`: the one place unexpected errors and users' error reports go through.

An unexpected error gets a short reference the user can quote. The service writes a structured
``error`` event (reference, exception type, page, user, session) and logs the stack *frames* on the
server — never the exception message, which may hold a URL with a password or a key. Trackers
(Sentry and the like) plug in as callables that receive the same `ErrorRecord`.

The same promise holds for every other log line of the process, whoever logs it (a fallback
path with the database down, a library's own ``logger.exception``): ``withhold_exception_text``
makes every log record carry an exception's frames and types, never its text.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.feedback import FeedbackService, FeedbackView
from nexus_core.ops.events import EventSink
from nexus_core.users import UserView

log = logging.getLogger("nexus.errors")

ERROR_EVENT = "error"
ERROR_REPORTED_EVENT = "error_reported"
REFERENCE_BYTES = 4
MAX_CAUSES = 5
WITHHOLDING_MARK = "nexus_withholds_exception_text"


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
    """The traceback's frames and the exception's type (and those of its causes), without any
    exception's message."""
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
    causes = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < MAX_CAUSES:
        causes.append(_type_name(cause))
        cause = cause.__cause__ or cause.__context__
    text = "".join(frames) + f"{_type_name(exc)} (message withheld)"
    return text + "".join(f"\n  caused by {name} (message withheld)" for name in causes)


def _type_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def withhold_exception_text() -> None:
    """From now on, every log record of this process that carries an exception logs its frames
    and types instead (``redacted_frames``): no handler can print an exception's message."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, WITHHOLDING_MARK, False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.exc_info and record.exc_info[1] is not None:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = str(record.msg)
            record.msg = f"{message}\n{redacted_frames(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return record

    setattr(make_record, WITHHOLDING_MARK, True)
    logging.setLogRecordFactory(make_record)


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
