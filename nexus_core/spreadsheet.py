"""Cells that are safe to open in a spreadsheet (OWASP: CSV injection).

A CSV cell that a spreadsheet would read as a formula (starting with ``= + - @``, a tab or a
carriage return) gets a leading single quote. Every CSV download of Nexus AI goes through here.
"""

from __future__ import annotations

import polars as pl

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_PATTERN = r"^[=+\-@\t\r]"
NEUTRALISING_PREFIX = "'"


def neutralise(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading quote when it could start a formula."""
    return NEUTRALISING_PREFIX + value if value.startswith(FORMULA_PREFIXES) else value


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text cell of ``frame`` passed through ``neutralise`` (vectorised)."""
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(FORMULA_PATTERN))
        .then(pl.lit(NEUTRALISING_PREFIX) + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )
