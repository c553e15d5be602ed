"""Feedback: thumbs and reports on a reply, or general feedback about the app.

One row per user and reply: the thumbs rating and the optional report (category, priority,
description) land on the same row. Every submission is an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from nexus_core import audit
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    FEEDBACK_CATEGORIES,
    FEEDBACK_PRIORITIES,
    ChatSession,
    Feedback,
    Message,
)
from nexus_core.errors import NotFound, ValidationError
from nexus_core.privacy.redaction import Redactor
from nexus_core.users import UserView

CATEGORIES = FEEDBACK_CATEGORIES
PRIORITIES = FEEDBACK_PRIORITIES
MAX_DESCRIPTION_CHARS = 5000
RATINGS = {0: "down", 1: "up"}


@dataclass(frozen=True)
class FeedbackView:
    """A feedback item as plain data."""

    id: int
    user_id: int | None
    session_id: int | None
    message_id: int | None
    category: str
    priority: str
    status: str
    rating: int | None
    description: str
    context: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def feedback_view(f: Feedback) -> FeedbackView:
    """Copy a ``Feedback`` row into a ``FeedbackView``."""
    return FeedbackView(
        id=f.id,
        user_id=f.user_id,
        session_id=f.session_id,
        message_id=f.message_id,
        category=f.category,
        priority=f.priority,
        status=f.status,
        rating=f.rating,
        description=f.description,
        context=dict(f.context or {}),
        created_at=f.created_at,
        updated_at=f.updated_at,
    )


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValidationError(f"Unknown {what} {value!r}; choose one of {', '.join(choices)}.")
    return value


class FeedbackService:
    """Store ratings and reports from users."""

    def __init__(
        self, db: Database, *, clock: Clock = utc_now, redactor: Redactor | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.redactor = redactor or Redactor()  # NEXUS_REDACT: masked before it is stored

    def _reply_row(self, session: Any, user: UserView, message_id: int, now: datetime) -> Feedback:
        """The user's feedback row for a reply in one of their sessions (created if needed)."""
        found = session.execute(
            select(Message, ChatSession)
            .join(ChatSession, ChatSession.id == Message.session_id)
            .where(Message.id == message_id, ChatSession.deleted_at.is_(None))
        ).one_or_none()
        if found is None or found[1].user_id != user.id or found[0].role != "assistant":
            raise NotFound("That reply does not exist or is not in one of your sessions.")
        message, chat = found
        row = session.scalar(
            select(Feedback).where(Feedback.user_id == user.id, Feedback.message_id == message.id)
        )
        if row is None:
            row = Feedback(
                user_id=user.id,
                session_id=chat.id,
                message_id=message.id,
                category="content",
                priority="low",
                status="open",
                description="",
                context={"session": chat.public_id, "model": message.model},
                created_at=now,
            )
            session.add(row)
        row.updated_at = now
        return row

    def rate(self, user: UserView, message_id: int, rating: int) -> FeedbackView:
        """Thumbs up (1) or down (0) on a reply."""
        if rating not in RATINGS:
            raise ValidationError("A rating is 1 (thumbs up) or 0 (thumbs down).")
        now = self.clock()
        with self.db.session() as session:
            row = self._reply_row(session, user, message_id, now)
            row.rating = rating
            session.flush()
            audit.record(
                session,
                audit.FEEDBACK_RATED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="feedback",
                target_id=row.id,
                details={
                    "rating": RATINGS[rating],
                    "message_id": message_id,
                    "session": row.context.get("session"),
                },
                at=now,
            )
            return feedback_view(row)

    def submit(
        self,
        user: UserView,
        *,
        category: str,
        priority: str,
        description: str,
        message_id: int | None = None,
        session_public_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> FeedbackView:
        """A report about a reply (``message_id``), a session, or the app in general."""
        _check_choice(category, FEEDBACK_CATEGORIES, "category")
        _check_choice(priority, FEEDBACK_PRIORITIES, "priority")
        description = self.redactor.redact(description.strip())
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValidationError(
                f"The description is longer than {MAX_DESCRIPTION_CHARS:,} characters."
            )
        now = self.clock()
        with self.db.session() as session:
            if message_id is not None:
                row = self._reply_row(session, user, message_id, now)
            else:
                row = Feedback(
                    user_id=user.id, status="open", context={}, created_at=now, updated_at=now
                )
                if session_public_id:
                    chat = session.scalar(
                        select(ChatSession).where(
                            ChatSession.public_id == session_public_id,
                            ChatSession.deleted_at.is_(None),
                        )
                    )
                    if chat is None or chat.user_id != user.id:
                        raise NotFound("That chat session does not exist or is not yours.")
                    row.session_id = chat.id
                    row.context = {"session": chat.public_id}
                session.add(row)
            if not description and message_id is None:
                raise ValidationError("Describe the problem or idea in a sentence or two.")
            row.category, row.priority, row.description = category, priority, description
            row.context = {**(row.context or {}), **(context or {})}
            session.flush()
            audit.record(
                session,
                audit.FEEDBACK_SUBMITTED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="feedback",
                target_id=row.id,
                details={
                    "category": category,
                    "priority": priority,
                    "session": row.context.get("session"),
                },
                at=now,
            )
            return feedback_view(row)

    def for_session(self, session_id: int) -> list[FeedbackView]:
        """All feedback linked to a session, oldest first."""
        with self.db.session(read_only=True) as session:
            rows = session.scalars(
                select(Feedback).where(Feedback.session_id == session_id).order_by(Feedback.id)
            )
            return [feedback_view(f) for f in rows]

    def mine(self, user: UserView) -> list[FeedbackView]:
        """The user's own feedback, newest first."""
        with self.db.session(read_only=True) as session:
            rows = session.scalars(
                select(Feedback).where(Feedback.user_id == user.id).order_by(Feedback.id.desc())
            )
            return [feedback_view(f) for f in rows]
