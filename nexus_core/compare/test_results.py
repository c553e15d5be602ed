"""A test-set run's results: the matrix of cells (case × variant), each reply with its checks.

A cell passes when its reply arrived and passed every check (``checks.passed``); a failed job
fails every check with its error; a cell still waiting for its reply does not pass yet and says
so. Pure functions over stored replies: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from nexus_core.compare.checks import CheckOutcome, TestCase, evaluate, passed
from nexus_core.compare.run_diff import CellResult
from nexus_core.compare.run_store import CellKey, ReplyView
from nexus_core.compare.variants import VariantView

if TYPE_CHECKING:
    from nexus_core.compare.test_sets import TestRunView

PENDING: Final = "no reply yet"
RENAMED: Final = "{before} → {after}"


@dataclass(frozen=True)
class ResultCell:
    """One case answered by one variant: the reply, each check's outcome and the verdict."""

    case_index: int
    position: int
    reply: ReplyView
    outcomes: tuple[CheckOutcome, ...]
    result: CellResult

    @property
    def passed(self) -> bool:
        """Whether the reply arrived and passed every check."""
        return self.result.passed

    @property
    def finished(self) -> bool:
        """Whether the reply has arrived or failed."""
        return self.reply.finished


@dataclass(frozen=True)
class ResultsMatrix:
    """Every cell of a run, case by case and within a case by variant position."""

    run: TestRunView
    cells: tuple[ResultCell, ...]

    @property
    def cases(self) -> tuple[TestCase, ...]:
        """The run's cases (the rows)."""
        return self.run.cases

    @property
    def variants(self) -> tuple[VariantView, ...]:
        """The run's variants (the columns)."""
        return self.run.variants

    def cell(self, case_index: int, position: int) -> ResultCell:
        """The cell of one case and one variant."""
        return next(c for c in self.cells if c.case_index == case_index and c.position == position)

    def passed_count(self, position: int) -> tuple[int, int]:
        """(cells passed, cells) of one variant."""
        cells = [c for c in self.cells if c.position == position]
        return sum(c.passed for c in cells), len(cells)

    def cell_results(self) -> tuple[CellResult, ...]:
        """The cells as ``run_diff`` compares them."""
        return tuple(c.result for c in self.cells)


def build_matrix(
    cases: Sequence[TestCase],
    variants: Sequence[VariantView],
    replies: Mapping[CellKey, ReplyView],
    *,
    run: TestRunView,
) -> ResultsMatrix:
    """The matrix of a run from its cases, variants and stored replies."""
    cells = tuple(
        _cell(index, case, variant, replies[(index, variant.position)])
        for index, case in enumerate(cases)
        for variant in variants
    )
    return ResultsMatrix(run=run, cells=cells)


def _cell(index: int, case: TestCase, variant: VariantView, reply: ReplyView) -> ResultCell:
    if not reply.finished:
        outcomes: tuple[CheckOutcome, ...] = ()
        failures: tuple[str, ...] = (PENDING,)
        verdict = False
    else:
        outcomes = tuple(evaluate(case.checks, reply.text, reply.latency_ms, reply.error))
        verdict = passed(outcomes, replied=reply.succeeded)
        failures = tuple(o.detail for o in outcomes if not o.passed)
        if not reply.succeeded and not failures:  # a failed reply with no checks to fail
            failures = (f"no reply: {reply.error}" if reply.error else "no reply",)
    result = CellResult(
        prompt_index=index,
        prompt=case.prompt,
        variant=variant.label,
        passed=verdict,
        latency_ms=reply.latency_ms,
        tokens_out=reply.tokens_out,
        failures=failures,
    )
    return ResultCell(index, variant.position, reply, outcomes, result)


def matched_cells(
    before: ResultsMatrix, after: ResultsMatrix
) -> tuple[list[CellResult], list[CellResult]]:
    """Both runs' cells with variants renamed so that ``run_diff`` matches them.

    A label in both runs matches itself; the others pair up in their order in each run and are
    both named ``before → after``; what is left over keeps its own label.
    """
    old = [v.label for v in before.variants]
    new = [v.label for v in after.variants]
    only_old = [label for label in old if label not in new]
    only_new = [label for label in new if label not in old]
    names_old = {label: label for label in old}
    names_new = {label: label for label in new}
    for was, now in zip(only_old, only_new, strict=False):
        names_old[was] = names_new[now] = RENAMED.format(before=was, after=now)
    return _renamed(before, names_old), _renamed(after, names_new)


def _renamed(matrix: ResultsMatrix, names: Mapping[str, str]) -> list[CellResult]:
    return [
        CellResult(
            prompt_index=c.prompt_index,
            prompt=c.prompt,
            variant=names[c.variant],
            passed=c.passed,
            latency_ms=c.latency_ms,
            tokens_out=c.tokens_out,
            failures=c.failures,
        )
        for c in matrix.cell_results()
    ]
