"""What a pin keeps of its notebook, when it is due for a refresh, and how its rows are stored.

A pin is a snapshot, not a reference: the pinned SQL cell, the named cells it reads (directly or
not, as ``dependencies.plan`` finds them), the parameters those cells use with the values chosen
when it was pinned, and the cell's chart. It runs on its own, exactly as the cell did in its
notebook (``runs.NotebookRunner``, one snapshot, the cells it reads first), and a later edit of
the notebook does not change it — a board shows what was pinned, the way a printed chart would.

A value left at its parameter's default keeps the default's text, so ``last 30 days`` keeps
rolling with the calendar; a value someone chose is kept as chosen (a picked range stays those
days).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal, cast

import polars as pl

from nexus_core.errors import ValidationError
from nexus_core.workbench.cells import MAX_TITLE_CHARS, Cell, ChartSpec
from nexus_core.workbench.dependencies import plan, references
from nexus_core.workbench.parameters import (
    Parameter,
    Value,
    chosen_values,
    format_value,
    parse_value,
)

Refresh = Literal["hourly", "daily", "manual"]
REFRESH_INTERVALS: Final[dict[Refresh, timedelta | None]] = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "manual": None,
}
DEFAULT_REFRESH: Final[Refresh] = "daily"
# A failed refresh of a scheduled pin is tried again on an open after this long, not only at its
# next scheduled time: most failures (a time limit on a busy machine) are passing.
RETRY_FAILED_AFTER: Final = timedelta(minutes=5)
MAX_PIN_ROWS: Final = 1_000  # rows a pin keeps of its result: a board shows, it does not export
MAX_PIN_BYTES: Final = 2 * 1024 * 1024  # the kept rows as Parquet; fewer rows are kept past it
NOT_SQL_MESSAGE: Final = "Only a SQL cell with a query can be pinned."


@dataclass(frozen=True)
class PinSnapshot:
    """What a pin stores to run on its own: cells in run order (the pinned one last), the
    parameters they use with the values chosen, and the pinned cell's chart."""

    cells: list[Cell]
    cell_id: str
    parameters: list[Parameter]
    chosen: dict[str, str]
    chart: ChartSpec | None

    @property
    def cell(self) -> Cell:
        """The pinned cell."""
        return next(cell for cell in self.cells if cell.id == self.cell_id)


def validate_refresh(refresh: str) -> Refresh:
    """``refresh`` as stored; refuses an interval the board does not know."""
    if refresh not in REFRESH_INTERVALS:
        raise ValidationError(
            f"Unknown refresh {refresh!r}; use one of {', '.join(REFRESH_INTERVALS)}."
        )
    return cast(Refresh, refresh)


def validate_pin_title(title: str) -> str:
    """A pin's title without surrounding spaces; refuses an empty or over-long one."""
    title = title.strip()
    if not title:
        raise ValidationError("Give the pin a title.")
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationError(f"A pin's title has at most {MAX_TITLE_CHARS} characters.")
    return title


def snapshot(
    cells: list[Cell],
    parameters: list[Parameter],
    chosen: dict[str, str],
    cell_id: str,
    *,
    today: date,
) -> PinSnapshot:
    """What pinning ``cell_id`` of a notebook keeps; ``ValidationError`` when that cell cannot
    run (not SQL, a cycle, a missing name) or a chosen value does not parse."""
    by_id = {cell.id: cell for cell in cells}
    target = by_id.get(cell_id)
    if target is None or target.kind != "sql" or not target.source.strip():
        raise ValidationError(NOT_SQL_MESSAGE)
    values = chosen_values(parameters, chosen, today=today)  # refuses a value that is not one
    order = plan(cells, [name for p in parameters for name in p.bound_names])
    if cell_id in order.errors:
        raise ValidationError(order.errors[cell_id])
    kept = [by_id[c] for c in order.upstream(cell_id)]
    used = {name for cell in kept for name in references(cell.source).parameters}
    inputs = [p for p in parameters if used & set(p.bound_names)]
    kept_values = {p.name: _kept_text(p, values[p.name], today) for p in inputs}
    return PinSnapshot(kept, cell_id, inputs, kept_values, target.chart)


def _kept_text(declared: Parameter, value: Value, today: date) -> str:
    """The default's own text when the value is the default's (so "last 30 days" rolls on)."""
    default = parse_value(declared, declared.default, today=today)
    if value == default:
        return declared.default
    return format_value(declared, value)


def interval_of(refresh: str) -> timedelta | None:
    """How often a pin of this ``refresh`` runs on its own (None: only by hand)."""
    return REFRESH_INTERVALS.get(cast(Refresh, refresh))


def is_due(refresh: str, refreshed_at: datetime | None, now: datetime, *, failed: bool) -> bool:
    """Whether a pin's cached result should be run again on opening its board."""
    if refreshed_at is None:
        return True
    interval = interval_of(refresh)
    if interval is None:
        return False  # manual: only the Refresh button
    if failed:
        interval = min(interval, RETRY_FAILED_AFTER)
    return now - refreshed_at >= interval


def rows_to_bytes(frame: pl.DataFrame) -> tuple[bytes, int]:
    """The first rows of ``frame`` as Parquet (types kept), within ``MAX_PIN_BYTES``: the bytes
    and how many rows they hold."""
    rows = min(frame.height, MAX_PIN_ROWS)
    while True:
        buffer = io.BytesIO()
        frame.head(rows).write_parquet(buffer)
        data = buffer.getvalue()
        if len(data) <= MAX_PIN_BYTES or rows == 0:
            return data, rows
        rows //= 2


def rows_from_bytes(data: bytes) -> pl.DataFrame:
    """The rows ``rows_to_bytes`` stored."""
    return pl.read_parquet(io.BytesIO(data))
