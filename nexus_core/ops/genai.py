"""Names from the OpenTelemetry GenAI semantic conventions that the metrics and the traces share:
the operation name, our providers as ``gen_ai.provider.name`` values, the evaluation names, and
why a span can be dropped."""

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


# Evaluations of a reply, exported as ``gen_ai.evaluation.result`` events on its job's trace;
# ``gen_ai.evaluation.name`` is one of ours: a person's pick of the best reply of a comparison
# (label ``best`` / ``not_best``), a person's rating of one reply (``good`` / ``bad``), and the
# pairwise judge's verdict on an eval run's new reply against its baseline (``win`` 1.0,
# ``tie`` 0.5, ``loss`` 0.0).
EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
VOTE_BEST: Final = "nexus.vote.best"
VOTE_RATING: Final = "nexus.vote.rating"
JUDGE_PAIRWISE: Final = "nexus.judge.pairwise"

# Why a span never reached the collector (the ``reason`` of nexus_otel_spans_dropped_total).
DROP_QUEUE_FULL: Final = "queue_full"
DROP_EXPORT_FAILED: Final = "export_failed"
DROP_SHUTDOWN: Final = "shutdown"
SPAN_DROP_REASONS: Final = (DROP_QUEUE_FULL, DROP_EXPORT_FAILED, DROP_SHUTDOWN)
