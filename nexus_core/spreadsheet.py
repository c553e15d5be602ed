"""Cells that are safe to open in a spreadsheet (OWASP: CSV injection).

A CSV cell that a spreadsheet would read as a formula (starting with ``= + - @``, a tab or a
carriage return) gets a leading single quote. That holds for every cell that is not a number, a
time or a boolean — text, categorical and enum columns alike, whatever their type — and for
the column headers, which a query can name freely. Every CSV download of Nexus AI goes through
here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence

import polars as pl

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_PATTERN = r"^[=+\-@\t\r]"
NEUTRALISING_PREFIX = "'"


def neutralise(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading quote when it could start a formula."""
    return NEUTRALISING_PREFIX + value if value.startswith(FORMULA_PREFIXES) else value


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every header and every cell that is not a number, time or boolean
    passed through ``neutralise`` (as text: categorical and enum columns become strings)."""
    cells = frame.with_columns(
        pl.when(text.str.contains(FORMULA_PATTERN))
        .then(pl.lit(NEUTRALISING_PREFIX) + text)
        .otherwise(text)
        .alias(name)
        for name, dtype in frame.schema.items()
        if _may_hold_text(dtype)
        for text in (_as_text(name, dtype),)
    )
    return cells.rename(dict(zip(cells.columns, _headers(cells.columns), strict=True)))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows of plain values as CSV text, every header and cell passed through ``neutralise``
    (numbers too: ``-1+cmd`` is only text until a spreadsheet reads it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([neutralise(str(name)) for name in header])
    for row in rows:
        writer.writerow(["" if cell is None else neutralise(str(cell)) for cell in row])
    return buffer.getvalue()


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as CSV text: nested values as JSON, bytes as hex, the rest cast."""
    if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
        return pl.col(name).map_elements(_cell_text, return_dtype=pl.String)
    return pl.col(name).cast(pl.String)


def _cell_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _jsonable(value: object) -> object:
    return value.to_list() if isinstance(value, pl.Series) else str(value)


def _may_hold_text(dtype: pl.DataType) -> bool:
    return not (dtype.is_numeric() or dtype.is_temporal() or dtype in (pl.Boolean, pl.Null))


def _headers(names: list[str]) -> list[str]:
    """Neutralised column names, kept unique (a name that collides gets a number)."""
    taken: set[str] = set()
    headers = []
    for name in names:
        header, n = neutralise(name), 2
        while header in taken:
            header, n = f"{neutralise(name)} ({n})", n + 1
        taken.add(header)
        headers.append(header)
    return headers
