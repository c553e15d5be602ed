"""Variant pickers: a comparison and a test-set run ask for their variants alike.

A choice of one is not drawn as a select box — a persona with no earlier version, a deployment
with one provider — but named in one caption: every widget is work for the browser when the
page opens, and a select box with a single meaningful option is no choice."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.compare.variants import ProviderChoice, VariantSpec
from nexus_core.personas import PersonaView
from nexus_core.ui import show

DEFAULT = "(default)"
CURRENT_VERSION = "current version"


def variant_pickers(ctx: AppContext, prefix: str, count: int) -> list[VariantSpec]:
    """``count`` variant pickers side by side: persona, version, provider, model, temperature."""
    personas = ctx.personas.list()
    providers = {c.name: c for c in ctx.compare.provider_choices()}
    specs = []
    for index, column in enumerate(st.columns(count)):
        with column:
            specs.append(_picker(ctx, f"{prefix}{index}_", index, personas, providers))
    return specs


def _picker(
    ctx: AppContext,
    key: str,
    index: int,
    personas: list[PersonaView],
    providers: dict[str, ProviderChoice],
) -> VariantSpec:
    """One variant's widgets, under the key prefix ``key``."""
    st.markdown(f"**Variant {ord('A') + index:c}**")
    names = [p.name for p in personas]
    name = st.selectbox("Persona", names, index=min(index, len(names) - 1), key=key + "persona")
    by_version = {v.version: v for v in ctx.personas.versions(name)}
    version, provider = DEFAULT, next(iter(providers))
    if len(by_version) > 1:  # one saved version is the current one: nothing to choose
        version = st.selectbox(
            "Version",
            [DEFAULT, *sorted(by_version, reverse=True)],
            key=key + "version",
            format_func=lambda v: "current" if v == DEFAULT else f"v{v}",
        )
    if len(providers) > 1:
        provider = st.selectbox(
            "Provider",
            list(providers),
            format_func=lambda n: providers[n].label,
            key=key + "provider",
        )
    only = [CURRENT_VERSION] if len(by_version) <= 1 else []
    only += [providers[provider].label] if len(providers) == 1 else []
    if only:
        show.caption(" · ".join(only))
    model = st.text_input("Model", key=key + "model", placeholder=providers[provider].default_model)
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
    return VariantSpec(
        name,
        version=None if version == DEFAULT else int(version),
        provider=provider,
        model=model.strip() or None,
        temperature=temperature,
    )
