"""Chat sessions and their messages: plain arguments in, plain objects out.

Every message is a database row the moment it exists, so nothing is lost on a refresh, a closed
tab or a provider outage. Sessions of prompt runs (``run_id`` set: one variant's answer in a
comparison or a test set) are hidden here: not listed, not opened, not written to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, exists, insert, select, update
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import ChatSession, Message, Persona
from nexus_core.errors import NotFound, ValidationError
from nexus_core.privacy.redaction import HeldOriginals, Redactor
from nexus_core.users import UserView

TITLE_CHARS = 60
MAX_TITLE_CHARS = 200
SESSION_LIST_LIMIT = 200
SESSION_NOT_FOUND = "That chat session does not exist or is not yours."
# C0/C1 control characters except tab, newline and carriage return.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# ``add_user_message`` runs on every message, so its statements are built once (see
# ``nexus_core.ai.job_statements``): a session the user may write to, whether it has messages yet...
WRITABLE_SESSION = select(
    ChatSession.id,
    ChatSession.user_id,
    ChatSession.status,
    exists().where(Message.session_id == ChatSession.id).label("has_messages"),
).where(
    ChatSession.public_id == bindparam("public_id"),
    ChatSession.deleted_at.is_(None),
    ChatSession.run_id.is_(None),
)
# ...the message, and the session's new title and time (the columns given as parameters).
INSERT_MESSAGE = insert(Message)
UPDATE_SESSION = update(ChatSession).where(ChatSession.id == bindparam("chat_id"))


@dataclass(frozen=True)
class SessionView:
    """A chat session as plain data."""

    id: int
    public_id: str
    user_id: int
    persona_id: int
    persona_version: int
    title: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageView:
    """A message as plain data; replies carry model, timing and token counts."""

    id: int
    session_id: int
    role: str
    content: str
    created_at: datetime
    reply_to_id: int | None = None
    model: str | None = None
    provider: str | None = None
    persona_version: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None  # None: unpriced (or not a reply)
    finish_reason: str | None = None


def session_view(s: ChatSession) -> SessionView:
    """Copy a ``ChatSession`` row into a ``SessionView``."""
    return SessionView(
        id=s.id,
        public_id=s.public_id,
        user_id=s.user_id,
        persona_id=s.persona_id,
        persona_version=s.persona_version,
        title=s.title,
        status=s.status,
        created_at=s.created_at,
        updated_at=s.updated_at,
    )


def message_view(m: Message) -> MessageView:
    """Copy a ``Message`` row into a ``MessageView``."""
    return MessageView(
        id=m.id,
        session_id=m.session_id,
        role=m.role,
        content=m.content,
        created_at=m.created_at,
        reply_to_id=m.reply_to_id,
        model=m.model,
        provider=m.provider,
        persona_version=m.persona_version,
        latency_ms=m.latency_ms,
        ttft_ms=m.ttft_ms,
        tokens_in=m.tokens_in,
        tokens_out=m.tokens_out,
        cached_input_tokens=m.cached_input_tokens,
        reasoning_tokens=m.reasoning_tokens,
        cost_usd=m.cost_usd,
        finish_reason=m.finish_reason,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def clean_message(text: str, max_chars: int) -> str:
    """Strip control characters and surrounding space; refuse empty or over-long messages."""
    cleaned = CONTROL_CHARS.sub("", text).strip()
    if not cleaned:
        raise ValidationError("The message is empty; type something to send.")
    if len(cleaned) > max_chars:
        raise ValidationError(
            f"The message has {len(cleaned):,} characters; the limit is {max_chars:,}. "
            "Shorten it or split it into several messages."
        )
    return cleaned


def title_from(text: str) -> str:
    """A session title from the first message: its first line, shortened at a word."""
    line = text.strip().splitlines()[0] if text.strip() else "New chat"
    if len(line) <= TITLE_CHARS:
        return line
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


class ChatService:
    """Create sessions and store messages for their owners."""

    def __init__(
        self,
        db: Database,
        *,
        max_message_chars: int = 8000,
        clock: Clock = utc_now,
        redactor: Redactor | None = None,
        originals: HeldOriginals | None = None,
    ) -> None:
        self.db = db
        self.max_message_chars = max_message_chars
        self.clock = clock
        self.redactor = redactor or Redactor()  # NEXUS_REDACT: masked before it is stored
        self.originals = originals  # where the typed text waits for the model, if it may

    def _owned(
        self, session: Session, public_id: str, user: UserView, *, write: bool = False
    ) -> ChatSession:
        """The session if the user owns it; admins may read any. Same message either way."""
        chat = session.scalar(
            select(ChatSession).where(
                ChatSession.public_id == public_id,
                ChatSession.deleted_at.is_(None),
                ChatSession.run_id.is_(None),
            )
        )
        allowed = chat is not None and (chat.user_id == user.id or (user.is_admin and not write))
        if not allowed:
            raise NotFound(SESSION_NOT_FOUND)
        assert chat is not None
        return chat

    def create_session(self, user: UserView, persona_name: str) -> SessionView:
        """Start a session with the current version of an active persona."""
        with self.db.session() as session:
            persona = session.scalar(
                select(Persona).where(Persona.name == persona_name, Persona.active)
            )
            if persona is None:
                raise NotFound(f"No active persona named {persona_name!r}.")
            now = self.clock()
            chat = ChatSession(
                user_id=user.id,
                persona_id=persona.id,
                persona_version=persona.version,
                created_at=now,
                updated_at=now,
            )
            session.add(chat)
            session.flush()
            audit.record(
                session,
                audit.SESSION_CREATED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="session",
                target_id=chat.public_id,
                details={"persona": persona.name, "version": persona.version},
                at=now,
            )
            return session_view(chat)

    def list_sessions(
        self, user: UserView, *, search: str = "", include_archived: bool = False
    ) -> list[SessionView]:
        """The user's own chat sessions, newest activity first, optionally filtered by title."""
        query = (
            select(ChatSession)
            .where(
                ChatSession.user_id == user.id,
                ChatSession.deleted_at.is_(None),
                ChatSession.run_id.is_(None),
            )
            .order_by(ChatSession.updated_at.desc(), ChatSession.id.desc())
            .limit(SESSION_LIST_LIMIT)
        )
        if not include_archived:
            query = query.where(ChatSession.status == "active")
        if search.strip():
            query = query.where(
                ChatSession.title.ilike(f"%{_escape_like(search.strip())}%", escape="\\")
            )
        with self.db.session(read_only=True) as session:
            return [session_view(s) for s in session.scalars(query)]

    def rename(self, public_id: str, user: UserView, title: str) -> SessionView:
        """Give a session a new title."""
        title = CONTROL_CHARS.sub("", title).strip()
        if not title or len(title) > MAX_TITLE_CHARS:
            raise ValidationError(f"A title has 1–{MAX_TITLE_CHARS} characters.")
        with self.db.session() as session:
            chat = self._owned(session, public_id, user, write=True)
            old, chat.title, chat.updated_at = chat.title, title, self.clock()
            audit.record(
                session,
                audit.SESSION_RENAMED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="session",
                target_id=public_id,
                details={"from": old, "to": title},
                at=chat.updated_at,
            )
            return session_view(chat)

    def set_archived(self, public_id: str, user: UserView, archived: bool) -> SessionView:
        """Archive (hide from the list, read-only) or unarchive a session."""
        with self.db.session() as session:
            chat = self._owned(session, public_id, user, write=True)
            chat.status = "archived" if archived else "active"
            chat.updated_at = self.clock()
            audit.record(
                session,
                audit.SESSION_ARCHIVED if archived else audit.SESSION_UNARCHIVED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="session",
                target_id=public_id,
                at=chat.updated_at,
            )
            return session_view(chat)

    def delete(self, public_id: str, user: UserView) -> None:
        """Soft-delete a session: it disappears for everyone but stays in the database."""
        with self.db.session() as session:
            chat = self._owned(session, public_id, user, write=True)
            chat.deleted_at = self.clock()
            audit.record(
                session,
                audit.SESSION_DELETED,
                actor_id=user.id,
                actor_name=user.username,
                target_type="session",
                target_id=public_id,
                details={"title": chat.title},
                at=chat.deleted_at,
            )

    def get_session(self, public_id: str, user: UserView) -> SessionView:
        """A session the user owns (admins may read any)."""
        with self.db.session(read_only=True) as session:
            return session_view(self._owned(session, public_id, user))

    def add_user_message(self, public_id: str, user: UserView, text: str) -> MessageView:
        """Store a user message (cleaned and checked); the first one names the session."""
        with self.db.transaction() as conn:
            return self.add_user_message_in(conn, public_id, user, text)

    def add_user_message_in(
        self, conn: Connection, public_id: str, user: UserView, text: str
    ) -> MessageView:
        """Like ``add_user_message``, in the caller's transaction (with the job that answers it)."""
        typed = clean_message(text, self.max_message_chars)
        content = self.redactor.redact(typed)
        chat = conn.execute(WRITABLE_SESSION, {"public_id": public_id}).one_or_none()
        if chat is None or chat.user_id != user.id:
            raise NotFound(SESSION_NOT_FOUND)
        if chat.status != "active":
            raise ValidationError("This session is archived; unarchive it to continue.")
        now = self.clock()
        values = {"session_id": chat.id, "role": "user", "content": content, "created_at": now}
        message_id = conn.execute(INSERT_MESSAGE, values).inserted_primary_key[0]
        if content != typed and self.originals is not None:
            self.originals.hold(message_id, typed)
        changes = {"chat_id": chat.id, "updated_at": now}
        if not chat.has_messages:
            changes["title"] = title_from(content)
        conn.execute(UPDATE_SESSION, changes)
        return MessageView(message_id, chat.id, "user", content, now)

    def messages(self, public_id: str, user: UserView) -> list[MessageView]:
        """The session's messages, oldest first."""
        with self.db.session(read_only=True) as session:
            chat = self._owned(session, public_id, user)
            rows = session.scalars(
                select(Message).where(Message.session_id == chat.id).order_by(Message.id)
            )
            return [message_view(m) for m in rows]

    def message(self, message_id: int, user: UserView) -> MessageView:
        """One message of a session the user owns."""
        with self.db.session(read_only=True) as session:
            message = session.get(Message, message_id)
            chat = session.get(ChatSession, message.session_id) if message else None
            if (
                message is None
                or chat is None
                or chat.deleted_at is not None
                or (chat.user_id != user.id and not user.is_admin)
            ):
                raise NotFound("That message does not exist or is not yours.")
            return message_view(message)
