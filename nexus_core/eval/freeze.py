"""Freezing real conversations into test-set cases.

A user turn becomes a case holding what the model was given and what it answered: the user
message (the prompt), the history before it as the model saw it — the user and assistant messages
that fit the context budget, cut exactly as the reply job cuts them (``build_turns``) — the
persona and version that answered, and the original reply as the baseline. A turn is named by its
user message or by its reply (what feedback points at); a whole session freezes every user turn
that got a reply.

Content stays as visible as it was: members (and analysts) freeze their own conversations; only
admins freeze other people's, and every freeze is in the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.ai.response import ROLE_TO_TURN, HistoryItem, build_turns
from nexus_core.compare.checks import Baseline, Origin, TestCase
from nexus_core.compare.test_sets import TestSetService, TestSetView
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import ChatSession, Message, Persona
from nexus_core.errors import NotFound, ValidationError
from nexus_core.users import UserView

MESSAGE_NOT_FOUND: Final = "Message {id} does not exist or is not in one of your conversations."
SESSION_NOT_FOUND: Final = "That chat session does not exist or is not yours."
NO_REPLY: Final = (
    "Message {id} has no reply to use as the baseline (its answer failed); freeze a turn "
    "that was answered."
)
NOTHING_TO_FREEZE: Final = "Name at least one message or session to freeze."
TEST_SET_FROZEN: Final = "test_set.frozen"
TURN_ROLES: Final = {turn: role for role, turn in ROLE_TO_TURN.items()}


@dataclass(frozen=True)
class FreezeResult:
    """The test set the cases went into and how many were added."""

    test_set: TestSetView
    added: int


class FreezeService:
    """Turns real user turns into test-set cases (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        test_sets: TestSetService,
        *,
        budget_chars: int,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.test_sets = test_sets
        self.budget_chars = budget_chars
        self.clock = clock

    def cases(
        self,
        user: UserView,
        *,
        message_ids: Sequence[int] = (),
        session_ids: Sequence[str] = (),
    ) -> list[TestCase]:
        """The cases of the named turns and sessions, in the order given, without storing them."""
        if not message_ids and not session_ids:
            raise ValidationError(NOTHING_TO_FREEZE)
        with self.db.session() as session:
            turns = [self._turn_of(session, user, message_id) for message_id in message_ids]
            for public_id in session_ids:
                turns.extend(self._turns_of_session(session, user, public_id))
            return [self._case(session, message) for message in turns]

    def freeze(
        self,
        user: UserView,
        test_set: str,
        *,
        message_ids: Sequence[int] = (),
        session_ids: Sequence[str] = (),
    ) -> FreezeResult:
        """Add the cases to the user's test set named ``test_set`` (created when it is new)."""
        cases = self.cases(user, message_ids=message_ids, session_ids=session_ids)
        name = " ".join(test_set.split())
        mine = [s for s in self.test_sets.list(user) if s.owner_id == user.id]
        existing = next((s for s in mine if s.name == name), None)
        if existing is None:
            saved = self.test_sets.create(user, test_set, cases)
        else:
            saved = self.test_sets.update(user, existing.id, cases=[*existing.cases, *cases])
        with self.db.session() as session:
            audit.record(
                session,
                TEST_SET_FROZEN,
                actor_id=user.id,
                actor_name=user.username,
                target_type="test_set",
                target_id=saved.id,
                details={
                    "cases": len(cases),
                    "messages": [c.origin.message_id for c in cases if c.origin],
                    "owners": sorted({c.origin.user_id for c in cases if c.origin}),
                },
                at=self.clock(),
            )
        return FreezeResult(saved, len(cases))

    # --- reading the conversation -------------------------------------------------------------

    def _turn_of(self, session: Session, user: UserView, message_id: int) -> Message:
        message = session.get(Message, message_id)
        if message is not None and message.role != "user" and message.reply_to_id is not None:
            message = session.get(Message, message.reply_to_id)  # a reply names its turn
        if message is None or message.role != "user":
            raise NotFound(MESSAGE_NOT_FOUND.format(id=message_id))
        self._visible(session, user, message.session_id, MESSAGE_NOT_FOUND.format(id=message_id))
        return message

    def _turns_of_session(self, session: Session, user: UserView, public_id: str) -> list[Message]:
        chat = session.scalar(select(ChatSession).where(ChatSession.public_id == public_id))
        if chat is None:
            raise NotFound(SESSION_NOT_FOUND)
        self._visible(session, user, chat.id, SESSION_NOT_FOUND)
        answered = select(Message.reply_to_id).where(
            Message.session_id == chat.id, Message.role == "assistant"
        )
        return list(
            session.scalars(
                select(Message)
                .where(
                    Message.session_id == chat.id,
                    Message.role == "user",
                    Message.id.in_(answered.scalar_subquery()),
                )
                .order_by(Message.id)
            )
        )

    def _visible(self, session: Session, user: UserView, chat_id: int, refusal: str) -> None:
        chat = session.get(ChatSession, chat_id)
        hidden = chat is None or chat.deleted_at is not None or chat.run_id is not None
        if hidden or (chat.user_id != user.id and not user.is_admin):  # type: ignore[union-attr]
            raise NotFound(refusal)

    def _case(self, session: Session, message: Message) -> TestCase:
        chat = session.get(ChatSession, message.session_id)
        assert chat is not None  # checked by _visible
        reply = session.scalar(
            select(Message)
            .where(Message.reply_to_id == message.id, Message.role == "assistant")
            .order_by(Message.id.desc())
            .limit(1)
        )
        if reply is None:
            raise ValidationError(NO_REPLY.format(id=message.id))
        persona = session.get(Persona, chat.persona_id)
        earlier = session.scalars(
            select(Message)
            .where(Message.session_id == chat.id, Message.id < message.id)
            .order_by(Message.id)
        )
        return TestCase(
            prompt=message.content,
            history=self._history_as_seen([*earlier, message]),
            baseline=Baseline(
                text=reply.content,
                message_id=reply.id,
                model=reply.model,
                latency_ms=reply.latency_ms,
                cost_usd=reply.cost_usd,
            ),
            origin=Origin(
                session_id=chat.public_id,
                message_id=message.id,
                persona=persona.name if persona else "",
                persona_version=reply.persona_version or chat.persona_version,
                user_id=chat.user_id,
            ),
        )

    def _history_as_seen(self, messages: Sequence[Message]) -> tuple[HistoryItem, ...]:
        """The messages before the last one that the model saw with it (the context budget)."""
        turns = build_turns(messages, self.budget_chars)
        return tuple(HistoryItem(TURN_ROLES[t.role], t.text) for t in turns[:-1])
