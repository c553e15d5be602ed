"""Variants: what a prompt run compares, resolved to exactly what answers, with a readable label.

A variant names a persona (at a version, or the current one), a provider with a model, and a
temperature. Resolving it fills every default in, as the reply job would (the persona version's
temperature; for Gemini the persona's model, else the provider's own), so the stored variant says
exactly what answered even after the defaults change. Its label, such as

    Code Reviewer v2 · gemini · gemini-2.5-flash · t=0.2      Code Reviewer v3 · simulated · t=0.7

is its identity on the leaderboard (the simulated provider has one model, so it is left out), which
is why a run may not hold two variants with the same label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core.ai.lanes import COMPARE_LANE, TEST_SET_LANE
from nexus_core.ai.protocol import Provider
from nexus_core.db.models import Persona, PersonaVersion
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserView, feature_enabled

FEATURE: Final = "prompt_compare"
FEATURE_DENIED: Final = (
    "Prompt comparison is not enabled for your account; ask an admin to turn on the "
    "prompt_compare feature."
)
MAX_VARIANTS: Final = 4
MIN_TEMPERATURE: Final = 0.0
MAX_TEMPERATURE: Final = 2.0
MAX_MODEL_CHARS: Final = 80
# A model name as providers take it: Ollama's ``llama3.2:latest``, vLLM's ``org/model``.
MODEL_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
GEMINI_MODEL_PREFIX: Final = "models/"
SINGLE_MODEL_PROVIDERS: Final = frozenset({"simulated"})
LABEL_SEPARATOR: Final = " · "
# Job lanes (pools of their own in the worker) and their threads: a comparison's variants all
# run at once; a test set's cases several at a time, never in front of chat replies.
LANE_WORKERS: Final[dict[str, int]] = {COMPARE_LANE: MAX_VARIANTS, TEST_SET_LANE: 4}


@dataclass(frozen=True)
class VariantSpec:
    """A variant as asked for: ``None`` means the default (current version, app provider,
    the persona's or provider's model, the persona's temperature). Only the persona is
    positional: ``VariantSpec("Code Reviewer", provider="gemini", temperature=0.2)``."""

    persona: str
    _: KW_ONLY
    version: int | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class VariantView:
    """A variant of a run as it answered, every default filled in, with its label."""

    position: int
    label: str
    persona: str
    persona_id: int
    persona_version: int
    provider: str
    model: str
    temperature: float


@dataclass(frozen=True)
class ProviderChoice:
    """A provider this server can use, for the variant pickers."""

    name: str
    label: str
    default_model: str
    is_default: bool


def require_feature(user: UserView, env: str) -> None:
    """Refuse users without the ``prompt_compare`` feature (admins and development have it)."""
    if not feature_enabled(user, FEATURE, env=env):
        raise PermissionDenied(FEATURE_DENIED)


def provider_choices(providers: Mapping[str, Provider], default: str) -> list[ProviderChoice]:
    """The available providers, the default first, then by name."""
    names = sorted(providers, key=lambda name: (name != default, name))
    return [
        ProviderChoice(name, providers[name].label, providers[name].default_model, name == default)
        for name in names
    ]


def variant_label(persona: str, version: int, provider: str, model: str, temperature: float) -> str:
    """The readable name of a resolved variant, its identity on the leaderboard."""
    parts = [f"{persona} v{version}", provider]
    if provider not in SINGLE_MODEL_PROVIDERS:
        parts.append(model)
    parts.append(f"t={temperature:g}")
    return LABEL_SEPARATOR.join(parts)


def check_count(specs: Sequence[VariantSpec], minimum: int) -> None:
    """Refuse fewer than ``minimum`` or more than ``MAX_VARIANTS`` variants."""
    if not minimum <= len(specs) <= MAX_VARIANTS:
        raise ValidationError(
            f"Choose between {minimum} and {MAX_VARIANTS} variants; there are {len(specs)}."
        )


def resolve_variants(
    session: Session,
    specs: Sequence[VariantSpec],
    providers: Mapping[str, Provider],
    default_provider: str,
    user: UserView,
) -> list[VariantView]:
    """The variants with every default filled in; errors name the variant (counting from 1)."""
    resolved = [
        _resolve(session, number, spec, providers, default_provider, user)
        for number, spec in enumerate(specs, start=1)
    ]
    seen: dict[str, int] = {}
    for variant in resolved:
        if variant.label in seen:
            raise ValidationError(
                f"Variants {seen[variant.label] + 1} and {variant.position + 1} are the same "
                f"({variant.label}); change the persona, version, provider, model or temperature."
            )
        seen[variant.label] = variant.position
    return resolved


def _resolve(
    session: Session,
    number: int,
    spec: VariantSpec,
    providers: Mapping[str, Provider],
    default_provider: str,
    user: UserView,
) -> VariantView:
    where = f"Variant {number}"
    persona = session.scalar(select(Persona).where(Persona.name == spec.persona))
    if persona is None:
        raise NotFound(f"{where}: there is no persona named {spec.persona!r}.")
    if not persona.active and not user.is_admin:
        raise ValidationError(f"{where}: the persona {persona.name!r} is deactivated.")
    version = _version(session, persona, spec.version, where)
    provider_name = spec.provider or default_provider
    provider = providers.get(provider_name)
    if provider is None:
        choices = ", ".join(sorted(providers))
        raise ValidationError(
            f"{where}: the provider {provider_name!r} is not set up on this server; "
            f"choose one of {choices}."
        )
    model = _model(spec.model, version.model, provider, where)
    temperature = version.temperature if spec.temperature is None else float(spec.temperature)
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ValidationError(
            f"{where}: the temperature is between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, "
            f"not {temperature:g}."
        )
    return VariantView(
        position=number - 1,
        label=variant_label(persona.name, version.version, provider.name, model, temperature),
        persona=persona.name,
        persona_id=persona.id,
        persona_version=version.version,
        provider=provider.name,
        model=model,
        temperature=temperature,
    )


def _version(
    session: Session, persona: Persona, wanted: int | None, where: str
) -> Persona | PersonaVersion:
    """The persona's fields at ``wanted`` (None: the current version, held by the persona row)."""
    if wanted is None or wanted == persona.version:
        return persona
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
        raise ValidationError(f"{where}: a persona version is a number from 1, not {wanted!r}.")
    stored = session.scalar(
        select(PersonaVersion).where(
            PersonaVersion.persona_id == persona.id, PersonaVersion.version == wanted
        )
    )
    if stored is None:
        raise NotFound(f"{where}: the persona {persona.name!r} has no version {wanted}.")
    return stored


def _model(wanted: str | None, persona_model: str | None, provider: Provider, where: str) -> str:
    """The model that will answer, as the reply job picks it (see ``build_request``)."""
    wanted = (wanted or "").strip() or None
    if wanted is None:
        # Persona models name Gemini models; other providers use their own configured model.
        chosen = persona_model if provider.name == "gemini" and persona_model else None
        return _bare(chosen or provider.default_model, provider)
    if provider.name in SINGLE_MODEL_PROVIDERS and wanted != provider.default_model:
        raise ValidationError(
            f"{where}: the {provider.label} has one model, {provider.default_model}; "
            "leave the model empty."
        )
    bare = _bare(wanted, provider)
    if len(bare) > MAX_MODEL_CHARS or not MODEL_PATTERN.match(bare):
        raise ValidationError(
            f"{where}: {wanted!r} is not a model name (letters, digits and . _ : / -, "
            f"at most {MAX_MODEL_CHARS} characters)."
        )
    if provider.name == "gemini" and "/" in bare:
        raise ValidationError(f"{where}: a Gemini model name has no '/' (such as gemini-2.5-pro).")
    return bare


def _bare(model: str, provider: Provider) -> str:
    return model.removeprefix(GEMINI_MODEL_PREFIX) if provider.name == "gemini" else model
