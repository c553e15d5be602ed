"""Persona administration: versions that chats keep, instruction diffs, previews that store
nothing, and only admins changing personas."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nexus_core import audit
from nexus_core.ai.preview import preview_reply
from nexus_core.ai.simulated import SimulatedProvider, compose_answer
from nexus_core.app_context import AppContext
from nexus_core.db.models import Persona, PersonaVersion
from nexus_core.errors import PermissionDenied, ValidationError
from nexus_core.personas import instruction_diff
from tests.constants import PASSWORD


def test_instruction_diff_is_a_unified_diff_of_lines() -> None:
    old = "You are a pirate.\nSpeak in rhymes.\nBe brief."
    new = "You are a pirate.\nSpeak politely.\nBe brief."
    diff = instruction_diff(old, new, old_label="version 1", new_label="version 2")
    lines = diff.splitlines()
    assert lines[:2] == ["--- version 1", "+++ version 2"]
    assert "-Speak in rhymes." in lines and "+Speak politely." in lines
    assert " You are a pirate." in lines
    assert instruction_diff(old, old) == ""


def test_each_edit_is_a_new_version_and_sessions_keep_theirs(ctx: AppContext) -> None:
    ctx.users.create("ada", PASSWORD, role="admin")
    ctx.users.create("mia", PASSWORD)
    ada, mia = ctx.users.get("ada"), ctx.users.get("mia")
    ctx.personas.create("Pirate", "Speak like a pirate.", actor=ada)
    chat = ctx.chat.create_session(mia, "Pirate")
    ctx.personas.edit("Pirate", system_instruction="Speak like a polite pirate.", actor=ada)
    third = ctx.personas.edit("Pirate", temperature=0.2, actor=ada)
    assert third.version == 3
    assert [v.version for v in ctx.personas.versions("Pirate")] == [1, 2, 3]
    kept = ctx.chat.get_session(chat.public_id, mia)
    assert kept.persona_version == 1
    old = ctx.personas.get_by_id(kept.persona_id, kept.persona_version)
    assert old.system_instruction == "Speak like a pirate."
    edits = audit.for_target(ctx.db, "persona", str(third.id))
    assert [e.action for e in edits] == [
        audit.PERSONA_CREATED,
        audit.PERSONA_EDITED,
        audit.PERSONA_EDITED,
    ]
    assert {e.actor_name for e in edits} == {"ada"}
    assert edits[-1].details == {"version": 3, "fields": ["temperature"]}


def test_members_and_analysts_cannot_change_personas(ctx: AppContext) -> None:
    ctx.users.create("mia", PASSWORD)
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.personas.create("Pirate", "Speak like a pirate.")
    for name in ("mia", "ana"):
        actor = ctx.users.get(name)
        with pytest.raises(PermissionDenied, match="Only admins"):
            ctx.personas.create("Parrot", "Repeat things.", actor=actor)
        with pytest.raises(PermissionDenied):
            ctx.personas.edit("Pirate", description="arr", actor=actor)
        with pytest.raises(PermissionDenied):
            ctx.personas.set_active("Pirate", False, actor=actor)
    pirate = ctx.personas.get("Pirate")
    assert (pirate.version, pirate.active, pirate.description) == (1, True, "")
    assert [p.name for p in ctx.personas.list(include_inactive=True)] == ["Pirate"]


def test_deactivating_and_reactivating_are_each_audited_once(ctx: AppContext) -> None:
    ctx.users.create("ada", PASSWORD, role="admin")
    ada = ctx.users.get("ada")
    persona = ctx.personas.create("Old", "Old persona.", actor=ada)
    ctx.personas.set_active("Old", False, actor=ada)
    assert "Old" not in [p.name for p in ctx.personas.list()]
    assert ctx.personas.set_active("Old", True, actor=ada).active
    ctx.personas.set_active("Old", True, actor=ada)  # already active: nothing to record
    actions = [e.action for e in audit.for_target(ctx.db, "persona", str(persona.id))]
    assert actions == [audit.PERSONA_CREATED, audit.PERSONA_DEACTIVATED, audit.PERSONA_REACTIVATED]


def test_preview_answers_as_the_unsaved_persona_and_stores_nothing(ctx: AppContext) -> None:
    with ctx.db.session() as session:
        before = (
            session.scalar(select(func.count()).select_from(Persona)),
            session.scalar(select(func.count()).select_from(PersonaVersion)),
        )
    result = preview_reply(
        SimulatedProvider(latency_seconds=0),
        name="Draft",
        system_instruction="You are a ship's cook. Talk about food.",
        prompt="What is for dinner tonight?",
        temperature=0.3,
    )
    assert result.success and result.error is None
    assert result.content == compose_answer(
        "You are a ship's cook. Talk about food.", "What is for dinner tonight?"
    )
    assert "As a ship's cook," in result.content
    with ctx.db.session() as session:
        after = (
            session.scalar(select(func.count()).select_from(Persona)),
            session.scalar(select(func.count()).select_from(PersonaVersion)),
        )
    assert after == before


def test_preview_refuses_what_saving_would_refuse() -> None:
    provider = SimulatedProvider(latency_seconds=0)
    with pytest.raises(ValidationError, match="system instruction"):
        preview_reply(provider, name="Empty", system_instruction="  ", prompt="Hi")
    with pytest.raises(ValidationError, match="hex colour"):
        preview_reply(provider, name="Red", system_instruction="Be red.", prompt="Hi", color="red")
    with pytest.raises(ValidationError, match="sample message"):
        preview_reply(provider, name="Quiet", system_instruction="Be quiet.", prompt="  ")


def test_a_failing_provider_comes_back_as_an_unsuccessful_preview() -> None:
    result = preview_reply(
        SimulatedProvider(latency_seconds=0, failure_rate=1.0),
        name="Draft",
        system_instruction="Be helpful.",
        prompt="Hello?",
    )
    assert not result.success
    assert result.retryable and "failed on purpose" in str(result.error)
