"""Names from the OpenTelemetry GenAI semantic conventions that the metrics and the traces share:
the operation name and our providers as ``gen_ai.provider.name`` values."""

from __future__ import annotations

from typing import Final

GENAI_OPERATION: Final = "chat"
# Our provider names as ``gen_ai.provider.name`` values (``gcp.gemini``: the Gemini API).
GENAI_PROVIDER_NAMES: Final = {"gemini": "gcp.gemini", "openai": "openai"}
UNKNOWN_PROVIDER: Final = "unknown"


def genai_provider_name(provider: object) -> str:
    """Our provider name as the conventions' ``gen_ai.provider.name`` (``gcp.gemini``, …)."""
    name = str(provider) if provider else UNKNOWN_PROVIDER
    return GENAI_PROVIDER_NAMES.get(name, name)
