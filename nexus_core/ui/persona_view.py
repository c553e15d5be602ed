"""Widgets of the Personas page: cards everyone browses, the admin editor with a live preview,
and the version history with a diff of the system instruction."""

from __future__ import annotations

import streamlit as st

from nexus_core.ai.preview import SAMPLE_PROMPT, preview_reply
from nexus_core.app_context import AppContext
from nexus_core.cost.budgets import BudgetView
from nexus_core.personas import MAX_INSTRUCTION_CHARS, MAX_NAME_CHARS, PersonaView, instruction_diff
from nexus_core.ui import notices, show, state
from nexus_core.ui.show import plain
from nexus_core.ui.widgets.persona import persona_header, provider_label
from nexus_core.ui.widgets.scorecard import scorecard_text
from nexus_core.users import UserView, pages_for

# Widget keys of the Personas page.
EDIT_PICK = "nexus_personas_edit_pick"
PENDING_PICK = "nexus_personas_pending_pick"
HISTORY_PICK = "nexus_personas_history_pick"
FIELD_PREFIX = "nexus_personas_field_"
FORM_PREFIX = "nexus_personas_form_"
ACTIVE_PREFIX = "nexus_personas_active_"

NEW_PERSONA = "➕ New persona"
NEW_SLOT = "new"
CARD_COLUMNS = 3
TEMPERATURE_STEP = 0.1
MAX_TEMPERATURE = 2.0
DEFAULTS = {
    "name": "",
    "description": "",
    "system_instruction": "",
    "avatar": "🤖",
    "color": "#4F46E5",
    "model": "",
    "temperature": 0.7,
}


def persona_cards(
    personas: list[PersonaView], budgets: dict[int, BudgetView] | None = None
) -> None:
    """A card per persona: avatar, name, description, version, budget and instruction."""
    budgets = budgets or {}
    columns = st.columns(CARD_COLUMNS)
    for index, persona in enumerate(personas):
        with columns[index % CARD_COLUMNS].container(border=True):
            persona_header(persona, "" if persona.active else " (inactive)")
            show.caption(persona.description or "No description.")
            model = persona.model or "default model"
            show.caption(f"v{persona.version} · {model} · temperature {persona.temperature:g}")
            if persona.id in budgets:
                show.caption(f"Budget: {budgets[persona.id].summary()}")
            with st.expander("System instruction"):
                st.text(persona.system_instruction)


# --- editing (admins) ---------------------------------------------------------------------


def _key(slot: str, field: str) -> str:
    return f"{FIELD_PREFIX}{slot}_{field}"


def _form_values(slot: str) -> dict[str, object]:
    values = {
        field: st.session_state.get(_key(slot, field), default)
        for field, default in DEFAULTS.items()
    }
    values["model"] = str(values["model"]).strip() or None
    return values


def persona_editor(ctx: AppContext, actor: UserView, personas: list[PersonaView]) -> None:
    """Pick a persona (or a new one), change its fields, preview a reply, save a new version."""
    if PENDING_PICK in st.session_state:
        st.session_state[EDIT_PICK] = st.session_state.pop(PENDING_PICK)
    by_name = {p.name: p for p in personas}
    choice = st.selectbox("Persona to edit", [NEW_PERSONA, *by_name], key=EDIT_PICK)
    current = by_name.get(choice or "")
    slot = str(current.id) if current else NEW_SLOT
    start = DEFAULTS if current is None else {**DEFAULTS, **_fields_of(current)}
    with st.form(FORM_PREFIX + slot):
        st.text_input(
            "Name",
            value=str(start["name"]),
            key=_key(slot, "name"),
            max_chars=MAX_NAME_CHARS,
            disabled=current is not None,
            help="The name cannot change: sessions and links refer to it.",
        )
        st.text_input("Description", value=str(start["description"]), key=_key(slot, "description"))
        st.text_area(
            "System instruction",
            value=str(start["system_instruction"]),
            key=_key(slot, "system_instruction"),
            height=220,
            max_chars=MAX_INSTRUCTION_CHARS,
        )
        avatar, color, temperature = st.columns(3)
        avatar.text_input(
            "Avatar (one emoji)", value=str(start["avatar"]), key=_key(slot, "avatar"), max_chars=8
        )
        color.color_picker("Colour", value=str(start["color"]), key=_key(slot, "color"))
        temperature.slider(
            "Temperature",
            0.0,
            MAX_TEMPERATURE,
            value=float(start["temperature"]),  # type: ignore[arg-type]
            step=TEMPERATURE_STEP,
            key=_key(slot, "temperature"),
        )
        st.text_input(
            "Model (Gemini only; empty for the default)",
            value=str(start["model"] or ""),
            key=_key(slot, "model"),
        )
        prompt = st.text_input("Sample message for the preview", value=SAMPLE_PROMPT)
        preview, save = st.columns(2)
        wants_preview = preview.form_submit_button("Preview reply", icon="👀")
        save.form_submit_button(
            "Create persona" if current is None else "Save new version",
            type="primary",
            icon="💾",
            on_click=_save,
            args=(ctx, actor, current, slot),
        )
    if wants_preview:
        _show_preview(ctx, _form_values(slot), prompt)
    if current is not None:
        st.button(
            "Deactivate" if current.active else "Reactivate",
            key=ACTIVE_PREFIX + slot,
            icon="🚫" if current.active else "♻️",
            on_click=_set_active,
            args=(ctx, actor, current.name, not current.active),
            help="Inactive personas cannot start new chats; existing chats keep working.",
        )


