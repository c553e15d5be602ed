"""Which feedback the explorer shows: the filters, the sort orders and the rows they select.

A row joins the feedback to its author, its assignee and, through the linked chat session, the
persona it was about. Feedback without a conversation has no persona; ``NO_PERSONA`` selects it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, case, or_, select
from sqlalchemy.orm import aliased

from nexus_core.db.models import (
    FEEDBACK_CATEGORIES,
    FEEDBACK_PRIORITIES,
    FEEDBACK_STATUSES,
    ChatSession,
    Feedback,
    Persona,
    User,
)
from nexus_core.errors import ValidationError

NO_PERSONA = "(no conversation)"
MAX_SEARCH_CHARS = 200

# Sort key → what the explorer calls it.
SORTS: dict[str, str] = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "priority": "Highest priority first",
    "updated": "Recently updated",
    "status": "Status (open first)",
}
DEFAULT_SORT = "newest"

Author = aliased(User, name="author")
Assignee = aliased(User, name="assignee")

_PRIORITY_RANK = case(
    {name: rank for rank, name in enumerate(FEEDBACK_PRIORITIES)}, value=Feedback.priority
)
_STATUS_RANK = case(
    {name: rank for rank, name in enumerate(FEEDBACK_STATUSES)}, value=Feedback.status
)
_ORDER: dict[str, tuple[Any, ...]] = {
    "newest": (Feedback.created_at.desc(), Feedback.id.desc()),
    "oldest": (Feedback.created_at.asc(), Feedback.id.asc()),
    "priority": (_PRIORITY_RANK.desc(), Feedback.created_at.desc(), Feedback.id.desc()),
    "updated": (Feedback.updated_at.desc(), Feedback.id.desc()),
    "status": (_STATUS_RANK.asc(), Feedback.created_at.desc(), Feedback.id.desc()),
}


@dataclass(frozen=True)
class FeedbackFilters:
    """What to show; empty fields do not filter. Dates are UTC calendar days, both inclusive."""

    categories: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    personas: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    author: str | None = None
    text: str = ""

    def validated(self) -> FeedbackFilters:
        """These filters, or a ValidationError naming the first value that is wrong."""
        for values, choices, what in (
            (self.categories, FEEDBACK_CATEGORIES, "category"),
            (self.priorities, FEEDBACK_PRIORITIES, "priority"),
            (self.statuses, FEEDBACK_STATUSES, "status"),
        ):
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise ValidationError(
                    f"Unknown {what} {unknown[0]!r}; choose from {', '.join(choices)}."
                )
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValidationError("The start date is after the end date; swap them.")
        if len(self.text) > MAX_SEARCH_CHARS:
            raise ValidationError(f"Search for at most {MAX_SEARCH_CHARS} characters.")
        return self


@dataclass(frozen=True)
class FeedbackRow:
    """One feedback item as the explorer lists it."""

    id: int
    created_at: datetime
    updated_at: datetime
    category: str
    priority: str
    status: str
    rating: int | None
    description: str
    author: str | None
    assignee: str | None
    persona: str | None
    session_public_id: str | None
    message_id: int | None

    @property
    def source(self) -> str:
        """What the feedback is about: a reply, a conversation, or the app in general."""
        if self.message_id is not None:
            return "reply"
        return "conversation" if self.session_public_id else "general"


def escape_like(text: str) -> str:
    """``text`` with LIKE wildcards escaped (the escape character is a backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def joined(*columns: Any) -> Select[Any]:
    """``SELECT columns`` over feedback joined to author, assignee, session and persona."""
    return (
        select(*columns)
        .select_from(Feedback)
        .outerjoin(Author, Author.id == Feedback.user_id)
        .outerjoin(Assignee, Assignee.id == Feedback.assignee_id)
        .outerjoin(ChatSession, ChatSession.id == Feedback.session_id)
        .outerjoin(Persona, Persona.id == ChatSession.persona_id)
    )


def row_query() -> Select[Any]:
    """The columns a ``FeedbackRow`` is built from."""
    return joined(Feedback, Author.username, Assignee.username, ChatSession.public_id, Persona.name)


def filtered(query: Select[Any], filters: FeedbackFilters) -> Select[Any]:
    """``query`` narrowed to what ``filters`` asks for."""
    f = filters.validated()
    if f.categories:
        query = query.where(Feedback.category.in_(f.categories))
    if f.priorities:
        query = query.where(Feedback.priority.in_(f.priorities))
    if f.statuses:
        query = query.where(Feedback.status.in_(f.statuses))
    if f.personas:
        named = [p for p in f.personas if p != NO_PERSONA]
        clauses = [Persona.name.in_(named)] if named else []
        if NO_PERSONA in f.personas:
            clauses.append(Feedback.session_id.is_(None))
        query = query.where(or_(*clauses))
    if f.date_from:
        query = query.where(Feedback.created_at >= day_start(f.date_from))
    if f.date_to:
        query = query.where(Feedback.created_at < day_start(f.date_to + timedelta(days=1)))
    if f.author and f.author.strip():
        query = query.where(Author.username == f.author.strip().lower())
    if f.text.strip():
        pattern = f"%{escape_like(f.text.strip())}%"
        query = query.where(Feedback.description.ilike(pattern, escape="\\"))
    return query


def ordered(query: Select[Any], sort: str) -> Select[Any]:
    """``query`` in one of the ``SORTS`` orders."""
    if sort not in _ORDER:
        raise ValidationError(f"Unknown sort {sort!r}; choose one of {', '.join(SORTS)}.")
    return query.order_by(*_ORDER[sort])


def to_row(found: Any) -> FeedbackRow:
    """A ``FeedbackRow`` from one result of ``row_query()``."""
    f, author, assignee, session_public_id, persona = found
    return FeedbackRow(
        id=f.id,
        created_at=f.created_at,
        updated_at=f.updated_at,
        category=f.category,
        priority=f.priority,
        status=f.status,
        rating=f.rating,
        description=f.description,
        author=author,
        assignee=assignee,
        persona=persona,
        session_public_id=session_public_id,
        message_id=f.message_id,
    )
