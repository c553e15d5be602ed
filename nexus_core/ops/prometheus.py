"""Prometheus metrics for ``GET /metrics``, fed by the same events that go to the event log.

The app emits every event once, through a `FanoutSink` that hands it to the file logger and to a
`MetricsEventSink`; the sink turns events into counters and histograms on a `NexusMetrics`::

    request_start    -> nexus_ai_requests_total{provider, model}
    request_success  -> nexus_ai_time_to_first_token_seconds (when ttft_ms is given)
    request_failure  -> nexus_ai_request_failures_total{error_type}
    job_retry        -> nexus_ai_retries_total
    job_success      -> nexus_ai_jobs_total{outcome="succeeded"}, nexus_ai_response_latency_seconds
    job_failure      -> nexus_ai_jobs_total{outcome="failed"}

and, in the OpenTelemetry GenAI semantic conventions' names, bucket boundaries and labels
(``gen_ai_operation_name``, ``gen_ai_provider_name`` — ``gcp.gemini`` for the Gemini API —,
``gen_ai_request_model``, ``error_type`` on the duration of a failed request)::

    request_success  -> gen_ai_client_operation_duration_seconds,
                        gen_ai_client_token_usage{gen_ai_token_type="input"|"output"},
                        gen_ai_client_operation_time_to_first_chunk_seconds (streaming)
    request_failure  -> gen_ai_client_operation_duration_seconds{error_type=...}

When traces are exported (``nexus_core.ops.telemetry``), ``nexus_otel_spans_dropped_total{reason}``
counts the spans that never reached the collector: ``queue_full`` (the bounded export queue was
full), ``export_failed`` (the collector refused the batch or could not be reached) and
``shutdown``; it reads 0 for each reason until then.

Two gauges read their value when scraped, from callables the app supplies: jobs in flight (the
worker pool) and active sessions (sign-in sessions seen in the last 15 minutes,
``SignInService.active_sessions``); each reads 0 until its source is set. Each `NexusMetrics`
owns its own ``CollectorRegistry`` (never the global one), so tests and several app instances in
one process do not collide. Metrics never fail the caller: a malformed event is ignored, a failing
gauge source reads as NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from nexus_core.auth import ACTIVE_WITHIN
from nexus_core.ops.events import EventName, EventSink, is_synthetic
from nexus_core.ops.genai import GENAI_OPERATION, SPAN_DROP_REASONS, genai_provider_name

# Around the 3 s p95 SLO, with room for slow tails; seconds.
RESPONSE_LATENCY_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
TTFT_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
# The GenAI semantic conventions' advice: 0.01 s doubling to 81.92 s, and 1 to 4^13 tokens.
GENAI_DURATION_BUCKETS: Final = tuple(round(0.01 * 2**n, 2) for n in range(14))
GENAI_TOKEN_BUCKETS: Final = tuple(float(4**n) for n in range(14))
GENAI_LABELS: Final = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
UNKNOWN_LABEL: Final = "unknown"
MAX_LABEL_CHARS: Final = 64
ACTIVE_WITHIN_MINUTES: Final = int(ACTIVE_WITHIN.total_seconds() // 60)
MS_PER_SECOND: Final = 1000.0
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"

REQUESTS_TOTAL: Final = "nexus_ai_requests_total"
REQUEST_FAILURES_TOTAL: Final = "nexus_ai_request_failures_total"
RETRIES_TOTAL: Final = "nexus_ai_retries_total"
JOBS_TOTAL: Final = "nexus_ai_jobs_total"
SYNTHETIC_JOBS_TOTAL: Final = "nexus_ai_synthetic_jobs_total"
RESPONSE_LATENCY_SECONDS: Final = "nexus_ai_response_latency_seconds"
TTFT_SECONDS: Final = "nexus_ai_time_to_first_token_seconds"
JOBS_IN_FLIGHT: Final = "nexus_ai_jobs_in_flight"
ACTIVE_SESSIONS: Final = "nexus_active_sessions"
GENAI_DURATION: Final = "gen_ai_client_operation_duration_seconds"
GENAI_TOKEN_USAGE: Final = "gen_ai_client_token_usage"
GENAI_TIME_TO_FIRST_CHUNK: Final = "gen_ai_client_operation_time_to_first_chunk_seconds"
SPANS_DROPPED_TOTAL: Final = "nexus_otel_spans_dropped_total"
METRIC_NAMES: Final = (
    REQUESTS_TOTAL,
    REQUEST_FAILURES_TOTAL,
    RETRIES_TOTAL,
    JOBS_TOTAL,
    SYNTHETIC_JOBS_TOTAL,
    RESPONSE_LATENCY_SECONDS,
    TTFT_SECONDS,
    JOBS_IN_FLIGHT,
    ACTIVE_SESSIONS,
    GENAI_DURATION,
    GENAI_TOKEN_USAGE,
    GENAI_TIME_TO_FIRST_CHUNK,
    SPANS_DROPPED_TOTAL,
)

_LOG = logging.getLogger("nexus.events")

GaugeSource = Callable[[], float]


class NexusMetrics:
    """The app's Prometheus metrics, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            REQUESTS_TOTAL,
            "AI provider requests started, by provider and model.",
            ["provider", "model"],
            registry=self.registry,
        )
        self.request_failures = Counter(
            REQUEST_FAILURES_TOTAL,
            "AI provider requests that failed, by error type.",
            ["error_type"],
            registry=self.registry,
        )
        self.retries = Counter(
            RETRIES_TOTAL,
            "AI response jobs retried after a failed attempt.",
            registry=self.registry,
        )
        self.jobs = Counter(
            JOBS_TOTAL,
            "AI response jobs finished, by outcome (succeeded or failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.synthetic_jobs = Counter(
            SYNTHETIC_JOBS_TOTAL,
            "Jobs no user waits for (comparisons, test sets), by outcome; left out of the rest.",
            ["outcome"],
            registry=self.registry,
        )
        self.response_latency = Histogram(
            RESPONSE_LATENCY_SECONDS,
            "Time from the user's message stored to the reply stored.",
            buckets=RESPONSE_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            TTFT_SECONDS,
            "Time from sending a provider request to its first text delta.",
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.jobs_in_flight = Gauge(
            JOBS_IN_FLIGHT, "AI response jobs queued or running.", registry=self.registry
        )
        self.active_sessions = Gauge(
            ACTIVE_SESSIONS,
            f"Valid sign-in sessions seen in the last {ACTIVE_WITHIN_MINUTES} minutes.",
            registry=self.registry,
        )
        self.genai_duration = Histogram(
            GENAI_DURATION,
            "GenAI operation duration (one provider request), OpenTelemetry GenAI conventions.",
            [*GENAI_LABELS, "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.genai_tokens = Histogram(
            GENAI_TOKEN_USAGE,
            "Tokens used per provider request, by gen_ai_token_type (input or output).",
            [*GENAI_LABELS, "gen_ai_token_type"],
            buckets=GENAI_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.genai_first_chunk = Histogram(
            GENAI_TIME_TO_FIRST_CHUNK,
            "Time from sending a streaming request to its first chunk.",
            list(GENAI_LABELS),
            buckets=GENAI_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.spans_dropped = Counter(
            SPANS_DROPPED_TOTAL,
            "Trace spans never exported, by reason (queue_full, export_failed, shutdown).",
            ["reason"],
            registry=self.registry,
        )
        for reason in SPAN_DROP_REASONS:
            self.spans_dropped.labels(reason=reason)
        self.jobs_in_flight.set_function(_zero)
        self.active_sessions.set_function(_zero)

    def set_in_flight_source(self, source: GaugeSource) -> None:
        """Read ``nexus_ai_jobs_in_flight`` from ``source()`` at every scrape."""
        self.jobs_in_flight.set_function(_guarded(source, JOBS_IN_FLIGHT))

    def set_active_sessions_source(self, source: GaugeSource) -> None:
        """Read ``nexus_active_sessions`` from ``source()`` at every scrape."""
        self.active_sessions.set_function(_guarded(source, ACTIVE_SESSIONS))

    def count_dropped_spans(self, reason: str, spans: int) -> None:
        """Add ``spans`` trace spans dropped for ``reason`` (the trace exporter calls this)."""
        self.spans_dropped.labels(reason=_label(reason)).inc(spans)

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsEventSink:
    """An event sink that updates a `NexusMetrics` instead of writing anything."""

    def __init__(self, metrics: NexusMetrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            EventName.REQUEST_START: self._on_request_start,
            EventName.REQUEST_SUCCESS: self._on_request_success,
            EventName.REQUEST_FAILURE: self._on_request_failure,
            EventName.JOB_RETRY: self._on_job_retry,
            EventName.JOB_SUCCESS: self._on_job_success,
            EventName.JOB_FAILURE: self._on_job_failure,
        }

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Count the event; unknown events and malformed fields are ignored, never raised.

        Synthetic traffic (comparisons, test sets) is left out of the user-facing metrics and
        counted in ``nexus_synthetic_jobs_total`` alone."""
        handler = self._handlers.get(event)
        if handler is None:
            return
        if is_synthetic(fields):
            if event in (EventName.JOB_SUCCESS, EventName.JOB_FAILURE):
                outcome = SUCCEEDED if event == EventName.JOB_SUCCESS else FAILED
                self.metrics.synthetic_jobs.labels(outcome=outcome).inc()
            return
        try:
            handler(fields)
        except Exception:  # metrics must never break the code that emits events
            _LOG.debug("metrics ignored a malformed %r event", event, exc_info=True)

    def _on_request_start(self, fields: dict[str, Any]) -> None:
        self.metrics.requests.labels(
            provider=_label(fields.get("provider")), model=_label(fields.get("model"))
        ).inc()

    def _on_request_success(self, fields: dict[str, Any]) -> None:
        ttft = _seconds(fields.get("ttft_ms"))
        labels = _genai_labels(fields)
        if ttft is not None:
            self.metrics.time_to_first_token.observe(ttft)
            self.metrics.genai_first_chunk.labels(**labels).observe(ttft)
        self._observe_duration(labels, fields, error_type="")
        for token_type, key in (("input", "tokens_in"), ("output", "tokens_out")):
            count = fields.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                self.metrics.genai_tokens.labels(**labels, gen_ai_token_type=token_type).observe(
                    count
                )

    def _on_request_failure(self, fields: dict[str, Any]) -> None:
        error_type = _label(fields.get("error_type"))
        self.metrics.request_failures.labels(error_type=error_type).inc()
        self._observe_duration(_genai_labels(fields), fields, error_type=error_type)

    def _observe_duration(
        self, labels: dict[str, str], fields: dict[str, Any], *, error_type: str
    ) -> None:
        duration = _seconds(fields.get("latency_ms"))
        if duration is not None:
            self.metrics.genai_duration.labels(**labels, error_type=error_type).observe(duration)

    def _on_job_retry(self, fields: dict[str, Any]) -> None:
        self.metrics.retries.inc()

    def _on_job_success(self, fields: dict[str, Any]) -> None:
        self.metrics.jobs.labels(outcome=SUCCEEDED).inc()
        latency = _seconds(fields.get("latency_ms"))
        if latency is not None:
            self.metrics.response_latency.observe(latency)

    def _on_job_failure(self, fields: dict[str, Any]) -> None:
        self.metrics.jobs.labels(outcome=FAILED).inc()


class FanoutSink:
    """An event sink that forwards each event to several sinks; one failing does not stop others."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks: tuple[EventSink, ...] = sinks

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Hand the event to each sink in turn, logging (not raising) any sink's failure."""
        for sink in self.sinks:
            try:
                sink.emit(event, chat_session_id=chat_session_id, user_id=user_id, **fields)
            except Exception as exc:
                # Only the kind of failure, never the event's fields: they may hold user content.
                _LOG.warning(
                    "event sink %s failed on %r (%s)",
                    type(sink).__name__,
                    event,
                    type(exc).__name__,
                )


def _label(value: object) -> str:
    if value is None or value == "":
        return UNKNOWN_LABEL
    return str(value)[:MAX_LABEL_CHARS]


def _genai_labels(fields: dict[str, Any]) -> dict[str, str]:
    return {
        "gen_ai_operation_name": GENAI_OPERATION,
        "gen_ai_provider_name": _label(genai_provider_name(fields.get("provider"))),
        "gen_ai_request_model": _label(fields.get("model")),
    }


def _seconds(milliseconds: object) -> float | None:
    """``milliseconds`` as seconds, or None unless it is a finite, non-negative number."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int | float):
        return None
    if not math.isfinite(milliseconds) or milliseconds < 0:
        return None
    return milliseconds / MS_PER_SECOND


def _zero() -> float:
    return 0.0


def _guarded(source: GaugeSource, name: str) -> GaugeSource:
    """``source`` made safe to scrape: a failure or a non-number reads as NaN."""

    def read() -> float:
        try:
            return float(source())
        except Exception:
            _LOG.warning("gauge %s could not read its source", name, exc_info=True)
            return math.nan

    return read
