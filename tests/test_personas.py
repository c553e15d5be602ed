"""Personas: useful defaults, versioning on edit, validation."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from nexus_core.db.engine import Database
from nexus_core.db.models import Persona, PersonaVersion
from nexus_core.errors import NotFound, ValidationError
from nexus_core.personas import DEFAULT_PERSONAS, EMOJI_PRESENTATION, PersonaService, is_avatar


@pytest.fixture
def personas(db) -> PersonaService:  # type: ignore[no-untyped-def]
    return PersonaService(db)


def test_seeding_creates_four_or_more_distinct_personas_once(personas: PersonaService) -> None:
    assert personas.seed_defaults() == len(DEFAULT_PERSONAS) >= 4
    assert personas.seed_defaults() == 0
    listed = personas.list()
    assert len(listed) == len(DEFAULT_PERSONAS)
    instructions = {p.system_instruction for p in listed}
    assert len(instructions) == len(listed)
    assert all(len(p.system_instruction) > 200 for p in listed)


def test_editing_creates_a_new_version_and_keeps_the_old(personas: PersonaService) -> None:
    first = personas.create("Pirate", "Speak like a pirate.", avatar="🏴‍☠️", color="#111111")
    edited = personas.edit("Pirate", system_instruction="Speak like a polite pirate.")
    assert (first.version, edited.version) == (1, 2)
    old = personas.get_by_id(first.id, version=1)
    assert old.system_instruction == "Speak like a pirate."
    assert personas.get("Pirate").system_instruction == "Speak like a polite pirate."
    assert [v.version for v in personas.versions("Pirate")] == [1, 2]


def test_invalid_personas_are_refused_with_a_clear_message(personas: PersonaService) -> None:
    with pytest.raises(ValidationError, match="system instruction"):
        personas.create("Empty", "   ")
    with pytest.raises(ValidationError, match="hex colour"):
        personas.create("Red", "Be red.", color="red")
    personas.create("Twin", "One.")
    with pytest.raises(ValidationError, match="already exists"):
        personas.create("Twin", "Two.")
    with pytest.raises(NotFound):
        personas.edit("Ghost", description="boo")


def test_deactivated_personas_leave_the_list_but_stay_readable(personas: PersonaService) -> None:
    personas.create("Old", "Old persona.")
    personas.set_active("Old", False)
    assert "Old" not in [p.name for p in personas.list()]
    assert personas.get("Old").active is False


# With or without the emoji presentation selector (which asks for the colour picture).
VALID_AVATARS = ["🤖", "🤖" + EMOJI_PRESENTATION, "🧑‍💻", "✍️", "✍", "🇩🇪", "👍🏽", "🏳️‍🌈", "1️⃣"]
INVALID_AVATARS = [
    "app.py",
    "/etc/passwd",
    "https://evil.example/track.png",
    "data:image/png;base64,iVBORw0KGgo=",
    ":material/home:",
    "😀😀",
    "",
    "a",
    " 🤖",
    "🤖🤖" + EMOJI_PRESENTATION,
    "a" + EMOJI_PRESENTATION,
    EMOJI_PRESENTATION,
]


def test_an_avatar_is_exactly_one_emoji(personas: PersonaService) -> None:
    for number, avatar in enumerate(VALID_AVATARS):
        assert is_avatar(avatar)
        assert personas.create(f"Ok {number}", "Fine.", avatar=avatar).avatar == avatar
    personas.create("Target", "Fine.")
    for avatar in INVALID_AVATARS:
        with pytest.raises(ValidationError, match="The avatar is one emoji"):
            personas.create(f"Bad {avatar}", "Refused.", avatar=avatar)
        with pytest.raises(ValidationError, match="The avatar is one emoji"):
            personas.edit("Target", avatar=avatar)
    assert personas.get("Target").avatar == "🤖" and personas.get("Target").version == 1


def test_a_stored_avatar_that_is_not_an_emoji_is_shown_as_the_default(
    personas: PersonaService, db: Database
) -> None:
    created = personas.create("Legacy", "Old rows may hold anything.")
    with db.session() as session:  # as an older version of Nexus allowed: any 8 characters
        session.execute(update(Persona).values(avatar="app.py"))
        session.execute(update(PersonaVersion).values(avatar="https://x/y.png"))
    assert personas.get("Legacy").avatar == "🤖"
    assert personas.get_by_id(created.id, version=1).avatar == "🤖"
