"""Choosing the AI provider from the settings (``NEXUS_AI_PROVIDER``), and every one available."""

from __future__ import annotations

import httpx

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.openai_compat import OpenAICompatibleClient
from nexus_core.ai.protocol import Provider
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.errors import ConfigError
from nexus_core.settings import PROVIDERS, Settings


def build_provider(
    settings: Settings, name: str | None = None, http: httpx.Client | None = None
) -> Provider:
    """The provider named by ``name`` or ``NEXUS_AI_PROVIDER``, refusing an incomplete setup."""
    choice = (name or settings.ai_provider).strip().lower()
    if choice == "gemini":
        if not settings.gemini_api_key:
            raise ConfigError(
                "NEXUS_AI_PROVIDER=gemini needs GEMINI_API_KEY (a Google AI Studio key); "
                "set it, or use NEXUS_AI_PROVIDER=simulated for the offline demo model."
            )
        return GeminiClient.from_settings(settings, http=http)
    if choice == "openai":
        missing = [
            variable
            for variable, value in (
                ("OPENAI_API_BASE", settings.openai_api_base),
                ("OPENAI_MODEL", settings.openai_model),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"NEXUS_AI_PROVIDER=openai needs {' and '.join(missing)}; set "
                + ("them" if len(missing) > 1 else "it")
                + " (e.g. OPENAI_API_BASE=http://localhost:11434/v1 OPENAI_MODEL=llama3.2)."
            )
        return OpenAICompatibleClient.from_settings(settings, http=http)
    if choice == "simulated":
        return SimulatedProvider.from_settings(settings)
    raise ConfigError(
        f"Unknown AI provider {choice!r}; choose one of {', '.join(PROVIDERS)} (NEXUS_AI_PROVIDER)."
    )


def available_providers(
    settings: Settings, default: Provider, http: httpx.Client | None = None
) -> dict[str, Provider]:
    """Every provider the settings make usable, by name: the simulated model always, Gemini with
    ``GEMINI_API_KEY``, the OpenAI-compatible server with its base URL and model. ``default``
    (the app's provider, already built) stands for its own name."""
    configured = {
        "simulated": True,
        "gemini": bool(settings.gemini_api_key),
        "openai": bool(settings.openai_api_base and settings.openai_model),
    }
    providers = {
        name: default if name == default.name else build_provider(settings, name, http)
        for name in PROVIDERS
        if configured.get(name) or name == default.name
    }
    return providers
