"""Two runs of a test set side by side: what regressed, what got fixed, and how fast it was.

A run is a grid of cells, one per prompt and variant. Cells of the two runs are matched by prompt
text and variant label, not by position, because adding or removing a case shifts the positions.
When a test set holds the same prompt twice, its cells are matched in order of appearance.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

Status = Literal["regressed", "fixed", "still failing", "still passing", "new", "removed"]

# Also the order rows are listed in: what needs attention first.
STATUSES: Final[tuple[Status, ...]] = (
    "regressed",
    "fixed",
    "still failing",
    "new",
    "removed",
    "still passing",
)

CellKey = tuple[str, str, int]  # prompt, variant, occurrence of that pair in the run


@dataclass(frozen=True)
class CellResult:
    """One variant's answer to one prompt in a run: pass or fail, speed, and what failed."""

    prompt_index: int
    prompt: str
    variant: str
    passed: bool
    latency_ms: float | None
    tokens_out: int | None
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiffRow:
    """One prompt and variant across the two runs; ``before`` or ``after`` is None when absent."""

    status: Status
    before: CellResult | None
    after: CellResult | None

    def __post_init__(self) -> None:
        if self.before is None and self.after is None:
            raise ValueError("A diff row needs a cell from at least one run.")

    @property
    def prompt(self) -> str:
        """The prompt text, from whichever run has the cell."""
        return self._cell.prompt

    @property
    def variant(self) -> str:
        """The variant label, from whichever run has the cell."""
        return self._cell.variant

    @property
    def prompt_index(self) -> int:
        """The prompt's position in the newer run, or in the older one for a removed cell."""
        return self._cell.prompt_index

    @property
    def _cell(self) -> CellResult:
        return self.after if self.after is not None else cast(CellResult, self.before)


@dataclass(frozen=True)
class VariantChange:
    """One variant's pass count and median latency before and after (None: no cell or no time)."""

    variant: str
    passed_before: int
    total_before: int
    passed_after: int
    total_after: int
    median_latency_before: float | None
    median_latency_after: float | None


@dataclass(frozen=True)
class RunComparison:
    """The matched rows (regressions first), the count per status, and the per-variant changes."""

    rows: tuple[DiffRow, ...]
    summary: Mapping[Status, int]
    variants: tuple[VariantChange, ...]


def compare_runs(before: Sequence[CellResult], after: Sequence[CellResult]) -> RunComparison:
    """How ``after`` differs from ``before``, cell by cell and variant by variant."""
    old, new = _keyed(before), _keyed(after)
    rows = [DiffRow(_status(old.get(key), cell), old.get(key), cell) for key, cell in new.items()]
    rows += [DiffRow("removed", cell, None) for key, cell in old.items() if key not in new]
    rows.sort(key=lambda row: (STATUSES.index(row.status), row.prompt_index, row.variant))
    summary = {status: sum(row.status == status for row in rows) for status in STATUSES}
    labels = dict.fromkeys([cell.variant for cell in after] + [cell.variant for cell in before])
    variants = tuple(_variant_change(label, before, after) for label in labels)
    return RunComparison(tuple(rows), summary, variants)


def _keyed(cells: Sequence[CellResult]) -> dict[CellKey, CellResult]:
    keyed: dict[CellKey, CellResult] = {}
    seen: dict[tuple[str, str], int] = {}
    for cell in sorted(cells, key=lambda c: c.prompt_index):
        pair = (cell.prompt, cell.variant)
        seen[pair] = seen.get(pair, -1) + 1
        keyed[(*pair, seen[pair])] = cell
    return keyed


def _status(before: CellResult | None, after: CellResult) -> Status:
    if before is None:
        return "new"
    if before.passed:
        return "still passing" if after.passed else "regressed"
    return "fixed" if after.passed else "still failing"


def _variant_change(
    variant: str, before: Sequence[CellResult], after: Sequence[CellResult]
) -> VariantChange:
    old = [cell for cell in before if cell.variant == variant]
    new = [cell for cell in after if cell.variant == variant]
    return VariantChange(
        variant=variant,
        passed_before=sum(cell.passed for cell in old),
        total_before=len(old),
        passed_after=sum(cell.passed for cell in new),
        total_after=len(new),
        median_latency_before=_median_latency(old),
        median_latency_after=_median_latency(new),
    )


def _median_latency(cells: Sequence[CellResult]) -> float | None:
    times = [cell.latency_ms for cell in cells if cell.latency_ms is not None]
    return float(statistics.median(times)) if times else None
