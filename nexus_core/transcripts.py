"""Session export as Markdown or JSON: the session, its persona version, messages and feedback.

JSON is ``{"session": {...}, "persona": {...}, "messages": [...], "feedback": [...]}`` with
messages oldest first (user messages, replies and error bubbles alike). Every export is audited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import ChatSession, Feedback, Message, User
from nexus_core.errors import NotFound, ValidationError
from nexus_core.ops.events import format_ts
from nexus_core.personas import PersonaService
from nexus_core.users import UserView

FORMATS = {"md": "text/markdown", "json": "application/json"}
ROLE_LABELS = {"user": "You", "assistant": "Assistant", "error": "Error"}


@dataclass(frozen=True)
class ExportFile:
    """A rendered export ready to download or print."""

    filename: str
    mime: str
    content: str


def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value else None


def session_document(db: Database, public_id: str, actor: UserView | None) -> dict[str, Any]:
    """The export as a dict; ``actor`` None means the server operator (CLI)."""
    with db.session() as session:
        chat = session.scalar(
            select(ChatSession).where(
                ChatSession.public_id == public_id, ChatSession.deleted_at.is_(None)
            )
        )
        if chat is None or (actor is not None and chat.user_id != actor.id and not actor.is_admin):
            raise NotFound("That chat session does not exist or is not yours.")
        owner = session.get(User, chat.user_id)
        messages = session.scalars(
            select(Message).where(Message.session_id == chat.id).order_by(Message.id)
        ).all()
        feedback = session.scalars(
            select(Feedback).where(Feedback.session_id == chat.id).order_by(Feedback.id)
        ).all()
        document: dict[str, Any] = {
            "session": {
                "id": chat.public_id,
                "title": chat.title,
                "status": chat.status,
                "owner": owner.username if owner else None,
                "created_at": _ts(chat.created_at),
                "updated_at": _ts(chat.updated_at),
            },
            "messages": [
                {
                    "id": m.id,
                    "role": m.role,
                    "content": m.content,
                    "created_at": _ts(m.created_at),
                    "reply_to_id": m.reply_to_id,
                    "model": m.model,
                    "provider": m.provider,
                    "persona_version": m.persona_version,
                    "latency_ms": m.latency_ms,
                    "ttft_ms": m.ttft_ms,
                    "tokens_in": m.tokens_in,
                    "tokens_out": m.tokens_out,
                }
                for m in messages
            ],
            "feedback": [
                {
                    "id": f.id,
                    "message_id": f.message_id,
                    "rating": {1: "up", 0: "down"}.get(f.rating) if f.rating is not None else None,
                    "category": f.category,
                    "priority": f.priority,
                    "status": f.status,
                    "description": f.description,
                    "created_at": _ts(f.created_at),
                }
                for f in feedback
            ],
        }
        persona_id, version = chat.persona_id, chat.persona_version
    persona = PersonaService(db).get_by_id(persona_id, version)
    document["persona"] = {
        "name": persona.name,
        "version": persona.version,
        "avatar": persona.avatar,
        "color": persona.color,
        "model": persona.model,
        "temperature": persona.temperature,
        "system_instruction": persona.system_instruction,
    }
    return document


def render_markdown(document: dict[str, Any]) -> str:
    """The export as a readable Markdown transcript."""
    s, p = document["session"], document["persona"]
    lines = [
        f"# {s['title']}",
        "",
        f"- Session: `{s['id']}` ({s['status']}), owner {s['owner']}",
        f"- Persona: {p['avatar']} {p['name']} (version {p['version']})",
        f"- Created: {s['created_at']} · Last activity: {s['updated_at']}",
        "",
    ]
    rated = {f["message_id"]: f for f in document["feedback"] if f["message_id"]}
    for m in document["messages"]:
        lines.append(f"## {ROLE_LABELS.get(m['role'], m['role'])} · {m['created_at']}")
        lines.append("")
        lines.append(m["content"])
        lines.append("")
        if m["role"] == "assistant" and m["latency_ms"] is not None:
            lines.append(
                f"_{m['model']} · {m['latency_ms']:.0f} ms · "
                f"{m['tokens_in']} → {m['tokens_out']} tokens_"
            )
            lines.append("")
        if m["id"] in rated:
            f = rated[m["id"]]
            verdict = {"up": "👍", "down": "👎"}.get(f["rating"] or "", "")
            note = (
                f" — {f['category']}/{f['priority']}: {f['description']}"
                if f["description"]
                else ""
            )
            lines.append(f"> Feedback {verdict}{note}")
            lines.append("")
    general = [f for f in document["feedback"] if not f["message_id"]]
    if general:
        lines.append("## Feedback on the session")
        lines.extend(f"- {f['category']}/{f['priority']}: {f['description']}" for f in general)
    return "\n".join(lines).rstrip() + "\n"


def export_session(db: Database, public_id: str, fmt: str, *, actor: UserView | None) -> ExportFile:
    """Render a session as ``md`` or ``json`` and audit the export."""
    if fmt not in FORMATS:
        raise ValidationError(f"Unknown export format {fmt!r}; choose md or json.")
    document = session_document(db, public_id, actor)
    if fmt == "json":
        content = json.dumps(document, ensure_ascii=False, indent=2)
    else:
        content = render_markdown(document)
    with db.session() as session:
        audit.record(
            session,
            audit.SESSION_EXPORTED,
            actor_id=actor.id if actor else None,
            actor_name=actor.username if actor else "nexus-cli",
            target_type="session",
            target_id=public_id,
            details={"format": fmt},
        )
    return ExportFile(f"nexus-session-{public_id[:8]}.{fmt}", FORMATS[fmt], content)
