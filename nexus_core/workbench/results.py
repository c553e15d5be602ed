"""A workbench query's result: the rows kept for the screen, how many there were, and the full
result as CSV or Parquet for download.

Rows stream out of DuckDB in Arrow batches; a run for the screen keeps the first
``DISPLAY_LIMIT`` and counts the rest, so a page that keeps results between reruns never holds a
huge result. Types Polars cannot take from Arrow arrive as DuckDB's text for them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

from nexus_core.errors import QueryError
from nexus_core.spreadsheet import neutralised

DISPLAY_LIMIT: Final = 10_000
FETCH_BATCH_ROWS: Final = 8_192
NO_FULL_RESULT_MESSAGE: Final = "Only the first rows of this result were kept; run the query again."
TEXT_CAST: Final = "CAST(#{position} AS VARCHAR) AS {name}"
KEEP: Final = "#{position} AS {name}"
# Result types Polars cannot take from Arrow: shown as DuckDB's text for them.
NEEDS_TEXT: Final = re.compile(r"\b(INTERVAL|UNION|BIT|BIGNUM|VARINT)\b")


@dataclass(frozen=True, eq=False)
class QueryResult:
    """A query's rows (all, or the first ``DISPLAY_LIMIT`` on screen), how many, how long.

    A page keeps results between reruns, so a run for the screen holds at most ``DISPLAY_LIMIT``
    rows; the downloads then run the query again (``rerun``) for every row, without keeping them.
    """

    frame: pl.DataFrame
    row_count: int
    elapsed_ms: float
    rerun: Callable[[], pl.DataFrame] | None = None

    @property
    def display(self) -> pl.DataFrame:
        """The first ``DISPLAY_LIMIT`` rows, for the screen."""
        return self.frame.head(DISPLAY_LIMIT)

    @property
    def truncated(self) -> bool:
        """Whether ``display`` leaves rows out."""
        return self.row_count > DISPLAY_LIMIT

    def all_rows(self) -> pl.DataFrame:
        """Every row: the kept frame when it holds them all, else the query run again."""
        if self.frame.height >= self.row_count:
            return self.frame
        if self.rerun is None:
            raise QueryError(NO_FULL_RESULT_MESSAGE)
        return self.rerun()

    def to_csv(self, *, bom: bool = True) -> bytes:
        """The full result as UTF-8 CSV; text a spreadsheet would run as a formula is quoted."""
        frame = self.all_rows()
        flat = frame.with_columns(
            pl.col(name).map_elements(_as_text, return_dtype=pl.String)
            for name, dtype in frame.schema.items()
            if dtype.is_nested() or dtype == pl.Binary
        )
        buffer = io.BytesIO()
        neutralised(flat).write_csv(buffer, include_bom=bom)
        return buffer.getvalue()

    def to_parquet(self) -> bytes:
        """The full result as a Parquet file, values as they are."""
        buffer = io.BytesIO()
        self.all_rows().write_parquet(buffer)
        return buffer.getvalue()


def fetch(relation: duckdb.DuckDBPyRelation | None, keep: int | None) -> tuple[pl.DataFrame, int]:
    """The relation's first ``keep`` rows (all when None) as a frame, and how many there were.

    Rows stream in batches; those past ``keep`` are counted and dropped. Types Polars cannot
    take arrive as DuckDB's text for them.
    """
    if relation is None:
        return pl.DataFrame(), 0
    types = [str(kind) for kind in relation.types]
    if any(NEEDS_TEXT.search(kind) for kind in types):
        columns = enumerate(zip(relation.columns, types, strict=True), start=1)
        relation = relation.project(
            ", ".join(
                (TEXT_CAST if NEEDS_TEXT.search(kind) else KEEP).format(
                    position=position, name=_identifier(name)
                )
                for position, (name, kind) in columns
            )
        )
    if keep is None:
        frame = relation.pl()
        return frame, frame.height
    reader = relation.to_arrow_reader(FETCH_BATCH_ROWS)
    kept: list[pa.RecordBatch] = []
    held = count = 0
    for batch in reader:
        count += batch.num_rows
        if held < keep:
            kept.append(batch.slice(0, keep - held))
            held += kept[-1].num_rows
    frame = pl.from_arrow(pa.Table.from_batches(kept, schema=reader.schema))
    assert isinstance(frame, pl.DataFrame)
    return frame, count


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_text(value: object) -> str:
    """A nested or binary cell as CSV text: JSON, or hex for bytes."""
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _jsonable(value: object) -> object:
    return value.to_list() if isinstance(value, pl.Series) else str(value)
