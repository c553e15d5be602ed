"""OpenTelemetry: a chat against the fake Gemini server, exported over OTLP/HTTP to a real loopback
receiver that decodes the protobuf (span names, kinds, parent and child, attributes, no content
unless asked); votes and eval judgements as ``gen_ai.evaluation.result`` events in the judged
job's trace; spans dropped for a full queue or a failed export counted on /metrics; and the
GenAI histograms on /metrics, parsed with prometheus_client's parser."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from nexus_core.app_context import AppContext
from nexus_core.compare.variants import VariantSpec
from nexus_core.compare.votes import Rating
from nexus_core.db.models import CompareVote
from nexus_core.eval.runs import EvalSpec
from nexus_core.ops.events import EventName
from nexus_core.ops.prometheus import GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS, NexusMetrics
from nexus_core.ops.telemetry import TraceEventSink, job_span_ids, traces_endpoint
from nexus_core.settings import Settings
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.receiver import Receiver

MODEL = "gemini-flash-latest"
QUESTION = "My card is 4111 and I feel unwell"


@pytest.fixture
def collector() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def chat_ctx(settings: Settings, gemini: FakeGeminiServer, collector: Receiver, **extra: Any):
    return AppContext(
        replace(
            settings,
            ai_provider="gemini",
            gemini_api_key="test-key",
            gemini_api_base=gemini.base_url,
            otel_exporter_otlp_endpoint=collector.url,
            **extra,
        )
    )


def one_chat_with_a_retry(ctx: AppContext, gemini: FakeGeminiServer) -> tuple[str, str]:
    """One chat whose first attempt gets a 503; returns (session id, job id)."""
    ctx.init()
    user = ctx.users.get("admin")
    session = ctx.chat.create_session(user, ctx.personas.list()[0].name)
    gemini.enqueue(status=503)
    gemini.enqueue(text="Please see a doctor.")
    _message, job_id = ctx.worker.ask(ctx.chat, session.public_id, user, QUESTION)
    assert ctx.worker.wait(job_id, timeout=30).status == "succeeded"
    return session.public_id, job_id


def decoded(received: list[Any]) -> list[Span]:
    """Every span in the OTLP/HTTP posts the receiver got."""
    found = []
    for post in received:
        request = ExportTraceServiceRequest()
        request.ParseFromString(post.body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                found.extend(scope.spans)
    return found


def unique_spans(received: list[Any]) -> dict[bytes, str]:
    """The spans the receiver got, once each: span id → the job id it carries."""
    found = {}
    for span in decoded(received):
        job = next((a.value.string_value for a in span.attributes if a.key == "nexus.job_id"), "")
        found[bytes(span.span_id)] = job
    return found


def spans_until(
    collector: Receiver, ctx: AppContext, condition: Callable[[list[Span]], bool]
) -> list[Span]:
    assert ctx.tracing is not None
    ctx.tracing.provider.force_flush()
    return decoded(collector.wait_for(lambda got: condition(decoded(got))))


def exported_spans(collector: Receiver, ctx: AppContext, count: int) -> list[Span]:
    return spans_until(collector, ctx, lambda spans: len(spans) >= count)


def attributes(span: Span) -> dict[str, Any]:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_a_chat_is_exported_as_a_job_span_with_a_child_span_per_attempt(
    settings: Settings, gemini_server: FakeGeminiServer, collector: Receiver
) -> None:
    ctx = chat_ctx(settings, gemini_server, collector)
    try:
        session_id, job_id = one_chat_with_a_retry(ctx, gemini_server)
        spans = exported_spans(collector, ctx, 3)
    finally:
        ctx.close()

    assert {post.path for post in collector.received} == {"/v1/traces"}
    (job,) = [s for s in spans if not s.parent_span_id]
    attempts = sorted((s for s in spans if s.parent_span_id), key=lambda s: s.start_time_unix_nano)
    assert len(attempts) == 2
    assert all(s.parent_span_id == job.span_id and s.trace_id == job.trace_id for s in attempts)
    assert {s.name for s in spans} == {f"chat {MODEL}"}
    assert {s.kind for s in spans} == {Span.SpanKind.SPAN_KIND_CLIENT}
    top = attributes(job)
    assert top["gen_ai.operation.name"] == "chat"
    assert top["gen_ai.provider.name"] == "gcp.gemini"
    assert top["gen_ai.request.model"] == MODEL
    assert top["gen_ai.response.model"]
    assert top["gen_ai.conversation.id"] == session_id
    assert top["nexus.job_id"] == job_id
    assert isinstance(top["gen_ai.usage.input_tokens"], int)
    assert isinstance(top["gen_ai.usage.output_tokens"], int)
    failed, succeeded = (attributes(s) for s in attempts)
    assert failed["error.type"] and "error.type" not in succeeded
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert isinstance(succeeded["gen_ai.usage.output_tokens"], int)
    everything = b"".join(post.body for post in collector.received)
    assert QUESTION.encode() not in everything
    assert b"Please see a doctor" not in everything


def test_message_content_is_exported_only_when_asked(
    settings: Settings, gemini_server: FakeGeminiServer, collector: Receiver
) -> None:
    ctx = chat_ctx(settings, gemini_server, collector, otel_capture_content=True)
    try:
        one_chat_with_a_retry(ctx, gemini_server)
        spans = exported_spans(collector, ctx, 3)
    finally:
        ctx.close()

    (job,) = [s for s in spans if not s.parent_span_id]
    top = attributes(job)
    assert QUESTION in top["gen_ai.input.messages"]
    assert "Please see a doctor." in top["gen_ai.output.messages"]


def test_a_dead_collector_never_breaks_a_chat(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    ctx = AppContext(
        replace(
            settings,
            ai_provider="gemini",
            gemini_api_key="test-key",
            gemini_api_base=gemini_server.base_url,
            otel_exporter_otlp_endpoint="http://127.0.0.1:9",
        )
    )
    try:
        one_chat_with_a_retry(ctx, gemini_server)
    finally:
        ctx.close()


def test_the_traces_url_follows_the_standard_variable() -> None:
    assert traces_endpoint("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_endpoint("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"


def test_the_genai_histograms_move_after_a_chat_with_the_conventions_buckets_and_labels(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    ctx = AppContext(
        replace(
            settings,
            ai_provider="gemini",
            gemini_api_key="test-key",
            gemini_api_base=gemini_server.base_url,
        )
    )
    try:
        one_chat_with_a_retry(ctx, gemini_server)
        body, _content_type = ctx.metrics.render()
    finally:
        ctx.close()

    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    duration = families["gen_ai_client_operation_duration_seconds"]
    counts = {
        s.labels["error_type"]: s.value for s in duration.samples if s.name.endswith("_count")
    }
    assert counts[""] == 1.0  # the success
    assert len(counts) == 2 and sum(counts.values()) == 2.0  # and the 503, by its error type
    sample = next(s for s in duration.samples if s.name.endswith("_count"))
    assert sample.labels["gen_ai_operation_name"] == "chat"
    assert sample.labels["gen_ai_provider_name"] == "gcp.gemini"
    assert sample.labels["gen_ai_request_model"] == MODEL
    bounds = {float(s.labels["le"]) for s in duration.samples if s.name.endswith("_bucket")}
    assert bounds == {*GENAI_DURATION_BUCKETS, float("inf")}
    assert GENAI_DURATION_BUCKETS[:3] == (0.01, 0.02, 0.04) and GENAI_DURATION_BUCKETS[-1] == 81.92
    tokens = families["gen_ai_client_token_usage"]
    types = {s.labels["gen_ai_token_type"] for s in tokens.samples if s.name.endswith("_count")}
    assert types == {"input", "output"}
    token_bounds = {float(s.labels["le"]) for s in tokens.samples if s.name.endswith("_bucket")}
    assert token_bounds == {*GENAI_TOKEN_BUCKETS, float("inf")}
    assert GENAI_TOKEN_BUCKETS[:3] == (1, 4, 16) and GENAI_TOKEN_BUCKETS[-1] == 67108864
    assert "gen_ai_client_operation_time_to_first_chunk_seconds" in families
    assert "nexus_ai_requests" in families  # the old metrics stay (a counter drops "_total")


# --- evaluations in the judged job's trace ----------------------------------------------------

EVALUATION = "gen_ai.evaluation.result"


def evaluation_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if any(e.name == EVALUATION for e in s.events)]


def event_attributes(span: Span) -> dict[str, Any]:
    (event,) = [e for e in span.events if e.name == EVALUATION]
    return attributes(event)  # type: ignore[arg-type]


def job_spans(spans: list[Span]) -> dict[str, Span]:
    """The root span of each job, by job id."""
    return {attributes(s)["nexus.job_id"]: s for s in spans if not s.parent_span_id}


def traced_ctx(settings: Settings, endpoint: str, **extra: Any) -> AppContext:
    """An app on the simulated model exporting traces to ``endpoint``."""
    return AppContext(replace(settings, otel_exporter_otlp_endpoint=endpoint, **extra))


def blind_comparison(ctx: AppContext) -> tuple[str, dict[int, str]]:
    """Two simulated variants, blind, finished; returns (run id, job id by position)."""
    ctx.init()
    admin = ctx.users.get("admin")
    first, second = (p.name for p in ctx.personas.list()[:2])
    variants = [VariantSpec(first, provider="simulated"), VariantSpec(second, provider="simulated")]
    run = ctx.compare.start(admin, "Plan a trip to Lisbon", variants, blind=True)
    view = ctx.compare.wait(admin, run.id, timeout=30)
    assert view.finished
    return run.id, {slot.position: str(slot.reply.job_id) for slot in view.slots}


def test_a_blind_vote_is_exported_as_evaluation_results_on_each_judged_jobs_span(
    settings: Settings, collector: Receiver
) -> None:
    ctx = traced_ctx(settings, collector.url)
    try:
        run_id, jobs = blind_comparison(ctx)
        admin = ctx.users.get("admin")
        ctx.compare.vote(admin, run_id, best=0, ratings={1: Rating(False, "Too long, Dr Who")})
        spans = spans_until(collector, ctx, lambda got: len(evaluation_spans(got)) == 3)
    finally:
        ctx.close()

    roots = job_spans(spans)
    results = {}
    for span in evaluation_spans(spans):
        result = event_attributes(span)
        job = roots[result["gen_ai.response.id"]]
        assert (span.trace_id, span.parent_span_id) == (job.trace_id, job.span_id)
        assert span.kind == Span.SpanKind.SPAN_KIND_INTERNAL
        assert attributes(span)["nexus.run_id"] == run_id
        results[(result["gen_ai.response.id"], result["gen_ai.evaluation.name"])] = (
            result["gen_ai.evaluation.score.value"],
            result["gen_ai.evaluation.score.label"],
            result["nexus.evaluator"],
        )
        assert "gen_ai.evaluation.explanation" not in result  # a note is content: not by default
    assert results == {
        (jobs[0], "nexus.vote.best"): (1.0, "best", "person"),
        (jobs[1], "nexus.vote.best"): (0.0, "not_best", "person"),
        (jobs[1], "nexus.vote.rating"): (0.0, "bad", "person"),
    }
    assert b"Dr Who" not in b"".join(post.body for post in collector.received)
    trace_id, span_id = job_span_ids(jobs[0])  # the same ids in any process
    assert roots[jobs[0]].trace_id == trace_id.to_bytes(16, "big")
    assert roots[jobs[0]].span_id == span_id.to_bytes(8, "big")


def test_a_voters_note_is_the_explanation_only_when_content_is_captured(
    settings: Settings, collector: Receiver
) -> None:
    ctx = traced_ctx(settings, collector.url, otel_capture_content=True)
    try:
        run_id, jobs = blind_comparison(ctx)
        admin = ctx.users.get("admin")
        ctx.compare.vote(admin, run_id, ratings={0: Rating(True, "Clear and short")})
        spans = spans_until(collector, ctx, lambda got: len(evaluation_spans(got)) == 1)
    finally:
        ctx.close()

    [span] = evaluation_spans(spans)
    result = event_attributes(span)
    assert result["gen_ai.response.id"] == jobs[0]
    assert (result["gen_ai.evaluation.name"], result["gen_ai.evaluation.score.label"]) == (
        "nexus.vote.rating",
        "good",
    )
    assert result["gen_ai.evaluation.explanation"] == "Clear and short"


def test_an_eval_judgement_is_exported_on_the_new_replys_job_span_with_its_reasons_when_asked(
    settings: Settings, collector: Receiver
) -> None:
    ctx = traced_ctx(settings, collector.url, otel_capture_content=True)
    try:
        ctx.init()
        admin = ctx.users.get("admin")
        persona = ctx.personas.list()[0].name
        session = ctx.chat.create_session(admin, persona)
        message, job_id = ctx.worker.ask(ctx.chat, session.public_id, admin, "Plan a migration")
        assert ctx.worker.wait(job_id, timeout=30).status == "succeeded"
        ctx.freezer.freeze(admin, "Traffic", message_ids=[message.id])
        spec = EvalSpec("Traffic", persona, provider="simulated", judge_provider="simulated")
        view = ctx.evals.run(admin, spec, timeout=30)
        assert view.status == "finished", view.error
        [case] = ctx.evals.cases(admin, view.id)
        spans = spans_until(collector, ctx, lambda got: len(evaluation_spans(got)) == 1)
    finally:
        ctx.close()

    assert case.outcome in ("win", "tie", "loss")
    [span] = evaluation_spans(spans)
    result = event_attributes(span)
    new_reply = job_spans(spans)[str(case.reply.job_id)]
    assert (span.trace_id, span.parent_span_id) == (new_reply.trace_id, new_reply.span_id)
    assert span.name == "evaluation nexus.judge.pairwise"
    assert result["gen_ai.evaluation.name"] == "nexus.judge.pairwise"
    assert result["gen_ai.response.id"] == case.reply.job_id
    assert result["gen_ai.evaluation.score.label"] == case.outcome
    assert (
        result["gen_ai.evaluation.score.value"]
        == {"win": 1.0, "tie": 0.5, "loss": 0.0}[case.outcome]
    )
    assert result["nexus.evaluator"] == view.judge
    assert result["nexus.order_sensitive"] == case.order_sensitive
    assert result["gen_ai.evaluation.explanation"] == " | ".join(case.reasons)


def test_a_dead_collector_never_breaks_or_slows_a_vote(settings: Settings) -> None:
    ctx = traced_ctx(settings, "http://127.0.0.1:9")
    try:
        run_id, _jobs = blind_comparison(ctx)
        admin = ctx.users.get("admin")
        started = time.monotonic()
        vote = ctx.compare.vote(admin, run_id, best=1, ratings={0: Rating(True, "")})
        took = time.monotonic() - started
        with ctx.db.session() as session:
            stored = session.scalars(select(CompareVote).where(CompareVote.run_id == run_id))
            assert [v.id for v in stored] == [vote.id]
    finally:
        ctx.close()
    assert took < 5  # the export (retrying a refused connection for seconds) is not waited for


# --- spans that never reach the collector are counted -------------------------------------------


def dropped(metrics: NexusMetrics) -> dict[str, float]:
    body, _content_type = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = families["nexus_otel_spans_dropped"].samples
    return {s.labels["reason"]: s.value for s in samples if s.name.endswith("_total")}


def test_spans_past_a_full_queue_are_counted_while_the_collector_is_slow(
    collector: Receiver,
) -> None:
    metrics = NexusMetrics()
    assert dropped(metrics) == {"queue_full": 0.0, "export_failed": 0.0, "shutdown": 0.0}
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(collector.url), timeout=30)
    sink = TraceEventSink(exporter, on_drop=metrics.count_dropped_spans, max_queue=2)
    collector.open.clear()  # the collector holds every post: the queue cannot drain
    try:
        for number in range(10):
            sink.emit(EventName.JOB_START, job_id=f"job-{number}")
            sink.emit(EventName.JOB_SUCCESS, job_id=f"job-{number}")
        full = dropped(metrics)["queue_full"]
        collector.open.set()
        sink.provider.force_flush()
        received = collector.wait_for(lambda got: len(unique_spans(got)) + full >= 10)
    finally:
        sink.shutdown()

    assert full >= 10 - 2 - 2  # at most one batch in flight (2 spans) and a full queue of 2
    # Every span exported or counted, none lost (spans counted once each, by id). The count is
    # the SDK's own: it counts a drop when it finds the queue full, and its export thread can
    # take the waiting batch before the new span goes in, so one span may be counted too many.
    exported = unique_spans(received)
    assert 10 <= len(exported) + full <= 11, (sorted(exported.values()), full)
    assert dropped(metrics)["export_failed"] == 0.0


def test_spans_the_collector_refuses_are_counted_on_the_apps_metrics(
    settings: Settings, gemini_server: FakeGeminiServer, collector: Receiver
) -> None:
    collector.status = 400  # refused, not retried
    ctx = chat_ctx(settings, gemini_server, collector)
    try:
        one_chat_with_a_retry(ctx, gemini_server)
        assert ctx.tracing is not None
        ctx.tracing.provider.force_flush()
        collector.wait_for(lambda got: len(decoded(got)) >= 3)
        counts = dropped(ctx.metrics)
    finally:
        ctx.close()
    assert counts["export_failed"] == 3.0  # the job span and its two attempts
    assert counts["queue_full"] == 0.0
