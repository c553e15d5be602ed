"""The offline simulated model, `run_stream` and the default provider choice."""

from __future__ import annotations

from random import Random

import pytest

from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, run_stream
from nexus_core.ai.providers import build_provider
from nexus_core.ai.simulated import REPLY_LABEL, SimulatedProvider, estimate_tokens
from nexus_core.errors import ConfigError, TransientProviderError
from nexus_core.settings import Settings

ANALYST = "You are Ada, a meticulous data analyst. Answer with numbers where you can."
QUESTION = "How do I reduce p95 latency for the checkout service?"


def ask(message: str = QUESTION, system: str = ANALYST, **options: object) -> GenerationRequest:
    return GenerationRequest(
        system_instruction=system,
        turns=(
            ChatTurn("user", "Earlier question"),
            ChatTurn("model", "Earlier answer"),
            ChatTurn("user", message),
        ),
        **options,  # type: ignore[arg-type]
    )


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def simulated(sleeps: SleepRecorder) -> SimulatedProvider:
    return SimulatedProvider(latency_seconds=0.05, sleep=sleeps)


def test_simulated_model_is_labelled_as_offline(simulated: SimulatedProvider) -> None:
    assert isinstance(simulated, Provider)
    assert simulated.name == "simulated"
    assert simulated.label == "Simulated model (offline)"
    assert simulated.default_model == "simulated-1"
    assert simulated.configured() is True


def test_answer_is_streamed_word_by_word_with_the_latency_between_words(
    simulated: SimulatedProvider, sleeps: SleepRecorder
) -> None:
    deltas: list[str] = []

    result = run_stream(simulated, ask(), on_delta=deltas.append)

    assert len(deltas) > 10
    assert all(len(delta.split()) == 1 for delta in deltas)
    assert "".join(deltas) == result.text
    assert sleeps.calls == [0.05] * len(deltas)
    assert (result.model, result.finish_reason, result.status_code) == ("simulated-1", "STOP", 200)
    assert result.ttft_ms is not None and result.ttft_ms <= result.latency_ms


def test_same_persona_and_message_give_the_same_answer(simulated: SimulatedProvider) -> None:
    assert run_stream(simulated, ask()).text == run_stream(simulated, ask()).text


def test_different_messages_give_different_answers(simulated: SimulatedProvider) -> None:
    first = run_stream(simulated, ask("Explain quarterly churn by region")).text
    second = run_stream(simulated, ask("Draft a launch email for the beta")).text

    assert first != second


def test_reply_is_a_labelled_short_demo_text_without_headings(
    simulated: SimulatedProvider,
) -> None:
    text = run_stream(simulated, ask()).text

    label, blank, paragraph, blank_too, *items = text.splitlines()
    assert label == REPLY_LABEL == "[Simulated reply — offline demo model]"
    assert blank == blank_too == ""
    assert paragraph.count(". ") + 1 in (1, 2, 3)  # one to three sentences
    assert 2 <= len(items) <= 3 and all(item.startswith("- ") for item in items)
    assert not any(line.lstrip().startswith("#") for line in text.splitlines())
    assert len(text.split()) <= 90


def test_reply_echoes_the_question_and_speaks_as_the_persona(
    simulated: SimulatedProvider,
) -> None:
    text = run_stream(simulated, ask()).text

    assert "“How do I reduce p95 latency for the checkout service?”" in text
    assert "As Ada, a meticulous data analyst, I would also" in text


def test_markdown_in_the_question_is_not_echoed_as_markdown(
    simulated: SimulatedProvider,
) -> None:
    hostile = "# Big ![x](http://evil.example/p.png) **bold** `code` <b>tag</b>\nsecond line"

    text = run_stream(simulated, ask(hostile)).text

    assert "“Big ! x http evil.example p.png bold code b tag b”" in text
    for markup in ("](", "**", "`", "<", ">", "second line"):
        assert markup not in text


def test_a_long_question_is_echoed_to_its_first_sentence_cut_at_a_word(
    simulated: SimulatedProvider,
) -> None:
    first = "Explain " + "very " * 30 + "carefully why the build broke"
    text = run_stream(simulated, ask(f"{first}. Then fix it.")).text

    echoed = text.split("“", 1)[1].split("”", 1)[0]
    assert echoed.startswith("Explain very very") and echoed.endswith("very…")
    assert len(echoed) <= 81 and "Then fix it" not in text


