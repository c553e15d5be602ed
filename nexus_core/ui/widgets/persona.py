"""How a persona and the model that answers are shown: on the chat page, the Personas page and
wherever a persona is picked."""

from __future__ import annotations

import html

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.personas import PersonaView
from nexus_core.ui import show


def persona_header(persona: PersonaView, suffix: str = "") -> None:
    """The persona's avatar and name on a bar of its colour (escaped; colours are validated)."""
    name = html.escape(f"{show.avatar(persona.avatar)} {persona.name}{suffix}")
    st.html(
        f'<div style="border-left:6px solid {persona.color};padding:2px 10px;'
        f'font-weight:600">{name}</div>'
    )


def provider_label(ctx: AppContext) -> str:
    """How the UI names the model that answers (the simulated one says so)."""
    provider = ctx.provider
    return "Gemini" if provider.name == "gemini" else provider.label