def _fields_of(persona: PersonaView) -> dict[str, object]:
    return {
        "name": persona.name,
        "description": persona.description,
        "system_instruction": persona.system_instruction,
        "avatar": persona.avatar,
        "color": persona.color,
        "model": persona.model or "",
        "temperature": persona.temperature,
    }


def _show_preview(ctx: AppContext, values: dict[str, object], prompt: str) -> None:
    with st.spinner(plain(f"Asking {provider_label(ctx)}…")):
        result = notices.act(
            lambda: preview_reply(ctx.provider, prompt=prompt, **values)  # type: ignore[arg-type]
        )
    if result is None:
        return
    show.caption(f"Preview from {provider_label(ctx)} · not saved")
    with st.chat_message("assistant", avatar=show.avatar(str(values["avatar"]))):
        if result.success:
            show.markdown(result.content)
        else:
            show.error(result.error)


def _save(ctx: AppContext, actor: UserView, current: PersonaView | None, slot: str) -> None:
    values = _form_values(slot)
    if current is None:
        name = str(values.pop("name"))
        created = notices.act(
            lambda: ctx.personas.create(name, actor=actor, **values),  # type: ignore[arg-type]
            success=f"Created {name.strip()} (version 1).",
            key=state.ADMIN_NOTICE,
        )
        if created is not None:
            st.session_state[PENDING_PICK] = name.strip()
            for field in DEFAULTS:
                st.session_state.pop(_key(slot, field), None)
        return
    values.pop("name")
    before = _fields_of(current)
    before["model"] = current.model
    changes = {field: value for field, value in values.items() if value != before[field]}
    if not changes:
        notices.leave(
            state.ADMIN_NOTICE, "Nothing changed, so no new version was saved.", kind="error"
        )
        return
    notices.act(
        lambda: ctx.personas.edit(current.name, actor=actor, **changes),
        success=f"Saved {current.name} version {current.version + 1}.",
        key=state.ADMIN_NOTICE,
    )


def _set_active(ctx: AppContext, actor: UserView, name: str, active: bool) -> None:
    notices.act(
        lambda: ctx.personas.set_active(name, active, actor=actor),
        success=f"{name} is {'active again' if active else 'deactivated'}.",
        key=state.ADMIN_NOTICE,
    )


# --- history ------------------------------------------------------------------------------


def version_history(ctx: AppContext, user: UserView, personas: list[PersonaView]) -> None:
    """Every version of one persona, newest first, with what changed in its instruction and,
    for those who run evals, the version's latest eval scorecard."""
    names = [p.name for p in personas]
    name = st.selectbox("Persona", names, key=HISTORY_PICK)
    if name is None:
        return
    versions = ctx.personas.versions(name)
    for newer, older in zip(reversed(versions), [*reversed(versions[:-1]), None], strict=True):
        when = newer.created_at.strftime("%Y-%m-%d %H:%M UTC") if newer.created_at else ""
        with st.expander(
            f"Version {newer.version:d} · {plain(when)}", expanded=newer is versions[-1]
        ):
            if "evals" in pages_for(user, env=ctx.settings.env):
                _scorecard(ctx, user, name, newer.version)
            if older is None:
                st.caption("First version.")
                st.text(newer.system_instruction)
                continue
            changed = [f for f in DEFAULTS if f != "name" and _differs(older, newer, f)]
            show.caption("Changed: " + (", ".join(changed) if changed else "nothing"))
            diff = instruction_diff(
                older.system_instruction,
                newer.system_instruction,
                old_label=f"version {older.version}",
                new_label=f"version {newer.version}",
            )
            if diff:
                st.code(diff, language="diff")
            else:
                st.caption("The system instruction did not change.")


def _scorecard(ctx: AppContext, user: UserView, persona: str, version: int) -> None:
    """The version's newest finished eval run, in one line, with the run it came from."""
    run = ctx.evals.latest_for_version(user, persona, version)
    if run is None or run.summary is None:
        show.caption("No eval run of this version yet (Evals page).")
        return
    show.info(f"Eval of {run.test_set_name} against {run.baseline}: {scorecard_text(run.summary)}")
    show.caption(f"Run {run.id} · judge {run.judge}")


def _differs(older: PersonaView, newer: PersonaView, field: str) -> bool:
    return getattr(older, field) != getattr(newer, field)
