"""An offline, clearly labelled demo model: short, deterministic, persona-aware replies, streamed
word by word.

Every reply starts with the ``REPLY_LABEL`` line, then echoes the question in two plain sentences
(in the persona's voice) and lists two or three next steps — no headings. The answer is a pure
function of the system instruction and the last user message (through a
SHA-256 digest), so tests and demos are repeatable; only the injected ``random`` decides the
simulated 503s, and only the injected ``sleep`` spends time.

It also judges offline. A system instruction holding ``JUDGE_TAG`` asks for a pairwise verdict on
the two replies between the ``REPLY_A`` / ``REPLY_B`` markers of the message (see
``nexus_core.eval.judge``); the simulated judge scores each reply from its digest alone and picks
the higher score, calls equal scores a tie, and — like real judges — favours the reply shown first
when the scores are within ``CLOSE_CALL`` of each other, so swapping the order can change its mind.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Generator
from random import Random

from nexus_core.ai.protocol import GenerationRequest, ProviderResult, Usage
from nexus_core.errors import ConfigError, TransientProviderError
from nexus_core.settings import Settings

SIMULATED_LABEL = "Simulated model (offline)"
DEFAULT_MODEL = "simulated-1"
DEFAULT_LATENCY_SECONDS = 0.02
# The first line of every simulated reply, so nobody mistakes demo text for a model's answer.
REPLY_LABEL = "[Simulated reply — offline demo model]"
CHARS_PER_TOKEN = 4
MAX_ASK_CHARS = 80  # the question is echoed back, cut at a word to this length
MAX_ROLE_CHARS = 120
FINISHED = "STOP"
CUT_SHORT = "MAX_TOKENS"

OPENERS = ("My take on", "Short answer on", "In brief, on", "Quick thoughts on")
ADVICE = (
    "start with the smallest change that answers it",
    "check the assumptions against real data before deciding",
    "agree on what success looks like, then choose the approach",
    "try the simplest option first and measure the result",
    "sketch two alternatives and keep the one that is easier to undo",
)
FOLLOW_UPS = (
    "write down the result I expect before looking",
    "keep the first version small enough to roll back",
    "check with the people it affects before committing",
    "mark what is still a guess, so it gets tested",
)
STEPS = (
    "Write down what a good outcome looks like.",
    "Try it on one small, real example first.",
    "List what you know and what you are guessing.",
    "Pick a date to check whether it worked.",
    "Share the plan with one person who will push back.",
)
JUDGE_TAG = "[nexus pairwise judge]"
REPLY_A = ("<reply_a>", "</reply_a>")
REPLY_B = ("<reply_b>", "</reply_b>")
JUDGE_SCORES = 10  # a reply's simulated quality is 0–9
CLOSE_CALL = 1  # scores this close: the reply shown first wins (position bias)
_WORD = re.compile(r"\S+\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")
_YOU_ARE = re.compile(r"^(you are|you're)\s+", re.IGNORECASE)
# What of the question is echoed: letters, digits, spaces and plain punctuation — no Markdown.
_NOT_PLAIN = re.compile(r"[^\w\s'’,.?!-]")


class SimulatedProvider:
    """The offline demo provider, labelled so nobody mistakes it for a real model."""

    name = "simulated"
    label = SIMULATED_LABEL
    default_model = DEFAULT_MODEL

    def __init__(
        self,
        latency_seconds: float = DEFAULT_LATENCY_SECONDS,
        failure_rate: float = 0.0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Random | None = None,
    ) -> None:
        if latency_seconds < 0:
            raise ConfigError(
                f"NEXUS_SIMULATED_LATENCY_SECONDS must be 0 or more, not {latency_seconds}."
            )
        if not 0.0 <= failure_rate <= 1.0:
            raise ConfigError(
                f"NEXUS_SIMULATED_FAILURE_RATE must be between 0 and 1, not {failure_rate}."
            )
        self.latency_seconds = latency_seconds
        self.failure_rate = failure_rate
        self._sleep = sleep
        self._random = random if random is not None else Random(seed)

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatedProvider:
        """A simulated provider with the latency and failure rate from the settings."""
        return cls(
            latency_seconds=settings.simulated_latency_seconds,
            failure_rate=settings.simulated_failure_rate,
        )

    def __repr__(self) -> str:
        return (
            f"SimulatedProvider(latency_seconds={self.latency_seconds}, "
            f"failure_rate={self.failure_rate})"
        )

    def configured(self) -> bool:
        """Always true: the simulated model needs nothing."""
        return True

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        """Yield the canned answer word by word, waiting ``latency_seconds`` before each word."""
        started = time.perf_counter()
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise TransientProviderError(
                f"The {SIMULATED_LABEL} failed on purpose (NEXUS_SIMULATED_FAILURE_RATE); "
                "try again.",
                status_code=503,
                error_type="http_503",
            )
        words = _WORD.findall(_answer(request))
        finish_reason = FINISHED
        if request.max_output_tokens is not None:
            budget = request.max_output_tokens * CHARS_PER_TOKEN
            kept = _fit(words, budget)
            if len(kept) < len(words):
                words, finish_reason = kept, CUT_SHORT
        ttft_ms: float | None = None
        for word in words:
            if self.latency_seconds:
                self._sleep(self.latency_seconds)
            if ttft_ms is None:
                ttft_ms = (time.perf_counter() - started) * 1000.0
            yield word
        text = "".join(words)
        prompt = request.system_instruction + "".join(turn.text for turn in request.turns)
        return ProviderResult(
            text=text,
            finish_reason=finish_reason,
            usage=Usage(
                input_tokens=estimate_tokens(prompt),
                cached_input_tokens=0,
                output_tokens=estimate_tokens(text),
                reasoning_tokens=0,
            ),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            ttft_ms=ttft_ms,
            model=DEFAULT_MODEL,
            status_code=200,
        )


def compose_answer(system_instruction: str, user_message: str) -> str:
    """The deterministic demo answer for this persona and message: the ``REPLY_LABEL`` line, two
    sentences that echo the question and speak as the persona, and a short list of next steps."""
    digest = hashlib.sha256(f"{system_instruction}\0{user_message}".encode()).digest()

    def pick(options: tuple[str, ...], index: int) -> str:
        return options[digest[index] % len(options)]

    first = digest[3] % len(STEPS)
    steps = [STEPS[(first + i) % len(STEPS)] for i in range(2 + digest[4] % 2)]
    lines = [
        REPLY_LABEL,
        "",
        f"{pick(OPENERS, 0)} “{_ask(user_message)}”: {pick(ADVICE, 1)}. "
        f"{_persona_voice(system_instruction)} I would also {pick(FOLLOW_UPS, 2)}.",
        "",
        *(f"- {step}" for step in steps),
    ]
    return "\n".join(lines)


def compose_verdict(judge_prompt: str) -> str:
    """The simulated judge's JSON verdict on the replies marked in ``judge_prompt``."""
    first, second = _between(judge_prompt, REPLY_A), _between(judge_prompt, REPLY_B)
    score_a, score_b = judge_score(first), judge_score(second)
    if score_a == score_b:
        winner = "tie"
    elif abs(score_a - score_b) <= CLOSE_CALL:
        winner = "A"
    else:
        winner = "A" if score_a > score_b else "B"
    reason = (
        f"Reply A scores {score_a}/{JUDGE_SCORES - 1} and reply B {score_b}/{JUDGE_SCORES - 1} "
        "on helpfulness, correctness, following the instruction and safety (simulated judge)."
    )
    return json.dumps({"winner": winner, "reason": reason})


