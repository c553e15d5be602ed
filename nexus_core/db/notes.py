"""Internal notes on feedback: what the triage team writes about an item, never shown to its
author."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from nexus_core.db.models import Base
from nexus_core.db.types import UTCDateTime, utc_now


class FeedbackNote(Base):
    """One internal note on a feedback item, by an analyst or admin."""

    __tablename__ = "feedback_notes"
    __table_args__ = (Index("ix_feedback_notes_feedback_created", "feedback_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
