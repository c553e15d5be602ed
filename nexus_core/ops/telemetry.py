"""OpenTelemetry traces of AI jobs, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set, in the GenAI semantic conventions (Langfuse, Arize Phoenix, Jaeger and Grafana Tempo read
them).

Like the Prometheus metrics, traces are built from the events the job pipeline already emits,
by an event sink (``TraceEventSink``) beside the file log: one span per job and a child span per
provider attempt, each named ``chat {model}``, kind CLIENT, with ``gen_ai.operation.name``,
``gen_ai.provider.name`` (``gcp.gemini`` for the Gemini API), ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
``gen_ai.conversation.id`` (the chat session's id) and ``error.type`` on failure. Message text
is added only with ``NEXUS_OTEL_CAPTURE_CONTENT=true`` (``gen_ai.input.messages`` and
``gen_ai.output.messages``, read from the database when the job ends): it may hold personal data.

Votes and eval judgements arrive after the job's span has ended (and maybe in another process),
and an ended span takes no new events. So a job span's trace id and span id are not random but
follow from the job id (``job_span_ids``), and an ``evaluation_result`` event becomes a short
child span of that job span (its parent a remote span context with the derived ids) carrying one
``gen_ai.evaluation.result`` event, in the GenAI conventions: ``gen_ai.evaluation.name``,
``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``, ``gen_ai.response.id``
(the job id) and, with ``NEXUS_OTEL_CAPTURE_CONTENT=true`` only, ``gen_ai.evaluation.explanation``
(a voter's note, the judge's reasons; read from the database).

Export never slows or breaks a chat: spans go to the SDK's batch processor, whose queue is
bounded (``MAX_QUEUE``) and which sends from its own thread; a failing collector costs a log
line. Spans the SDK drops because the queue is full, and spans in a batch the collector did not
take, are counted (``CountingBatchSpanProcessor``: ``nexus_otel_spans_dropped_total`` on
/metrics). Jobs whose end never arrives are forgotten after ``MAX_OPEN_JOBS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from sqlalchemy import select

from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, CompareVote, EvalVerdict, Message
from nexus_core.ops.events import EventName
from nexus_core.ops.genai import (
    DROP_EXPORT_FAILED,
    DROP_QUEUE_FULL,
    DROP_SHUTDOWN,
    EVALUATION_RESULT,
    GENAI_OPERATION,
    JUDGE_PAIRWISE,
    VOTE_RATING,
    genai_provider_name,
)

_LOG = logging.getLogger("nexus.telemetry")

TRACES_PATH: Final = "/v1/traces"
MAX_QUEUE: Final = 2048
EXPORT_BATCH: Final = 256
EXPORT_TIMEOUT_SECONDS: Final = 10
MAX_OPEN_JOBS: Final = 10_000
INSTRUMENTATION: Final = "nexus_ai"

SDK_SHUTDOWN_DROP: Final = "already_shutdown"  # the SDK's error type for a span after shutdown
JOB_SPAN_SALT: Final = b"nexus-job-span:"

# (user message, reply) of a job, when content is captured.
ContentReader = Callable[[str], tuple[str | None, str | None]]
# The explanation of an ``evaluation_result`` event (a note, the judge's reasons), when captured.
ExplanationReader = Callable[[dict[str, Any]], str | None]
# Told how many spans were dropped and why; must not raise.
DropCounter = Callable[[str, int], None]


def traces_endpoint(base: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (the standard variable's meaning)."""
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _span_name(model: object) -> str:
    return f"{GENAI_OPERATION} {model}" if model else GENAI_OPERATION


