"""Feedback as tables: the Polars frames behind the explorer's charts and its downloads.

CSV cells that a spreadsheet would read as a formula are neutralised (``nexus_core.spreadsheet``);
the Parquet file keeps every value exactly as stored, for analysis tools that do not evaluate cells.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from nexus_core.feedback.filters import NO_PERSONA, FeedbackRow
from nexus_core.spreadsheet import neutralised

CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DONE_STATUSES = ("resolved", "closed")
BUCKETS = {"day": "1d", "week": "1w"}  # Polars truncates weeks to Mondays

UTC_TIME = pl.Datetime("us", "UTC")
EXPORT_SCHEMA: dict[str, Any] = {
    "id": pl.Int64,
    "created_at": UTC_TIME,
    "updated_at": UTC_TIME,
    "category": pl.String,
    "priority": pl.String,
    "status": pl.String,
    "rating": pl.Int64,
    "source": pl.String,
    "author": pl.String,
    "assignee": pl.String,
    "persona": pl.String,
    "session": pl.String,
    "message_id": pl.Int64,
    "description": pl.String,
}


@dataclass(frozen=True)
class FeedbackStats:
    """Chart data: count by category per period, by persona, and opened vs resolved per period.

    ``backlog`` has ``period``, ``opened`` (created), ``resolved`` (moved to resolved or
    closed), ``reopened`` and ``open_at_end`` (items still open or in progress after the period).
    """

    bucket: str
    by_category: pl.DataFrame
    by_persona: pl.DataFrame
    backlog: pl.DataFrame


def feedback_frame(rows: Sequence[FeedbackRow]) -> pl.DataFrame:
    """The rows as a frame with the export columns (UTC timestamps, raw text)."""
    return pl.DataFrame(
        [
            {
                "id": r.id,
                "created_at": r.created_at,
                "updated_at": r.updated_at,
                "category": r.category,
                "priority": r.priority,
                "status": r.status,
                "rating": r.rating,
                "source": r.source,
                "author": r.author,
                "assignee": r.assignee,
                "persona": r.persona,
                "session": r.session_public_id,
                "message_id": r.message_id,
                "description": r.description,
            }
            for r in rows
        ],
        schema=EXPORT_SCHEMA,
        orient="row",
    )


def csv_bytes(rows: Sequence[FeedbackRow]) -> bytes:
    """UTF-8 CSV (with a byte-order mark, so spreadsheets pick the encoding) of the rows."""
    frame = feedback_frame(rows).with_columns(
        pl.col("created_at", "updated_at").dt.to_string(CSV_TIME_FORMAT)
    )
    buffer = io.BytesIO()
    neutralised(frame).write_csv(buffer, include_bom=True)
    return buffer.getvalue()


def parquet_bytes(rows: Sequence[FeedbackRow]) -> bytes:
    """A Parquet file of the rows, values as stored."""
    buffer = io.BytesIO()
    feedback_frame(rows).write_parquet(buffer)
    return buffer.getvalue()


def feedback_stats(
    rows: Sequence[FeedbackRow],
    status_changes: Sequence[tuple[int, datetime, dict[str, Any]]],
    *,
    bucket: Literal["day", "week"] = "day",
) -> FeedbackStats:
    """Chart frames from the rows and their status changes ``(id, when, {"from", "to"})``."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    every = BUCKETS[bucket]
    items = pl.DataFrame(
        {
            "created_at": [r.created_at for r in rows],
            "category": [r.category for r in rows],
            "persona": [r.persona or NO_PERSONA for r in rows],
        },
        schema={"created_at": UTC_TIME, "category": pl.String, "persona": pl.String},
    ).with_columns(period=pl.col("created_at").dt.truncate(every).dt.date())
    by_category = (
        items.group_by("period", "category").agg(count=pl.len()).sort("period", "category")
    )
    by_persona = (
        items.group_by("persona")
        .agg(count=pl.len())
        .sort(["count", "persona"], descending=[True, False])
    )
    changes = pl.DataFrame(
        {
            "at": [at for _, at, _ in status_changes],
            "resolved": [_closes(d) for _, _, d in status_changes],
            "reopened": [_reopens(d) for _, _, d in status_changes],
        },
        schema={"at": UTC_TIME, "resolved": pl.Int64, "reopened": pl.Int64},
    ).with_columns(period=pl.col("at").dt.truncate(every).dt.date())
    opened = items.group_by("period").agg(opened=pl.len().cast(pl.Int64))
    moved = changes.group_by("period").agg(pl.col("resolved").sum(), pl.col("reopened").sum())
    backlog = (
        opened.join(moved, on="period", how="full", coalesce=True)
        .with_columns(pl.col("opened", "resolved", "reopened").fill_null(0))
        .sort("period")
        .with_columns(
            open_at_end=(pl.col("opened") - pl.col("resolved") + pl.col("reopened")).cum_sum()
        )
        .select("period", "opened", "resolved", "reopened", "open_at_end")
    )
    return FeedbackStats(bucket, by_category, by_persona, backlog)


def _closes(change: dict[str, Any]) -> int:
    return int(change.get("to") in DONE_STATUSES and change.get("from") not in DONE_STATUSES)


def _reopens(change: dict[str, Any]) -> int:
    return int(change.get("from") in DONE_STATUSES and change.get("to") not in DONE_STATUSES)