def judge_score(reply: str) -> int:
    """The simulated quality of a reply, 0–9: a pure function of its text."""
    return hashlib.sha256(reply.strip().encode()).digest()[0] % JUDGE_SCORES


def estimate_tokens(text: str) -> int:
    """A rough token count: one token per ``CHARS_PER_TOKEN`` characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def _ask(message: str) -> str:
    """The first sentence of the question as plain text, cut at a word to ``MAX_ASK_CHARS``."""
    sentence = _SENTENCE_END.split(message.strip(), maxsplit=1)[0]
    plain = " ".join(_NOT_PLAIN.sub(" ", sentence).split()).rstrip(",.;: ")
    if len(plain) > MAX_ASK_CHARS:
        plain = plain[:MAX_ASK_CHARS].rsplit(" ", 1)[0].rstrip(",.;: ") + "…"
    return plain or "your question"


def _persona_voice(system_instruction: str) -> str:
    sentence = _SENTENCE_END.split(system_instruction.strip(), maxsplit=1)[0].strip()
    sentence = sentence.rstrip(".!?").strip()[:MAX_ROLE_CHARS]
    if not sentence:
        return "As a general assistant,"
    role = _YOU_ARE.sub("", sentence)
    if role != sentence:
        return f"As {role},"
    return f"Following my brief (“{sentence}”),"


def _answer(request: GenerationRequest) -> str:
    if JUDGE_TAG in request.system_instruction:
        return compose_verdict(_last_user_text(request))
    return compose_answer(request.system_instruction, _last_user_text(request))


def _between(text: str, markers: tuple[str, str]) -> str:
    start, end = markers
    _head, found, rest = text.partition(start)
    return rest.partition(end)[0] if found else ""


def _last_user_text(request: GenerationRequest) -> str:
    return next((turn.text for turn in reversed(request.turns) if turn.role == "user"), "")


def _fit(words: list[str], budget_chars: int) -> list[str]:
    kept: list[str] = []
    used = 0
    for word in words:
        used += len(word)
        if used > budget_chars:
            break
        kept.append(word)
    return kept or words[:1]
