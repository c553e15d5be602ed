"""Personas: a name, an avatar, a colour and a system instruction, versioned on every edit."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime

import emoji
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import Persona, PersonaVersion
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserView

COLOR_PATTERN = re.compile(r"^#[0-9A-Fa-f]{6}$")
MAX_INSTRUCTION_CHARS = 20_000
MAX_NAME_CHARS = 80
DEFAULT_AVATAR = "🤖"
# Asks for an emoji's colour picture: without it a browser may draw a lone emoji code point from
# the text font if that font has a glyph for it (Streamlit's Source Sans has a small monochrome 🤖).
EMOJI_PRESENTATION = "\N{VARIATION SELECTOR-16}"
AVATAR_MESSAGE = (
    "The avatar is one emoji (such as 🤖 or 🧑‍💻), not {value!r}: Streamlit would read other text "
    "as the path or address of an image."
)
EDITABLE_FIELDS = ("description", "system_instruction", "avatar", "color", "model", "temperature")

DEFAULT_PERSONAS: tuple[dict[str, object], ...] = (
    {
        "name": "Nexus Assistant",
        "avatar": "🤖",
        "color": "#4F46E5",
        "description": "A careful general assistant for everyday questions and drafting.",
        "system_instruction": (
            "You are Nexus Assistant, the general-purpose helper of an internal company team. "
            "Answer clearly and concisely, lead with the answer, then give the reasoning or steps. "
            "Use Markdown lists and code blocks where they help. When a question is ambiguous, "
            "state the assumption you make. When you do not know, say so and suggest how to find "
            "out; never invent facts, numbers, links or citations."
        ),
        "temperature": 0.7,
    },
    {
        "name": "Code Reviewer",
        "avatar": "🧑‍💻",
        "color": "#059669",
        "description": "Reviews code for bugs, security and readability; suggests concrete fixes.",
        "system_instruction": (
            "You are a senior software engineer doing code review. For the code or diff you "
            "are given, list findings ordered by severity: correctness bugs, security issues "
            "(injection, secrets, unsafe deserialisation), concurrency and resource leaks, then "
            "readability. For each finding quote the line, explain the risk in one sentence "
            "and show the corrected code. Praise what is done well in one line at the end. "
            "Do not rewrite working code for taste."
        ),
        "temperature": 0.2,
    },
    {
        "name": "Product Analyst",
        "avatar": "📊",
        "color": "#D97706",
        "description": "Turns user feedback and metrics into insights and prioritised actions.",
        "system_instruction": (
            "You are a product analyst. Given user feedback, metrics or a product question, find "
            "the patterns, quantify them where the data allows, and separate evidence from "
            "hypothesis. Finish with a short prioritised list of actions, each with the expected "
            "impact and how to measure it. Prefer tables for comparisons. Ask for the data you "
            "would need when the evidence is thin."
        ),
        "temperature": 0.4,
    },
    {
        "name": "Technical Writer",
        "avatar": "✍️",
        "color": "#DB2777",
        "description": "Writes and edits documentation, release notes and announcements.",
        "system_instruction": (
            "You are a technical writer. Produce documentation that a busy reader can scan: a "
            "one-sentence summary first, then task-oriented sections with numbered steps, "
            "examples and the expected result of each step. Use plain words, active voice and "
            "consistent terms. When editing, keep the author's meaning and list what you changed."
        ),
        "temperature": 0.5,
    },
    {
        "name": "Support Triage",
        "avatar": "🛟",
        "color": "#0891B2",
        "description": "Classifies incoming issues and drafts a first reply to the reporter.",
        "system_instruction": (
            "You triage support requests. For each request give: a category (bug, performance, "
            "ux, content, suggestion, other), a priority (low, medium, high, critical) with a "
            "one-line justification, the information still missing to reproduce it, and a short, "
            "friendly first reply to the reporter that sets expectations without promising dates."
        ),
        "temperature": 0.3,
    },
)


@dataclass(frozen=True)
class PersonaView:
    """One version of a persona as plain data."""

    id: int
    name: str
    description: str
    system_instruction: str
    avatar: str
    color: str
    model: str | None
    temperature: float
    version: int
    active: bool
    created_at: datetime | None = None


def _view(p: Persona, v: PersonaVersion | None = None) -> PersonaView:
    src = v or p
    return PersonaView(
        id=p.id,
        name=p.name,
        description=src.description,
        system_instruction=src.system_instruction,
        avatar=shown_avatar(src.avatar),
        color=src.color,
        model=src.model,
        temperature=src.temperature,
        version=v.version if v else p.version,
        active=p.active,
        created_at=src.created_at,
    )


def is_avatar(text: str) -> bool:
    """Whether ``text`` is exactly one emoji (flags, skin tones and ZWJ sequences included),
    with or without the emoji presentation selector after it."""
    return emoji.is_emoji(text) or emoji.is_emoji(text.removesuffix(EMOJI_PRESENTATION))


def with_colour_presentation(avatar: str) -> str:
    """One emoji as a browser draws it in colour: a lone code point gets the emoji presentation
    selector (sequences, and emoji that already end in it, are left as they are)."""
    return avatar + EMOJI_PRESENTATION if len(avatar) == 1 else avatar


def shown_avatar(text: str | None) -> str:
    """The avatar to draw: the stored one when it is an emoji, else the default.

    ``st.chat_message`` reads any other text as an image path or URL: a stored ``app.py`` would
    break every chat with the persona, and a URL would load an outside image.
    """
    return text if text and is_avatar(text) else DEFAULT_AVATAR


def validate_fields(fields: dict[str, object]) -> None:
    """Refuse an empty or over-long instruction, a bad colour or avatar, or a wild temperature."""
    instruction = str(fields.get("system_instruction", "")).strip()
    if not instruction:
        raise ValidationError("A persona needs a system instruction.")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ValidationError(
            f"The system instruction is longer than {MAX_INSTRUCTION_CHARS} characters."
        )
    color = str(fields.get("color", "#4F46E5"))
    if not COLOR_PATTERN.match(color):
        raise ValidationError(f"Colour {color!r} is not a hex colour like #4F46E5.")
    avatar = str(fields.get("avatar", DEFAULT_AVATAR))
    if not is_avatar(avatar):
        raise ValidationError(AVATAR_MESSAGE.format(value=avatar[:40]))
    temperature = float(fields.get("temperature", 0.7))  # type: ignore[arg-type]
    if not 0.0 <= temperature <= 2.0:
        raise ValidationError("Temperature is between 0 and 2.")


def require_editor(actor: UserView | None) -> None:
    """Refuse a signed-in non-admin; ``actor=None`` (the CLI, seeding) may edit."""
    if actor is not None and not actor.is_admin:
        raise PermissionDenied("Only admins can create, edit or deactivate personas.")


class PersonaService:
    """Browse, create, edit (new version each time) and deactivate personas."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _get(self, session: Session, name: str) -> Persona:
        persona = session.scalar(select(Persona).where(Persona.name == name))
        if persona is None:
            raise NotFound(f"No persona named {name!r}.")
        return persona

    def list(self, *, include_inactive: bool = False) -> list[PersonaView]:
        """Personas by name; active ones only unless asked."""
        query = select(Persona).order_by(Persona.name)
        if not include_inactive:
            query = query.where(Persona.active)
        with self.db.session(read_only=True) as session:
            return [_view(p) for p in session.scalars(query)]

    def get(self, name: str) -> PersonaView:
        """The current version of the persona called ``name``."""
        with self.db.session(read_only=True) as session:
            return _view(self._get(session, name))

    def get_by_id(self, persona_id: int, version: int | None = None) -> PersonaView:
        """A persona by id, at ``version`` (default: current)."""
        with self.db.session() as session:
            persona = session.get(Persona, persona_id)
            if persona is None:
                raise NotFound(f"No persona with id {persona_id}.")
            if version is None or version == persona.version:
                return _view(persona)
            stored = session.scalar(
                select(PersonaVersion).where(
                    PersonaVersion.persona_id == persona_id, PersonaVersion.version == version
                )
            )
            if stored is None:
                raise NotFound(f"Persona {persona.name!r} has no version {version}.")
            return _view(persona, stored)

    def versions(self, name: str) -> list[PersonaView]:
        """Every saved version of a persona, oldest first."""
        with self.db.session() as session:
            persona = self._get(session, name)
            return [_view(persona, v) for v in persona.versions]

    def create(
        self,
        name: str,
        system_instruction: str,
        *,
        description: str = "",
        avatar: str = "🤖",
        color: str = "#4F46E5",
        model: str | None = None,
        temperature: float = 0.7,
        actor: UserView | None = None,
    ) -> PersonaView:
        """Create a persona at version 1."""
        require_editor(actor)
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValidationError(f"A persona name has 1–{MAX_NAME_CHARS} characters.")
        fields = {
            "description": description.strip(),
            "system_instruction": system_instruction.strip(),
            "avatar": avatar,
            "color": color,
            "model": model or None,
            "temperature": float(temperature),
        }
        validate_fields(fields)
        try:
            with self.db.session() as session:
                persona = Persona(name=name, version=1, active=True, **fields)
                session.add(persona)
                session.flush()
                session.add(
                    PersonaVersion(
                        persona_id=persona.id,
                        version=1,
                        created_by_id=actor.id if actor else None,
                        **fields,
                    )
                )
                audit.record(
                    session,
                    audit.PERSONA_CREATED,
                    target_type="persona",
                    target_id=persona.id,
                    actor_id=actor.id if actor else None,
                    actor_name=actor.username if actor else None,
                    details={"name": name},
                )
                return _view(persona)
        except IntegrityError as exc:
            raise ValidationError(f"A persona named {name!r} already exists.") from exc

    def edit(self, name: str, *, actor: UserView | None = None, **changes: object) -> PersonaView:
        """Save a new version with ``changes``; earlier versions stay readable."""
        require_editor(actor)
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValidationError(f"Cannot edit {', '.join(sorted(unknown))} of a persona.")
        with self.db.session() as session:
            persona = self._get(session, name)
            fields = {f: getattr(persona, f) for f in EDITABLE_FIELDS}
            fields.update(changes)
            validate_fields(fields)
            persona.version += 1
            for key, value in fields.items():
                setattr(persona, key, value)
            session.add(
                PersonaVersion(
                    persona_id=persona.id,
                    version=persona.version,
                    created_by_id=actor.id if actor else None,
                    **fields,
                )
            )
            audit.record(
                session,
                audit.PERSONA_EDITED,
                target_type="persona",
                target_id=persona.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
                details={"version": persona.version, "fields": sorted(changes)},
            )
            return _view(persona)

    def set_active(self, name: str, active: bool, *, actor: UserView | None = None) -> PersonaView:
        """Deactivate (hide from new chats) or reactivate a persona."""
        require_editor(actor)
        with self.db.session() as session:
            persona = self._get(session, name)
            was_active, persona.active = persona.active, active
            if active != was_active:
                audit.record(
                    session,
                    audit.PERSONA_REACTIVATED if active else audit.PERSONA_DEACTIVATED,
                    target_type="persona",
                    target_id=persona.id,
                    actor_id=actor.id if actor else None,
                    actor_name=actor.username if actor else None,
                )
            return _view(persona)

    def seed_defaults(self) -> int:
        """Create the default personas that do not exist yet; returns how many were created."""
        with self.db.session() as session:
            existing = set(session.scalars(select(Persona.name)))
        created = 0
        for spec in DEFAULT_PERSONAS:
            if spec["name"] in existing:
                continue
            self.create(**spec)  # type: ignore[arg-type]
            created += 1
        return created


DIFF_CONTEXT_LINES = 3


def instruction_diff(
    old: str, new: str, *, old_label: str = "before", new_label: str = "after"
) -> str:
    """A unified diff of two system instructions, line by line ("" when they are equal)."""
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=old_label,
        tofile=new_label,
        n=DIFF_CONTEXT_LINES,
        lineterm="",
    )
    return "\n".join(lines)
