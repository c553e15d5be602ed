"""One person's data: everything Nexus holds about them, exported, and erased on request.

Erasure removes what a person wrote or is named by — their messages' text (and the replies to
them, which quote and answer it), their feedback's text, the notes they wrote, their sessions'
titles, their notebooks, test sets, comparisons' prompts and vote notes — and anonymises the
account (``erased-<id>``, disabled, every sign-in ended). The rows themselves stay, so counts,
latencies, tokens and costs on the dashboards do not change; the event log never held names or
text, only the numeric user id, which now points at the anonymous account (a pseudonym).

The audit trail is kept as it was: it is the record of who did what (a legal obligation), and it
is hash-chained — rewriting its names would make it indistinguishable from tampering.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    AlertRule,
    AlertWebhook,
    AuditEvent,
    AuthSession,
    Board,
    BoardPin,
    BoardPinResult,
    Budget,
    ChatSession,
    CompareVote,
    Feedback,
    FeedbackNote,
    Message,
    ModelPrice,
    Notebook,
    PromptRun,
    TestSet,
    User,
)
from nexus_core.errors import NotFound, PermissionDenied
from nexus_core.privacy.content import ERASED, ERASED_TEXT, ERASED_TITLE, replace_text
from nexus_core.users import NO_PASSWORD_PREFIX, UserView, active_admins

ERASED_NAME: Final = "Erased user"
ERASED_PREFIX: Final = "erased-"
# Columns that name the account that last changed something (by username, not by id).
NAMED_BY: Final = (
    ModelPrice.created_by,
    Budget.updated_by,
    AlertRule.updated_by,
    AlertWebhook.created_by,
)
UNUSABLE_PASSWORD: Final = NO_PASSWORD_PREFIX + "erased"  # no password can ever match it


@dataclass(frozen=True)
class ErasureReport:
    """What one erasure removed, by kind (the counts go into its audit event)."""

    username: str  # the name before
    account: str  # the anonymous name after (``erased-<id>``)
    messages: int
    sessions: int
    feedback: int
    notes: int
    notebooks: int
    test_sets: int
    runs: int
    votes: int
    boards: int = 0  # boards they owned and pins they made on others' boards

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain data."""
        return asdict(self)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class PersonalDataService:
    """Export and erase everything Nexus holds about one person."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def export(self, username: str, *, actor: UserView | None = None) -> dict[str, Any]:
        """Everything Nexus holds about ``username`` as JSON-ready data (no password hash, no
        token); the export itself is audited."""
        with self.db.session() as session:
            user = _user(session, username)
            data = {
                "account": _account(user),
                "sign_ins": _sign_ins(session, user.id),
                "chat_sessions": _chats(session, user.id),
                "feedback": _feedback(session, user.id),
                "feedback_notes": _notes(session, user.id),
                "notebooks": _notebooks(session, user.id),
                "test_sets": _test_sets(session, user.id),
                "prompt_runs": _runs(session, user.id),
                "compare_votes": _votes(session, user.id),
                "budgets": _budgets(session, user.id),
                "audit_events": _audit_events(session, user.id),
            }
            audit.record(
                session,
                audit.USER_DATA_EXPORTED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
            )
        return data

    def erase(self, username: str, *, actor: UserView | None = None) -> ErasureReport:
        """Remove ``username``'s text and anonymise the account, in one transaction (audited);
        the last active admin cannot be erased, nor can anyone erase themselves."""
        with self.db.session() as session:
            user = _user(session, username)
            if actor is not None and actor.id == user.id:
                raise PermissionDenied("You cannot erase your own account; ask another admin.")
            if user.role == "admin" and not user.disabled and active_admins(session) <= 1:
                raise PermissionDenied("The last active admin cannot be erased.")
            username = user.username
            counts = _erase_content(session, user)
            _anonymise(session, user)
            report = ErasureReport(username, user.username, *counts)
            audit.record(
                session,
                audit.USER_ERASED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
                details={k: v for k, v in report.as_dict().items() if k != "username"},
            )
            return report


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def _erase_content(session: Session, user: User) -> tuple[int, ...]:
    """Each kind of content erased, counted in ``ErasureReport``'s order."""
    chat_ids = select(ChatSession.id).where(ChatSession.user_id == user.id)
    messages = replace_text(
        session, Message.content, ERASED_TEXT, Message.session_id.in_(chat_ids), keep=ERASED
    )
    sessions = replace_text(
        session,
        ChatSession.title,
        ERASED_TITLE,
        ChatSession.user_id == user.id,
        instruction=None,
        keep=ERASED,
    )
    feedback = replace_text(
        session,
        Feedback.description,
        ERASED_TEXT,
        Feedback.user_id == user.id,
        context={},
        keep=ERASED,
    )
    notes = replace_text(
        session, FeedbackNote.text, ERASED_TEXT, FeedbackNote.author_id == user.id, keep=ERASED
    )
    notebooks = session.execute(delete(Notebook).where(Notebook.owner_id == user.id)).rowcount
    test_sets = session.execute(delete(TestSet).where(TestSet.owner_id == user.id)).rowcount
    runs = session.execute(
        update(PromptRun)
        .where(PromptRun.user_id == user.id)
        .values(prompt=None, history=[], cases=[], tag=None)
    ).rowcount
    votes = session.execute(
        update(CompareVote).where(CompareVote.user_id == user.id).values(ratings={})
    ).rowcount
    boards = session.execute(delete(Board).where(Board.owner_id == user.id)).rowcount
    boards += session.execute(delete(BoardPin).where(BoardPin.pinned_by_id == user.id)).rowcount
    # Pinned results are caches that may hold their text (an admin's view shows messages): they
    # fill again when a board is next opened.
    session.execute(delete(BoardPinResult))
    return (messages, sessions, feedback, notes, notebooks, test_sets, runs, votes, boards)


