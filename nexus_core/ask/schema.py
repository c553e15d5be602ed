"""What a model is told about the workbench's data: each view's name, a one-line description, its
columns with their DuckDB types and a note on the columns whose meaning is not in their name.

The names and types come from the views the sandbox really builds (``view_schemas``), for what
this viewer may see. Rows go in only when the user allows it (``SampleRows``), a few per view, each
value cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

from nexus_core.db.models import (
    FEEDBACK_CATEGORIES,
    FEEDBACK_PRIORITIES,
    FEEDBACK_STATUSES,
    MESSAGE_ROLES,
)
from nexus_core.roles import ROLES

SAMPLE_ROWS: Final = 3  # rows of each view a model sees when the user allows it
SAMPLE_VALUE_CHARS: Final = 60  # each sample value is cut to this many characters
SAMPLE_SQL: Final = "SELECT * FROM {view} LIMIT {rows:d}"

VIEW_DESCRIPTIONS: Final[dict[str, str]] = {
    "events": "The AI pipeline's event log, one row per event (jobs, HTTP requests, retries).",
    "sessions": "Chat sessions, with the name of their persona.",
    "messages": "Chat messages: user prompts, assistant replies and error bubbles.",
    "feedback": "Feedback: reports with category and priority, and thumbs ratings of replies.",
    "audit_events": "The audit trail: who did what, and when.",
    "personas": "The personas (assistants) users chat with, as they are now.",
    "users": "User accounts and their roles.",
}
COLUMN_NOTES: Final[dict[str, dict[str, str]]] = {
    "events": {
        "ts": "when, UTC",
        "event": "job_success (a reply delivered), job_failure, job_retry, request_start, "
        "request_success, request_failure, job_enqueued, job_start",
        "chat_session_id": "= sessions.public_id",
        "latency_ms": "job_success: from the user's message to the stored reply; request_*: "
        "the HTTP call",
        "persona": "job_success only",
        "model": "job_success and request_start",
        "request_id": "joins a request_success/request_failure to its request_start (which "
        "has the model)",
        "error_type": "request_failure, job_failure, job_retry",
        "cost_usd": "job_success; null when unpriced",
        "channel": "job_success: chat, compare, test_set, eval, cli",
        "traffic": "'user' or 'synthetic' (comparisons, test sets, evaluations)",
    },
    "sessions": {
        "public_id": "= events.chat_session_id",
        "persona": "the persona's name",
        "run_id": "set for the hidden sessions of comparisons and test sets",
    },
    "messages": {
        "session_id": "= sessions.id",
        "role": ", ".join(MESSAGE_ROLES),
        "latency_ms": "assistant replies",
    },
    "feedback": {
        "session_id": "= sessions.id",
        "message_id": "= messages.id",
        "rating": "thumbs: 1 up, 0 down; null for a report",
        "category": ", ".join(FEEDBACK_CATEGORIES),
        "priority": ", ".join(FEEDBACK_PRIORITIES),
        "status": ", ".join(FEEDBACK_STATUSES),
    },
    "audit_events": {"details": "JSON"},
    "users": {"role": ", ".join(ROLES)},
}


def describe_schema(
    schemas: Mapping[str, Mapping[str, str]], samples: Mapping[str, pl.DataFrame] | None = None
) -> str:
    """The views as text for a model: one line per view, one per column; ``samples`` (rows of
    each view) only when given."""
    lines: list[str] = []
    for view, columns in schemas.items():
        lines.append(f"{view} — {VIEW_DESCRIPTIONS.get(view, '')}".rstrip(" —"))
        notes = COLUMN_NOTES.get(view, {})
        for column, kind in columns.items():
            note = notes.get(column)
            lines.append(f"  {column} {kind}" + (f" — {note}" if note else ""))
        if samples is not None and view in samples:
            lines.extend(_sample_lines(samples[view]))
    return "\n".join(lines)


def _sample_lines(frame: pl.DataFrame) -> list[str]:
    if frame.is_empty():
        return ["  sample rows: none"]
    lines = ["  sample rows:"]
    for row in frame.head(SAMPLE_ROWS).iter_rows(named=True):
        values = ", ".join(f"{name}={_short(value)}" for name, value in row.items())
        lines.append(f"    {values}")
    return lines


def _short(value: object) -> str:
    text = "null" if value is None else " ".join(str(value).split())
    return text if len(text) <= SAMPLE_VALUE_CHARS else text[: SAMPLE_VALUE_CHARS - 1] + "…"
