"""A trial reply of a persona before it is saved.

The preview runs the unsaved form values through the same ``GenerateResponseService`` as a chat,
so the admin sees what the persona would really say; nothing is written to the database.
"""

from __future__ import annotations

from nexus_core.ai.protocol import Provider
from nexus_core.ai.response import GenerateResponseService, HistoryItem, ResponseResult
from nexus_core.errors import ValidationError
from nexus_core.personas import PersonaView, validate_fields

SAMPLE_PROMPT = "Introduce yourself in two sentences, then say what you can help me with."
MAX_PREVIEW_PROMPT_CHARS = 2_000
PREVIEW_ID = 0  # a persona that is not stored has no id


def draft_persona(
    *,
    name: str,
    system_instruction: str,
    description: str = "",
    avatar: str = "🤖",
    color: str = "#4F46E5",
    model: str | None = None,
    temperature: float = 0.7,
) -> PersonaView:
    """An unsaved persona built from form values, checked by the same rules as a saved one."""
    fields: dict[str, object] = {
        "description": description.strip(),
        "system_instruction": system_instruction.strip(),
        "avatar": avatar,
        "color": color,
        "model": model or None,
        "temperature": float(temperature),
    }
    validate_fields(fields)
    return PersonaView(
        id=PREVIEW_ID, name=name.strip() or "Preview", version=0, active=True, **fields
    )


def preview_reply(
    provider: Provider,
    *,
    name: str,
    system_instruction: str,
    prompt: str,
    description: str = "",
    avatar: str = "🤖",
    color: str = "#4F46E5",
    model: str | None = None,
    temperature: float = 0.7,
) -> ResponseResult:
    """What ``provider`` answers to ``prompt`` as the unsaved persona; provider failures come
    back as an unsuccessful result, invalid form values raise ``ValidationError``."""
    prompt = prompt.strip()
    if not prompt:
        raise ValidationError("Type a sample message to preview the persona's reply.")
    if len(prompt) > MAX_PREVIEW_PROMPT_CHARS:
        raise ValidationError(
            f"The sample message is longer than {MAX_PREVIEW_PROMPT_CHARS:,} characters."
        )
    persona = draft_persona(
        name=name,
        system_instruction=system_instruction,
        description=description,
        avatar=avatar,
        color=color,
        model=model,
        temperature=temperature,
    )
    return GenerateResponseService(provider).generate(persona, [HistoryItem("user", prompt)])