def test_instruction_that_is_not_a_role_is_quoted_as_the_brief(
    simulated: SimulatedProvider,
) -> None:
    text = run_stream(simulated, ask(system="Always answer in haiku. Be kind.")).text

    assert "Following my brief (“Always answer in haiku”)" in text


def test_message_without_words_still_gets_a_useful_reply(simulated: SimulatedProvider) -> None:
    text = run_stream(simulated, ask("!!", system="")).text

    assert text.startswith(REPLY_LABEL)
    assert "“!!”" in text and "As a general assistant, I would also" in text
    assert "\n- " in text


def test_usage_is_estimated_at_four_characters_a_token(simulated: SimulatedProvider) -> None:
    request = ask()

    result = run_stream(simulated, request)

    prompt = request.system_instruction + "".join(turn.text for turn in request.turns)
    assert result.usage.output_tokens == estimate_tokens(result.text) == -(-len(result.text) // 4)
    assert result.usage.input_tokens == estimate_tokens(prompt)
    assert (result.usage.cached_input_tokens, result.usage.reasoning_tokens) == (0, 0)


def test_output_token_limit_cuts_the_answer_short(simulated: SimulatedProvider) -> None:
    result = run_stream(simulated, ask(max_output_tokens=5))

    assert result.finish_reason == "MAX_TOKENS"
    assert 0 < len(result.text) <= 5 * 4


def test_failure_rate_of_one_fails_with_a_503_before_the_first_word(
    sleeps: SleepRecorder,
) -> None:
    provider = SimulatedProvider(failure_rate=1.0, sleep=sleeps)
    deltas: list[str] = []

    with pytest.raises(TransientProviderError) as caught:
        run_stream(provider, ask(), on_delta=deltas.append)

    assert (caught.value.status_code, caught.value.error_type) == (503, "http_503")
    assert deltas == [] and sleeps.calls == []


def test_seeded_failures_are_reproducible_and_near_the_rate() -> None:
    def outcomes(seed: int) -> list[bool]:
        provider = SimulatedProvider(latency_seconds=0, failure_rate=0.3, seed=seed)
        results = []
        for _ in range(200):
            try:
                run_stream(provider, ask())
            except TransientProviderError:
                results.append(False)
            else:
                results.append(True)
        return results

    first, again = outcomes(seed=42), outcomes(seed=42)

    assert first == again
    assert 40 <= first.count(False) <= 80


def test_injected_random_decides_the_failures() -> None:
    class AlwaysLow(Random):
        def random(self) -> float:
            return 0.0

    provider = SimulatedProvider(latency_seconds=0, failure_rate=0.01, random=AlwaysLow())

    with pytest.raises(TransientProviderError):
        run_stream(provider, ask())


@pytest.mark.parametrize(("latency", "failure_rate"), [(-1.0, 0.0), (0.0, 1.5), (0.0, -0.1)])
def test_impossible_settings_are_a_config_error(latency: float, failure_rate: float) -> None:
    with pytest.raises(ConfigError):
        SimulatedProvider(latency_seconds=latency, failure_rate=failure_rate)


def test_run_stream_closes_the_stream_when_the_callback_fails(
    simulated: SimulatedProvider, sleeps: SleepRecorder
) -> None:
    def explode(delta: str) -> None:
        raise RuntimeError("the page went away")

    with pytest.raises(RuntimeError, match="the page went away"):
        run_stream(simulated, ask(), on_delta=explode)

    assert len(sleeps.calls) == 1


def test_build_provider_falls_back_to_the_simulated_model_without_a_key() -> None:
    settings = Settings(simulated_latency_seconds=0.0, simulated_failure_rate=0.25)

    provider = build_provider(settings)

    assert isinstance(provider, SimulatedProvider)
    assert (provider.latency_seconds, provider.failure_rate) == (0.0, 0.25)


def test_build_provider_rejects_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match="gemini, openai, simulated"):
        build_provider(Settings(), name="claude")
