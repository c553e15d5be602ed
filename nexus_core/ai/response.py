"""`GenerateResponseService`: persona + recent history in, one reply (or a typed failure) out.

The context is the persona's system instruction plus the newest messages that fit the character
budget; older ones are dropped first and error bubbles never reach the model. Provider trouble is
returned as a failed `ResponseResult`, never raised, so the job decides what to retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, Usage, run_stream
from nexus_core.errors import ProviderError, TransientProviderError
from nexus_core.personas import PersonaView

ROLE_TO_TURN = {"user": "user", "assistant": "model"}


class Turnable(Protocol):
    """Anything with a role (user, assistant or error) and text: messages, history items."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


class HistoryItem(NamedTuple):
    """The part of a stored message the model sees."""

    role: str
    content: str


@dataclass(frozen=True)
class ResponseResult:
    """The outcome of one call: the reply on success, the typed error otherwise."""

    success: bool
    content: str
    error: ProviderError | None
    usage: Usage
    latency_ms: float
    ttft_ms: float | None
    model: str
    finish_reason: str | None = None
    status_code: int | None = None

    @property
    def retryable(self) -> bool:
        return isinstance(self.error, TransientProviderError)

    @property
    def retry_after(self) -> float | None:
        return self.error.retry_after if isinstance(self.error, TransientProviderError) else None

    @property
    def error_type(self) -> str | None:
        return self.error.error_type if self.error else None


def build_turns(history: Sequence[Turnable], budget_chars: int) -> tuple[ChatTurn, ...]:
    """The newest user/assistant messages that fit ``budget_chars``, oldest first.

    The newest message is always kept (it is what the user just asked); the conversation sent to
    the model starts with a user turn, as Gemini expects.
    """
    turns: list[ChatTurn] = []
    used = 0
    for message in reversed(history):
        role = ROLE_TO_TURN.get(message.role)
        if role is None:  # error bubbles are for people, not for the model
            continue
        if turns and used + len(message.content) > budget_chars:
            break
        turns.append(ChatTurn(role=role, text=message.content))  # type: ignore[arg-type]
        used += len(message.content)
    turns.reverse()
    while turns and turns[0].role != "user":
        turns.pop(0)
    return tuple(turns)


class GenerateResponseService:
    """Builds the context for a persona and asks the provider for one reply."""

    def __init__(
        self,
        provider: Provider,
        *,
        budget_chars: int = 24_000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.provider = provider
        self.budget_chars = budget_chars
        self.clock = clock

    def build_request(
        self,
        persona: PersonaView,
        history: Sequence[Turnable],
        *,
        model: str | None = None,
        temperature: float | None = None,
    ) -> GenerationRequest:
        """The provider request for ``persona`` answering the end of ``history``.

        ``model`` and ``temperature`` override the persona's (a prompt run's variant sets them).
        """
        if model is None:
            # Persona models name Gemini models; other providers use their own configured model.
            model = persona.model if self.provider.name == "gemini" else None
        return GenerationRequest(
            system_instruction=persona.system_instruction,
            turns=build_turns(history, self.budget_chars),
            model=model,
            temperature=persona.temperature if temperature is None else temperature,
        )

    def model_for(self, request: GenerationRequest) -> str:
        """The model that will answer ``request``."""
        return request.model or self.provider.default_model

    def generate(
        self,
        persona: PersonaView,
        history: Sequence[Turnable],
        on_delta: Callable[[str], None] | None = None,
    ) -> ResponseResult:
        """One reply from the provider; failures come back as an unsuccessful result."""
        return self.send(self.build_request(persona, history), on_delta)

    def send(
        self, request: GenerationRequest, on_delta: Callable[[str], None] | None = None
    ) -> ResponseResult:
        """Send a ``build_request`` request; failures come back as an unsuccessful result."""
        model = self.model_for(request)
        started = self.clock()
        try:
            result = run_stream(self.provider, request, on_delta)
        except ProviderError as exc:
            return ResponseResult(
                success=False,
                content="",
                error=exc,
                usage=Usage(),
                latency_ms=(self.clock() - started) * 1000,
                ttft_ms=None,
                model=model,
                status_code=exc.status_code,
            )
        return ResponseResult(
            success=True,
            content=result.text,
            error=None,
            usage=result.usage,
            latency_ms=result.latency_ms,
            ttft_ms=result.ttft_ms,
            model=result.model or model,
            finish_reason=result.finish_reason,
            status_code=result.status_code,
        )
