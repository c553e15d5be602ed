"""OpenTelemetry: a chat against the fake Gemini server, exported over OTLP/HTTP to a real loopback
receiver that decodes the protobuf (span names, kinds, parent and child, attributes, no content
unless asked); and the GenAI histograms on /metrics, parsed with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from nexus_core.app_context import AppContext
from nexus_core.ops.prometheus import GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS
from nexus_core.ops.telemetry import traces_endpoint
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


def exported_spans(collector: Receiver, ctx: AppContext, count: int) -> list[Span]:
    assert ctx.tracing is not None
    ctx.tracing.provider.force_flush()

    def spans(received: list[Any]) -> list[Span]:
        found = []
        for post in received:
            request = ExportTraceServiceRequest()
            request.ParseFromString(post.body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found

    return spans(collector.wait_for(lambda got: len(spans(got)) >= count))


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
