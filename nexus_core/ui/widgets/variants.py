"""Variant pickers: a comparison and a test-set run ask for their variants alike."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.compare.variants import VariantSpec

DEFAULT = "(default)"


def variant_pickers(ctx: AppContext, prefix: str, count: int) -> list[VariantSpec]:
    """``count`` variant pickers side by side: persona, version, provider, model, temperature."""
    personas = ctx.personas.list()
    names = [p.name for p in personas]
    choices = ctx.compare.provider_choices()
    providers = {c.name: c for c in choices}
    specs = []
    for index, column in enumerate(st.columns(count)):
        key = f"{prefix}{index}_"
        with column:
            st.markdown(f"**Variant {ord('A') + index:c}**")
            name = st.selectbox(
                "Persona", names, index=min(index, len(names) - 1), key=key + "persona"
            )
            by_version = {v.version: v for v in ctx.personas.versions(name)}
            version = st.selectbox(
                "Version",
                [DEFAULT, *sorted(by_version, reverse=True)],
                key=key + "version",
                format_func=lambda v: "current" if v == DEFAULT else f"v{v}",
            )
            provider = st.selectbox(
                "Provider",
                list(providers),
                format_func=lambda n: providers[n].label,
                key=key + "provider",
            )
            model = st.text_input(
                "Model", key=key + "model", placeholder=providers[provider].default_model
            )
            persona = next(p for p in personas if p.name == name)
            chosen = by_version.get(version, persona) if version != DEFAULT else persona
            temperature = st.slider(
                "Temperature",
                0.0,
                2.0,
                float(chosen.temperature),
                0.1,
                key=f"{key}temperature_{name}_{version}",  # follows the chosen persona version
            )
        specs.append(
            VariantSpec(
                name,
                version=None if version == DEFAULT else int(version),
                provider=provider,
                model=model.strip() or None,
                temperature=temperature,
            )
        )
    return specs
