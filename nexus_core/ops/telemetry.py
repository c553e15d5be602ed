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

Export never slows or breaks a chat: spans go to the SDK's batch processor, whose queue is
bounded (``MAX_QUEUE``; spans past it are dropped by the SDK) and which sends from its own
thread; a failing collector costs a log line. Jobs whose end never arrives are forgotten after
``MAX_OPEN_JOBS``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from sqlalchemy import select

from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from nexus_core.ops.events import EventName
from nexus_core.ops.genai import GENAI_OPERATION, genai_provider_name

_LOG = logging.getLogger("nexus.telemetry")

TRACES_PATH: Final = "/v1/traces"
MAX_QUEUE: Final = 2048
EXPORT_BATCH: Final = 256
EXPORT_TIMEOUT_SECONDS: Final = 10
MAX_OPEN_JOBS: Final = 10_000
INSTRUMENTATION: Final = "nexus_ai"

# (user message, reply) of a job, when content is captured.
ContentReader = Callable[[str], tuple[str | None, str | None]]


def traces_endpoint(base: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (the standard variable's meaning)."""
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _span_name(model: object) -> str:
    return f"{GENAI_OPERATION} {model}" if model else GENAI_OPERATION


class TraceEventSink:
    """An event sink that turns each AI job's events into a span tree and exports it."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        service_name: str = "nexus-ai",
        content: ContentReader | None = None,
        schedule_delay_millis: int = 1000,
    ) -> None:
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUE,
                max_export_batch_size=EXPORT_BATCH,
                schedule_delay_millis=schedule_delay_millis,
            )
        )
        self.tracer = self.provider.get_tracer(INSTRUMENTATION)
        self.content = content
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
    def over_http(
        cls, endpoint: str, *, service_name: str, content: ContentReader | None = None
    ) -> TraceEventSink:
        """A sink exporting to the OTLP/HTTP collector at ``endpoint`` (its base URL)."""
        exporter = OTLPSpanExporter(
            endpoint=traces_endpoint(endpoint), timeout=EXPORT_TIMEOUT_SECONDS
        )
        return cls(exporter, service_name=service_name, content=content)

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Start or end the span the event belongs to; never raises."""
        handler = self._handlers.get(event)
        if handler is None:
            return
        try:
            with self._lock:
                handler({**fields, "chat_session_id": chat_session_id})
        except Exception:  # tracing must never break the code that emits events
            _LOG.debug("trace sink ignored a malformed %r event", event, exc_info=True)

    def _on_job_start(self, fields: dict[str, Any]) -> None:
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
