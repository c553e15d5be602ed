"""A fake Gemini REST server: ``:generateContent`` and ``:streamGenerateContent?alt=sse``.

Script replies with `FakeGeminiServer.enqueue`; with an empty queue every request gets
`DEFAULT_TEXT`. Streams are written in ``chunk_size``-byte pieces (7 by default), which splits
``data:`` lines, ``\\r\\n`` pairs and multi-byte UTF-8 characters across network reads.
A script can also trickle (``trickle_seconds`` between pieces), keep a stream open with endless
keep-alives (``keep_alive_forever``) or end in ``flood_bytes`` of a line, text or error message
that never finishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import (
    DEFAULT_CHUNK_SIZE,
    RecordedRequest,
    ScriptedServer,
    WireReply,
    flood,
    headers_forever,
    json_bytes,
    keep_alive_forever,
    sse_frame,
)

API_PREFIX = "/v1beta"
DEFAULT_TEXT = "Hello from the fake Gemini server — naïve café ☕ 🚀."
DEFAULT_USAGE = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 9,
    "thoughtsTokenCount": 0,
    "totalTokenCount": 21,
}
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_METHOD = re.compile(
    r"/models/(?P<model>[^/:?]+):(?P<method>streamGenerateContent|generateContent)"
)


@dataclass
class GeminiScript:
    """One scripted reply; the defaults are a successful answer of `DEFAULT_TEXT`."""

    status: int = 200
    text: str | None = None
    chunks: list[str] | None = None
    thoughts: list[str] = field(default_factory=list)
    finish_reason: str | None = "STOP"
    usage: dict[str, int] | None = None
    block_reason: str | None = None
    retry_delay: str | None = None
    retry_after: str | None = None
    error_message: str | None = None
    error_reason: str | None = None
    raw_events: list[str] | None = None
    body: bytes | None = None
    delay: float = 0.0
    split_bytes: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    trickle_seconds: float | None = None  # pause between written pieces
    keep_alive_forever: bool = False  # a stream that then sends keep-alives without end
    flood_bytes: int = 0  # end the reply with this many bytes of "x" that never finish
    headers_forever: bool = False  # send header lines without end instead of a reply
    line_ending: str = "\r\n"
    headers: dict[str, str] = field(default_factory=dict)


class FakeGeminiServer(ScriptedServer):
    """A local stand-in for the Gemini REST API; ``base_url`` ends in ``/v1beta``."""

    @property
    def base_url(self) -> str:
        """The value for ``GEMINI_API_BASE``."""
        return self.origin + API_PREFIX

    def enqueue(self, **script: Any) -> GeminiScript:
        """Queue one reply; keywords are the fields of `GeminiScript`."""
        queued = GeminiScript(**script)
        self._push(queued)
        return queued

    def reply_for(self, request: RecordedRequest, script: GeminiScript | None) -> WireReply:
        """Turn a script into bytes: a Google-style error, an SSE stream or one JSON object."""
        script = script or GeminiScript()
        match = _METHOD.search(request.path)
        if match is None and script.status == 200:
            script = GeminiScript(status=404, error_message=f"Unknown path {request.path}")
        model = match["model"] if match else "unknown"
        streamed = bool(match and match["method"] == "streamGenerateContent")
        headers = dict(script.headers)
        if script.retry_after is not None:
            headers["Retry-After"] = script.retry_after
        reply = WireReply(
            status=script.status,
            headers=headers,
            delay=script.delay,
            chunk_size=script.chunk_size if script.split_bytes else None,
        )
        if script.body is not None:
            reply.pieces = [script.body]
        elif script.status != 200:
            headers.setdefault("Content-Type", "application/json; charset=UTF-8")
            reply.pieces = [json_bytes(_error_body(script, model))]
        elif streamed:
            headers["Content-Type"] = "text/event-stream"
            reply.streamed = True
            data = script.raw_events or [json_bytes(c).decode() for c in _stream_chunks(script)]
            reply.pieces = [sse_frame(d, script.line_ending) for d in data]
        else:
            headers["Content-Type"] = "application/json; charset=UTF-8"
            reply.pieces = [json_bytes(_whole_response(script))]
        _add_tail(reply, script, streamed and script.status == 200)
        return reply


def _add_tail(reply: WireReply, script: GeminiScript, streamed: bool) -> None:
    if script.trickle_seconds is not None:
        reply.pause = script.trickle_seconds
    if script.headers_forever:
        reply.raw, reply.pieces, reply.tail = True, [], headers_forever()
    elif script.keep_alive_forever:
        reply.tail = keep_alive_forever()
    elif script.flood_bytes and streamed:
        reply.tail = flood(b"data: ", script.flood_bytes)
    elif script.flood_bytes:
        if script.status == 200:
            prefix = b'{"candidates":[{"content":{"parts":[{"text":"'
        else:
            prefix = b'{"error":{"code":%d,"status":"UNAVAILABLE","message":"' % script.status
        reply.pieces = []
        reply.tail = flood(prefix, script.flood_bytes)


def _text_pieces(script: GeminiScript) -> list[str]:
    if script.chunks is not None:
        return script.chunks
    text = DEFAULT_TEXT if script.text is None else script.text
    words = re.findall(r"\S+\s*", text)
    return ["".join(words[i : i + 3]) for i in range(0, len(words), 3)]


def _candidate(parts: list[dict[str, Any]], finish_reason: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    return candidate


def _stream_chunks(script: GeminiScript) -> list[dict[str, Any]]:
    usage = script.usage if script.usage is not None else DEFAULT_USAGE
    if script.block_reason:
        return [{"promptFeedback": {"blockReason": script.block_reason}, "usageMetadata": usage}]
    pieces: list[list[dict[str, Any]]] = [[{"text": t, "thought": True}] for t in script.thoughts]
    pieces += [[{"text": t}] for t in _text_pieces(script)]
    pieces = pieces or [[]]
    chunks = []
    for number, parts in enumerate(pieces, start=1):
        last = number == len(pieces)
        chunk: dict[str, Any] = {
            "candidates": [_candidate(parts, script.finish_reason if last else None)],
            "modelVersion": "fake-gemini-001",
        }
        if last:
            chunk["usageMetadata"] = usage
        chunks.append(chunk)
    return chunks


def _whole_response(script: GeminiScript) -> dict[str, Any]:
    usage = script.usage if script.usage is not None else DEFAULT_USAGE
    if script.block_reason:
        return {"promptFeedback": {"blockReason": script.block_reason}, "usageMetadata": usage}
    parts = [{"text": t, "thought": True} for t in script.thoughts]
    text = "".join(_text_pieces(script))
    if text:
        parts.append({"text": text})
    return {"candidates": [_candidate(parts, script.finish_reason)], "usageMetadata": usage}


def _error_body(script: GeminiScript, model: str) -> dict[str, Any]:
    default_messages = {
        400: "Invalid JSON payload received.",
        404: f"models/{model} is not found for API version v1beta.",
        429: "Resource has been exhausted (e.g. check quota).",
        503: "The model is overloaded. Please try again later.",
    }
    details: list[dict[str, Any]] = []
    if script.error_reason:
        details.append(
            {"@type": ERROR_INFO_TYPE, "reason": script.error_reason, "domain": "googleapis.com"}
        )
    if script.retry_delay:
        details.append({"@type": RETRY_INFO_TYPE, "retryDelay": script.retry_delay})
    error: dict[str, Any] = {
        "code": script.status,
        "message": script.error_message or default_messages.get(script.status, "Error."),
        "status": STATUS_NAMES.get(script.status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}