def job_span_ids(job_id: str) -> tuple[int, int]:
    """The trace id and span id of a job's span: the same in every process, from the job id
    (the job id is a random UUID, so they are as random as the SDK's own)."""
    digest = hashlib.sha256(JOB_SPAN_SALT + job_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


class JobSpanIds(RandomIdGenerator):
    """Random ids, except while ``pinned`` to a job: then the ids of that job's span."""

    def __init__(self) -> None:
        self._pinned = threading.local()

    @contextmanager
    def pinned(self, job_id: str) -> Iterator[None]:
        """Within the block, this thread's new root span gets ``job_span_ids(job_id)``."""
        self._pinned.ids = job_span_ids(job_id)
        try:
            yield
        finally:
            self._pinned.ids = None

    def generate_trace_id(self) -> int:
        ids = getattr(self._pinned, "ids", None)
        return super().generate_trace_id() if ids is None else ids[0]

    def generate_span_id(self) -> int:
        ids = getattr(self._pinned, "ids", None)
        return super().generate_span_id() if ids is None else ids[1]


class _CountedExporter(SpanExporter):
    """An exporter that counts the spans of each batch its collector did not take."""

    def __init__(self, exporter: SpanExporter, on_drop: DropCounter) -> None:
        self.exporter = exporter
        self.on_drop = on_drop

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:
            _LOG.warning("the trace exporter failed", exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.on_drop(DROP_EXPORT_FAILED, len(spans))
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _CountedDrops:
    """The SDK batch processor's own accounting (its ``ProcessorMetricsT``), passed on, with the
    spans it drops also counted: ``drop_items`` is where the SDK drops a span for a full queue
    or after shutdown, and otherwise does so silently."""

    def __init__(self, metrics: Any, on_drop: DropCounter) -> None:
        self.metrics = metrics
        self.on_drop = on_drop

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self.metrics.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = DROP_QUEUE_FULL) -> None:
        self.on_drop(DROP_SHUTDOWN if error_type == SDK_SHUTDOWN_DROP else DROP_QUEUE_FULL, count)
        self.metrics.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self.metrics.finish_items(count)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (bounded queue, its own export thread), telling ``on_drop``
    about every span it drops: queue full, after shutdown, or in a batch the export failed.

    The SDK (1.30 to at least 1.45) keeps its batching in ``_batch_processor`` and reports a drop
    only to that object's ``_metrics``, so the counting wraps that; should a later SDK move it,
    queue drops go uncounted (with a warning) and export failures are still counted."""

    def __init__(self, exporter: SpanExporter, on_drop: DropCounter, **options: Any) -> None:
        safe = _never_raising(on_drop)
        super().__init__(_CountedExporter(exporter, safe), **options)
        batching = getattr(self, "_batch_processor", None)
        if batching is None or not hasattr(batching, "_metrics"):
            _LOG.warning("this opentelemetry-sdk hides its span queue: full-queue drops uncounted")
            return
        batching._metrics = _CountedDrops(batching._metrics, safe)


def _never_raising(on_drop: DropCounter) -> DropCounter:
    def count(reason: str, spans: int) -> None:
        try:
            on_drop(reason, spans)
        except Exception:
            _LOG.warning("the span drop counter failed", exc_info=True)

    return count


def _ignore_drops(_reason: str, _spans: int) -> None:
    pass


class TraceEventSink:
    """An event sink that turns each AI job's events into a span tree, and each evaluation of a
    job's reply into a ``gen_ai.evaluation.result`` event in that job's trace, and exports them."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        service_name: str = "nexus-ai",
        content: ContentReader | None = None,
        explanations: ExplanationReader | None = None,
        on_drop: DropCounter = _ignore_drops,
        schedule_delay_millis: int = 1000,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.ids = JobSpanIds()
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}), id_generator=self.ids
        )
        self.provider.add_span_processor(
            CountingBatchSpanProcessor(
                exporter,
                on_drop,
                max_queue_size=max_queue,
                max_export_batch_size=min(EXPORT_BATCH, max_queue),
                schedule_delay_millis=schedule_delay_millis,
            )
        )
        self.tracer = self.provider.get_tracer(INSTRUMENTATION)
        self.content = content
        self.explanations = explanations
        self._jobs: OrderedDict[str, Span] = OrderedDict()
        self._requests: dict[str, Span] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            EventName.JOB_START: self._on_job_start,
            EventName.REQUEST_START: self._on_request_start,
            EventName.REQUEST_SUCCESS: self._on_request_end,
            EventName.REQUEST_FAILURE: self._on_request_end,
            EventName.JOB_SUCCESS: self._on_job_end,
            EventName.JOB_FAILURE: self._on_job_end,
        }

    @classmethod
    def over_http(cls, endpoint: str, **options: Any) -> TraceEventSink:
        """A sink exporting to the OTLP/HTTP collector at ``endpoint`` (its base URL); the
        options are the constructor's."""
        exporter = OTLPSpanExporter(
            endpoint=traces_endpoint(endpoint), timeout=EXPORT_TIMEOUT_SECONDS
        )
        return cls(exporter, **options)

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Start or end the span the event belongs to, or export an evaluation; never raises."""
        handler = self._handlers.get(event)
        if handler is None and event != EventName.EVALUATION_RESULT:
            return
        try:
            if handler is None:  # an evaluation touches no open span: no lock to wait for
                self._on_evaluation(fields)
                return
            with self._lock:
                handler({**fields, "chat_session_id": chat_session_id})
        except Exception:  # tracing must never break the code that emits events
            _LOG.debug("trace sink ignored a malformed %r event", event, exc_info=True)

    def _on_job_start(self, fields: dict[str, Any]) -> None:
        with self.ids.pinned(str(fields["job_id"])):
            span = self.tracer.start_span(
                _span_name(None), kind=SpanKind.CLIENT, attributes=_common(fields)
            )
        self._jobs[str(fields["job_id"])] = span
        while len(self._jobs) > MAX_OPEN_JOBS:
            _, forgotten = self._jobs.popitem(last=False)
            forgotten.end()

    def _on_request_start(self, fields: dict[str, Any]) -> None:
        job = self._jobs.get(str(fields.get("job_id")))
        model = fields.get("model")
        if job is not None and model:
            job.update_name(_span_name(model))
            job.set_attributes(_model_attributes(fields))
        span = self.tracer.start_span(
            _span_name(model),
            context=None if job is None else set_span_in_context(job),
            kind=SpanKind.CLIENT,
            attributes={
                **_common(fields),
                **_model_attributes(fields),
                "nexus.attempt": int(fields.get("attempt") or 0),
            },
        )
        self._requests[str(fields["request_id"])] = span

    def _on_request_end(self, fields: dict[str, Any]) -> None:
        span = self._requests.pop(str(fields.get("request_id")), None)
        if span is None:
            return
        if fields.get("model"):
            span.set_attribute("gen_ai.response.model", str(fields["model"]))
        for attribute, key in (
            ("gen_ai.usage.input_tokens", "tokens_in"),
            ("gen_ai.usage.output_tokens", "tokens_out"),
        ):
            if isinstance(fields.get(key), int):
                span.set_attribute(attribute, fields[key])
        _end(span, fields.get("error_type"))

    def _on_job_end(self, fields: dict[str, Any]) -> None:
        job_id = str(fields.get("job_id"))
        span = self._jobs.pop(job_id, None)
        if span is None:
            return
        if fields.get("model"):
            span.set_attribute("gen_ai.response.model", str(fields["model"]))
        for attribute, key in (
            ("gen_ai.usage.input_tokens", "input_tokens"),
            ("gen_ai.usage.output_tokens", "output_tokens"),
        ):
            if isinstance(fields.get(key), int):
                span.set_attribute(attribute, fields[key])
        if self.content is not None:
            self._add_content(span, job_id)
        _end(span, fields.get("error_type"))

    def _add_content(self, span: Span, job_id: str) -> None:
        assert self.content is not None
        asked, answered = self.content(job_id)
        if asked is not None:
            span.set_attribute("gen_ai.input.messages", _messages("user", asked))
        if answered is not None:
            span.set_attribute("gen_ai.output.messages", _messages("assistant", answered))

    def _on_evaluation(self, fields: dict[str, Any]) -> None:
        """A short child span of the judged job's span, carrying the evaluation result."""
        job_id, name = str(fields["job_id"]), str(fields["evaluation"])
        trace_id, span_id = job_span_ids(job_id)
        sampled = TraceFlags(TraceFlags.SAMPLED)
        job = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=sampled))
        result = _evaluation_attributes(job_id, name, fields)
        if self.explanations is not None:
            explanation = self.explanations(fields)
            if explanation:
                result["gen_ai.evaluation.explanation"] = explanation
        span = self.tracer.start_span(
            f"evaluation {name}",
            context=set_span_in_context(job),
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.evaluation.name": name,
                "nexus.job_id": job_id,
                **({"nexus.run_id": str(fields["run_id"])} if fields.get("run_id") else {}),
            },
        )
        span.add_event(EVALUATION_RESULT, attributes=result)
        span.end()

    def shutdown(self) -> None:
        """End the spans still open, send what is queued and stop the exporter."""
        with self._lock:
            for span in [*self._requests.values(), *self._jobs.values()]:
                span.end()
            self._requests.clear()
            self._jobs.clear()
        self.provider.shutdown()


