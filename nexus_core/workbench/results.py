"""A workbench query's result: the rows kept for the screen, how many there were, and the full
result as a file (CSV, Parquet or JSON) for download.

A run for the screen keeps the first ``DISPLAY_LIMIT`` rows, and no more than
``DISPLAY_MAX_BYTES`` of them, and counts the rest, so a page that keeps results between
reruns never holds a huge result. A download runs the query again and builds its file in the
query process (``query_process``), within its own byte limit.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from math import isfinite
from typing import Final

import polars as pl

from nexus_core.errors import QueryError
from nexus_core.spreadsheet import neutralised

DISPLAY_LIMIT: Final = 10_000
DISPLAY_MAX_BYTES: Final = 16 * 1024 * 1024
NO_FULL_RESULT_MESSAGE: Final = "Only the first rows of this result were kept; run the query again."
FILE_FORMATS: Final = ("csv", "csv_bom", "parquet", "json")


@dataclass(frozen=True, eq=False)
class QueryResult:
    """A query's rows (all, or the first ones on screen), how many there were, how long it took.

    ``export`` builds the full result as a file (one of ``FILE_FORMATS``) by running the query
    again; without it only a result whose rows were all kept can be downloaded.
    """

    frame: pl.DataFrame
    row_count: int
    elapsed_ms: float
    export: Callable[[str], bytes] | None = None

    @property
    def display(self) -> pl.DataFrame:
        """The first ``DISPLAY_LIMIT`` rows, for the screen."""
        return self.frame.head(DISPLAY_LIMIT)

    @property
    def truncated(self) -> bool:
        """Whether ``display`` leaves rows out."""
        return self.row_count > self.display.height

    def file(self, fmt: str) -> bytes:
        """The full result as a file: from the kept rows when they are all, else run again."""
        if self.frame.height >= self.row_count:
            return file_bytes(self.frame, fmt)
        if self.export is None:
            raise QueryError(NO_FULL_RESULT_MESSAGE)
        return self.export(fmt)

    def to_csv(self, *, bom: bool = True) -> bytes:
        """The full result as UTF-8 CSV; text a spreadsheet would run as a formula is quoted."""
        return self.file("csv_bom" if bom else "csv")

    def to_parquet(self) -> bytes:
        """The full result as a Parquet file, values as they are."""
        return self.file("parquet")


def file_bytes(frame: pl.DataFrame, fmt: str) -> bytes:
    """``frame`` as a file of one of ``FILE_FORMATS`` (CSV with formulas neutralised)."""
    if fmt == "json":
        return json_rows(frame).encode()
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.write_parquet(buffer)
    elif fmt in ("csv", "csv_bom"):
        neutralised(frame).write_csv(buffer, include_bom=fmt == "csv_bom")
    else:
        raise ValueError(f"unknown file format {fmt!r}")
    return buffer.getvalue()


def json_rows(frame: pl.DataFrame) -> str:
    """Every row as a JSON array of objects; times in ISO 8601, NaN and infinities as null."""
    rows = frame.iter_rows(named=True)
    return json.dumps(
        [{name: _json_value(v) for name, v in row.items()} for row in rows], ensure_ascii=False
    )


def _json_value(value: object) -> object:
    if isinstance(value, float):
        return value if isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
