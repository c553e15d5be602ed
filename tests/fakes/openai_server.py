"""A fake OpenAI-compatible server: streaming ``POST /v1/chat/completions``.

Script replies with `FakeOpenAIServer.enqueue`; with an empty queue every request gets
`DEFAULT_TEXT`. Like the Gemini fake, streams are written in small byte pieces, and a script can
trickle, keep the stream open with keep-alives, or end in a flood that never finishes.
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

API_PREFIX = "/v1"
COMPLETIONS_PATH = API_PREFIX + "/chat/completions"
DEFAULT_TEXT = "Hello from the fake OpenAI-compatible server — größer ✓ 🚀."
DEFAULT_USAGE = {"prompt_tokens": 15, "completion_tokens": 10, "total_tokens": 25}
DONE_FRAME = sse_frame("[DONE]")
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit"}


@dataclass
class OpenAIScript:
    """One scripted reply; the defaults are a successful streamed answer of `DEFAULT_TEXT`."""

    status: int = 200
    text: str | None = None
    chunks: list[str] | None = None
    finish_reason: str | None = "stop"
    usage: dict[str, Any] | None = None
    send_done: bool = True
    retry_after: str | None = None
    error_message: str | None = None
    raw_events: list[str] | None = None
    body: bytes | None = None
    delay: float = 0.0
    split_bytes: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    trickle_seconds: float | None = None  # pause between written pieces
    keep_alive_forever: bool = False  # a stream that then sends keep-alives without end
    flood_bytes: int = 0  # end the reply with this many bytes of "x" that never finish
    headers_forever: bool = False  # send header lines without end instead of a reply
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenAIServer(ScriptedServer):
    """A local stand-in for an OpenAI-compatible server; ``base_url`` ends in ``/v1``."""

    @property
    def base_url(self) -> str:
        """The value for ``OPENAI_API_BASE``."""
        return self.origin + API_PREFIX

    def enqueue(self, **script: Any) -> OpenAIScript:
        """Queue one reply; keywords are the fields of `OpenAIScript`."""
        queued = OpenAIScript(**script)
        self._push(queued)
        return queued

    def reply_for(self, request: RecordedRequest, script: OpenAIScript | None) -> WireReply:
        """Turn a script into bytes: an OpenAI-style error or an SSE stream ending in [DONE]."""
        script = script or OpenAIScript()
        if request.path.split("?")[0] != COMPLETIONS_PATH and script.status == 200:
            script = OpenAIScript(status=404, error_message=f"Unknown path {request.path}")
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
            headers.setdefault("Content-Type", "application/json")
            message = script.error_message or f"Error {script.status}."
            error = {"message": message, "type": ERROR_TYPES.get(script.status, "server_error")}
            reply.pieces = [json_bytes({"error": error})]
        else:
            headers["Content-Type"] = "text/event-stream"
            reply.streamed = True
            body = request.body if isinstance(request.body, dict) else {}
            if script.raw_events is not None:
                reply.pieces = [sse_frame(data) for data in script.raw_events]
            else:
                model = str(body.get("model", "fake-model"))
                with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                chunks = _stream_chunks(script, model, with_usage)
                reply.pieces = [sse_frame(json_bytes(chunk)) for chunk in chunks]
            if script.send_done and not (script.keep_alive_forever or script.flood_bytes):
                reply.pieces.append(DONE_FRAME)
        _add_tail(reply, script)
        return reply


def _add_tail(reply: WireReply, script: OpenAIScript) -> None:
    if script.trickle_seconds is not None:
        reply.pause = script.trickle_seconds
    if script.headers_forever:
        reply.raw, reply.pieces, reply.tail = True, [], headers_forever()
    elif script.keep_alive_forever:
        reply.tail = keep_alive_forever()
    elif script.flood_bytes and script.status == 200:
        reply.tail = flood(b"data: ", script.flood_bytes)
    elif script.flood_bytes:
        reply.pieces = []
        reply.tail = flood(b'{"error":{"type":"server_error","message":"', script.flood_bytes)


def _chunk(model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": choices,
        **extra,
    }


def _stream_chunks(script: OpenAIScript, model: str, with_usage: bool) -> list[dict[str, Any]]:
    if script.chunks is not None:
        pieces = script.chunks
    else:
        words = re.findall(r"\S+\s*", DEFAULT_TEXT if script.text is None else script.text)
        pieces = ["".join(words[i : i + 2]) for i in range(0, len(words), 2)]
    chunks = [_chunk(model, [{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    chunks += [
        _chunk(model, [{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for piece in pieces
    ]
    if script.finish_reason:
        chunks.append(
            _chunk(model, [{"index": 0, "delta": {}, "finish_reason": script.finish_reason}])
        )
    if with_usage:
        usage = script.usage if script.usage is not None else DEFAULT_USAGE
        chunks.append(_chunk(model, [], usage=usage))
    return chunks