def _common(fields: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": GENAI_OPERATION}
    if fields.get("chat_session_id"):
        attributes["gen_ai.conversation.id"] = str(fields["chat_session_id"])
    if fields.get("job_id"):
        attributes["nexus.job_id"] = str(fields["job_id"])
    return attributes


def _model_attributes(fields: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if fields.get("provider"):
        attributes["gen_ai.provider.name"] = genai_provider_name(fields["provider"])
    if fields.get("model"):
        attributes["gen_ai.request.model"] = str(fields["model"])
    return attributes


def _evaluation_attributes(job_id: str, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.evaluation.name": name, "gen_ai.response.id": job_id}
    score = fields.get("score_value")
    if isinstance(score, int | float) and not isinstance(score, bool):
        attributes["gen_ai.evaluation.score.value"] = float(score)
    if fields.get("score_label"):
        attributes["gen_ai.evaluation.score.label"] = str(fields["score_label"])
    if fields.get("evaluator"):
        attributes["nexus.evaluator"] = str(fields["evaluator"])
    if isinstance(fields.get("order_sensitive"), bool):
        attributes["nexus.order_sensitive"] = fields["order_sensitive"]
    return attributes


def _end(span: Span, error_type: object) -> None:
    if error_type:
        span.set_attribute("error.type", str(error_type))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _messages(role: str, text: str) -> str:
    """One message in the conventions' JSON shape (role and parts)."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def stored_texts(db: Database) -> ContentReader:
    """Reads a job's user message and reply from the database (for captured content)."""

    def read(job_id: str) -> tuple[str | None, str | None]:
        with db.reading() as conn:
            job = conn.execute(
                select(AiJob.user_message_id, AiJob.reply_message_id).where(AiJob.id == job_id)
            ).first()
            if job is None:
                return None, None
            texts = dict(
                conn.execute(
                    select(Message.id, Message.content).where(
                        Message.id.in_([job.user_message_id, job.reply_message_id])
                    )
                ).all()
            )
        return texts.get(job.user_message_id), texts.get(job.reply_message_id)

    return read


def stored_explanations(db: Database) -> ExplanationReader:
    """Reads an evaluation's explanation from the database (for captured content): the note of
    a rating, the reasons the judge gave for a case."""

    def read(fields: dict[str, Any]) -> str | None:
        evaluation = fields.get("evaluation")
        with db.reading() as conn:
            if evaluation == VOTE_RATING and fields.get("vote_id") is not None:
                ratings = conn.scalar(
                    select(CompareVote.ratings).where(CompareVote.id == int(fields["vote_id"]))
                )
                rating = (ratings or {}).get(str(fields.get("position"))) or {}
                return str(rating.get("note") or "") or None
            if evaluation == JUDGE_PAIRWISE and fields.get("case_index") is not None:
                reasons = conn.scalar(
                    select(EvalVerdict.reasons).where(
                        EvalVerdict.run_id == str(fields.get("run_id")),
                        EvalVerdict.case_index == int(fields["case_index"]),
                    )
                )
                return " | ".join(str(r) for r in reasons or () if r) or None
        return None

    return read