def _anonymise(session: Session, user: User) -> None:
    now = utc_now()
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.ended_at.is_(None))
        .values(ended_at=now, end_reason="erased")
    )
    anonymous = f"{ERASED_PREFIX}{user.id}"
    for column in NAMED_BY:  # who last set a price, a budget, a rule or a webhook
        session.execute(
            update(column.class_).where(column == user.username).values({column.key: anonymous})
        )
    user.username = anonymous
    user.display_name = ERASED_NAME
    user.email = None
    user.password_hash = UNUSABLE_PASSWORD
    user.disabled = True
    user.features = {}
    user.last_login_at = None


def _account(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": user.role,
        "features": dict(user.features or {}),
        "disabled": user.disabled,
        "created_at": _when(user.created_at),
        "last_login_at": _when(user.last_login_at),
        # Single sign-on: the provider and its id of this person (kept by erasure, which leaves
        # the account disabled, so the same identity cannot come back as a new account).
        "sso": {"issuer": user.oidc_issuer, "subject": user.oidc_subject}
        if user.oidc_subject
        else None,
    }


def _sign_ins(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.id)
    )
    return [
        {
            "issued_at": _when(s.issued_at),
            "last_seen_at": _when(s.last_seen_at),
            "ended_at": _when(s.ended_at),
            "end_reason": s.end_reason,
        }
        for s in rows
    ]


def _chats(session: Session, user_id: int) -> list[dict[str, Any]]:
    chats = session.scalars(
        select(ChatSession).where(ChatSession.user_id == user_id).order_by(ChatSession.id)
    ).all()
    messages: dict[int, list[dict[str, Any]]] = {c.id: [] for c in chats}
    rows = session.scalars(
        select(Message)
        .where(Message.session_id.in_([c.id for c in chats]))
        .order_by(Message.created_at, Message.id)
    )
    for m in rows:
        messages[m.session_id].append(
            {
                "role": m.role,
                "content": m.content,
                "created_at": _when(m.created_at),
                "model": m.model,
                "input_tokens": m.tokens_in,
                "output_tokens": m.tokens_out,
                "cost_usd": m.cost_usd,
            }
        )
    return [
        {
            "id": c.public_id,
            "title": c.title,
            "status": c.status,
            "created_at": _when(c.created_at),
            "deleted_at": _when(c.deleted_at),
            "messages": messages[c.id],
        }
        for c in chats
    ]


def _feedback(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Feedback).where(Feedback.user_id == user_id).order_by(Feedback.id)
    )
    return [
        {
            "id": f.id,
            "category": f.category,
            "priority": f.priority,
            "status": f.status,
            "rating": f.rating,
            "description": f.description,
            "created_at": _when(f.created_at),
        }
        for f in rows
    ]


def _notes(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(FeedbackNote).where(FeedbackNote.author_id == user_id).order_by(FeedbackNote.id)
    )
    return [
        {"feedback_id": n.feedback_id, "text": n.text, "created_at": _when(n.created_at)}
        for n in rows
    ]


def _notebooks(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Notebook).where(Notebook.owner_id == user_id).order_by(Notebook.id)
    )
    return [{"id": n.id, "title": n.title, "shared": n.shared, "cells": n.cells} for n in rows]


def _test_sets(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(TestSet).where(TestSet.owner_id == user_id).order_by(TestSet.id))
    return [{"name": t.name, "cases": t.cases} for t in rows]


def _runs(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(PromptRun).where(PromptRun.user_id == user_id).order_by(PromptRun.created_at)
    )
    return [
        {"id": r.id, "kind": r.kind, "prompt": r.prompt, "created_at": _when(r.created_at)}
        for r in rows
    ]


def _votes(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(CompareVote).where(CompareVote.user_id == user_id))
    return [
        {
            "run_id": v.run_id,
            "best_position": v.best_position,
            "ratings": v.ratings,
            "created_at": _when(v.created_at),
        }
        for v in rows
    ]


def _budgets(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Budget).where(Budget.scope == "user", Budget.target_id == user_id)
    )
    return [{"monthly_usd": b.monthly_usd, "hard": b.hard} for b in rows]


def _audit_events(session: Session, user_id: int) -> list[dict[str, Any]]:
    about = or_(
        AuditEvent.actor_id == user_id,
        (AuditEvent.target_type == "user") & (AuditEvent.target_id == str(user_id)),
    )
    rows = session.scalars(select(AuditEvent).where(about).order_by(AuditEvent.id))
    return [
        {
            "action": e.action,
            "actor": e.actor_name,
            "target_type": e.target_type,
            "target_id": e.target_id,
            "details": e.details,
            "created_at": _when(e.created_at),
        }
        for e in rows
    ]
