"""Prometheus metrics built from events: counters, histograms, gauges, rendering, fan-out."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexus_core.app_context import AppContext
from nexus_core.ops.events import EventName, ListEventSink
from nexus_core.ops.prometheus import (
    METRIC_NAMES,
    FanoutSink,
    MetricsEventSink,
    NexusMetrics,
)
from tests.constants import PASSWORD


@pytest.fixture
def metrics() -> NexusMetrics:
    return NexusMetrics()


@pytest.fixture
def sink(metrics: NexusMetrics) -> MetricsEventSink:
    return MetricsEventSink(metrics)


def sample(metrics: NexusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def emit_one_of_each(sink: MetricsEventSink) -> None:
    sink.emit(EventName.REQUEST_START, request_id="r1", attempt=1, model="m", provider="gemini")
    sink.emit(EventName.REQUEST_SUCCESS, request_id="r1", attempt=1, latency_ms=900, ttft_ms=300)
    sink.emit(EventName.REQUEST_FAILURE, request_id="r2", attempt=1, error_type="http_503")
    sink.emit(EventName.JOB_RETRY, job_id="j1", attempt=1, delay_ms=1000, error_type="http_503")
    sink.emit(EventName.JOB_SUCCESS, job_id="j1", latency_ms=2500, attempts=2)
    sink.emit(EventName.JOB_FAILURE, job_id="j2", attempts=4, error_type="http_503")
    sink.emit(EventName.JOB_SUCCESS, job_id="j3", latency_ms=100, attempts=1, run_id="run-1")


def test_synthetic_jobs_stay_out_of_the_user_metrics_and_are_counted_apart(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    run = {"run_id": "run-7"}
    sink.emit(EventName.REQUEST_START, request_id="r", attempt=1, model="m", provider="g", **run)
    sink.emit(EventName.REQUEST_FAILURE, request_id="r", attempt=1, error_type="http_500", **run)
    sink.emit(EventName.JOB_RETRY, job_id="j", attempt=1, delay_ms=10, **run)
    sink.emit(EventName.JOB_FAILURE, job_id="j", attempts=4, error_type="http_500", **run)
    sink.emit(EventName.JOB_SUCCESS, job_id="k", latency_ms=9000, attempts=1, channel="test_set")
    sink.emit(EventName.JOB_SUCCESS, job_id="u", latency_ms=800, attempts=1, channel="chat")

    assert sample(metrics, "nexus_ai_requests_total", provider="g", model="m") is None
    assert sample(metrics, "nexus_ai_request_failures_total", error_type="http_500") is None
    assert sample(metrics, "nexus_ai_retries_total") == 0
    assert sample(metrics, "nexus_ai_jobs_total", outcome="failed") is None
    assert sample(metrics, "nexus_ai_jobs_total", outcome="succeeded") == 1  # the chat one
    assert sample(metrics, "nexus_ai_response_latency_seconds_count") == 1
    assert sample(metrics, "nexus_ai_synthetic_jobs_total", outcome="failed") == 1
    assert sample(metrics, "nexus_ai_synthetic_jobs_total", outcome="succeeded") == 1


def test_request_start_counts_requests_by_provider_and_model(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    for _ in range(2):
        sink.emit(EventName.REQUEST_START, request_id="r", attempt=1, model="flash", provider="g")
    sink.emit(EventName.REQUEST_START, request_id="r", attempt=1, model="pro", provider="g")

    assert sample(metrics, "nexus_ai_requests_total", provider="g", model="flash") == 2
    assert sample(metrics, "nexus_ai_requests_total", provider="g", model="pro") == 1


def test_request_start_without_provider_or_model_counts_as_unknown(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    sink.emit(EventName.REQUEST_START, request_id="r", attempt=1)

    assert sample(metrics, "nexus_ai_requests_total", provider="unknown", model="unknown") == 1


def test_request_failure_counts_failures_by_error_type(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    sink.emit(EventName.REQUEST_FAILURE, request_id="r", error_type="http_503", retryable=True)
    sink.emit(EventName.REQUEST_FAILURE, request_id="r", error_type="http_503", retryable=True)
    sink.emit(EventName.REQUEST_FAILURE, request_id="r", error_type="timeout", retryable=True)

    assert sample(metrics, "nexus_ai_request_failures_total", error_type="http_503") == 2
    assert sample(metrics, "nexus_ai_request_failures_total", error_type="timeout") == 1


def test_job_retry_counts_retries(metrics: NexusMetrics, sink: MetricsEventSink) -> None:
    sink.emit(EventName.JOB_RETRY, job_id="j", attempt=1, delay_ms=100, error_type="http_429")
    sink.emit(EventName.JOB_RETRY, job_id="j", attempt=2, delay_ms=200, error_type="http_429")

    assert sample(metrics, "nexus_ai_retries_total") == 2


def test_job_success_observes_latency_in_seconds_and_counts_a_succeeded_job(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    sink.emit(EventName.JOB_SUCCESS, job_id="j", latency_ms=1500, attempts=1)

    assert sample(metrics, "nexus_ai_jobs_total", outcome="succeeded") == 1
    assert sample(metrics, "nexus_ai_response_latency_seconds_count") == 1
    assert sample(metrics, "nexus_ai_response_latency_seconds_sum") == pytest.approx(1.5)
    assert sample(metrics, "nexus_ai_response_latency_seconds_bucket", le="1.0") == 0
    assert sample(metrics, "nexus_ai_response_latency_seconds_bucket", le="2.0") == 1
    assert sample(metrics, "nexus_ai_response_latency_seconds_bucket", le="3.0") == 1


def test_job_failure_counts_a_failed_job(metrics: NexusMetrics, sink: MetricsEventSink) -> None:
    sink.emit(EventName.JOB_FAILURE, job_id="j", attempts=4, error_type="http_503")

    assert sample(metrics, "nexus_ai_jobs_total", outcome="failed") == 1
    assert sample(metrics, "nexus_ai_jobs_total", outcome="succeeded") is None


def test_request_success_observes_time_to_first_token_when_given(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    sink.emit(EventName.REQUEST_SUCCESS, request_id="r", latency_ms=900, ttft_ms=250)
    sink.emit(EventName.REQUEST_SUCCESS, request_id="r", latency_ms=900)

    assert sample(metrics, "nexus_ai_time_to_first_token_seconds_count") == 1
    assert sample(metrics, "nexus_ai_time_to_first_token_seconds_sum") == pytest.approx(0.25)


@pytest.mark.parametrize("latency", ["fast", None, -5, math.nan, math.inf, True, [1]])
def test_malformed_latency_is_ignored_but_the_job_still_counts(
    metrics: NexusMetrics, sink: MetricsEventSink, latency: Any
) -> None:
    sink.emit(EventName.JOB_SUCCESS, job_id="j", latency_ms=latency)
    sink.emit(EventName.REQUEST_SUCCESS, request_id="r", ttft_ms=latency)

    assert sample(metrics, "nexus_ai_jobs_total", outcome="succeeded") == 1
    assert sample(metrics, "nexus_ai_response_latency_seconds_count") == 0
    assert sample(metrics, "nexus_ai_time_to_first_token_seconds_count") == 0


def test_other_events_change_no_metric(metrics: NexusMetrics, sink: MetricsEventSink) -> None:
    before = metrics.render()[0]

    sink.emit(EventName.SIGN_IN, user_id=1)
    sink.emit("something_new", chat_session_id="s", weird=object())

    assert metrics.render()[0] == before


def test_render_parses_and_names_every_metric(
    metrics: NexusMetrics, sink: MetricsEventSink
) -> None:
    emit_one_of_each(sink)

    body, content_type = metrics.render()

    text = body.decode("utf-8")
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families} | {s.name for f in families for s in f.samples}
    assert content_type.startswith("text/plain")
    for name in METRIC_NAMES:
        assert name in names
        assert f"# TYPE {name}" in text or f"# TYPE {name.removesuffix('_total')}" in text


def test_each_instance_has_its_own_registry() -> None:
    first, second = NexusMetrics(), NexusMetrics()

    MetricsEventSink(first).emit(EventName.JOB_RETRY, job_id="j")

    assert first.registry is not second.registry
    assert first.registry.get_sample_value("nexus_ai_retries_total") == 1
    assert second.registry.get_sample_value("nexus_ai_retries_total") == 0


def test_in_flight_gauge_reads_its_source_at_every_scrape(metrics: NexusMetrics) -> None:
    jobs = {"running": 3}
    metrics.set_in_flight_source(lambda: jobs["running"])

    assert sample(metrics, "nexus_ai_jobs_in_flight") == 3
    jobs["running"] = 1
    assert sample(metrics, "nexus_ai_jobs_in_flight") == 1


def test_gauges_read_zero_before_a_source_is_set(metrics: NexusMetrics) -> None:
    assert sample(metrics, "nexus_ai_jobs_in_flight") == 0
    assert sample(metrics, "nexus_active_sessions") == 0


def test_active_sessions_gauge_reads_its_source(metrics: NexusMetrics) -> None:
    metrics.set_active_sessions_source(lambda: 7)

    assert sample(metrics, "nexus_active_sessions") == 7


def test_the_app_exports_its_sign_in_sessions_seen_lately(ctx: AppContext) -> None:
    ctx.users.create("gina", PASSWORD)
    for _ in range(2):
        assert ctx.sign_in.attempt("gina", PASSWORD)

    assert sample(ctx.metrics, "nexus_active_sessions") == 2


def test_failing_gauge_source_reads_nan_and_rendering_still_works(
    metrics: NexusMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> float:
        raise RuntimeError("queue gone")

    metrics.set_in_flight_source(broken)

    with caplog.at_level(logging.WARNING, logger="nexus.events"):
        body, _ = metrics.render()
    assert math.isnan(sample(metrics, "nexus_ai_jobs_in_flight") or 0.0)
    assert b"nexus_ai_jobs_in_flight NaN" in body
    assert "nexus_ai_jobs_in_flight" in caplog.text


class ExplodingSink:
    """A sink that always fails, standing in for a full disk or a bug."""

    def emit(self, event: str, **fields: Any) -> None:
        raise OSError("disk full")


def test_fanout_keeps_delivering_when_one_sink_raises_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, after = ListEventSink(), ListEventSink()
    fanout = FanoutSink(before, ExplodingSink(), after)

    with caplog.at_level(logging.WARNING, logger="nexus.events"):
        fanout.emit(EventName.JOB_START, chat_session_id="s1", user_id=7, job_id="j1")

    for sink in (before, after):
        assert [
            (e["event"], e["chat_session_id"], e["user_id"], e["job_id"]) for e in sink.events
        ] == [("job_start", "s1", 7, "j1")]
    assert "ExplodingSink" in caplog.text
    assert "OSError" in caplog.text
    assert "j1" not in caplog.text


def test_fanout_to_log_and_metrics_records_the_same_event_in_both(metrics: NexusMetrics) -> None:
    log = ListEventSink()
    fanout = FanoutSink(log, MetricsEventSink(metrics))

    fanout.emit(EventName.JOB_SUCCESS, chat_session_id="s", user_id=1, job_id="j", latency_ms=800)

    assert log.named(EventName.JOB_SUCCESS)[0]["latency_ms"] == 800
    assert sample(metrics, "nexus_ai_response_latency_seconds_sum") == pytest.approx(0.8)
