"""Running a notebook: its SQL cells in dependency order on one snapshot, and which results are
out of date.

One run opens one ``WorkbenchSession`` (one snapshot, one query process). Each cell gets the
notebook's parameters it uses as bound values; a named cell that a later cell reads keeps its whole
result in the query process as a table of that name, so the later cell reads exactly what the
earlier one showed, from the same snapshot. Running one cell runs the cells it reads first, on a
fresh snapshot, so its inputs are never older than its data.

Changing a cell does not re-run the cells that read it: they are marked *stale* (``stale_cells``)
until the next run. A query can take seconds over a large log and is capped by a time limit;
re-running a chain on every keystroke would spend that on every edit, and would replace results
the analyst is still reading. A stale mark says what is out of date; "Run all" (or running the
stale cell, which brings its inputs along) brings it up to date.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Final

from nexus_core.errors import NexusError
from nexus_core.workbench.cells import Cell
from nexus_core.workbench.dependencies import Plan, plan, references
from nexus_core.workbench.parameters import Bound, Parameter, bindings, chosen_values
from nexus_core.workbench.results import DISPLAY_LIMIT, QueryResult
from nexus_core.workbench.sandbox import Workbench, WorkbenchSession

FAILED_INPUT_MESSAGE: Final = "Not run: it reads {name!r}, which failed (see that cell)."
RESTARTED_MESSAGE: Final = (
    "Not run: the query process was restarted after a cell was stopped, so {name!r}'s result "
    "from this run is gone. Fix or narrow the stopped cell and run all again."
)

Progress = Callable[[int, int], None]  # (cells done, cells to run)


@dataclass(frozen=True, eq=False)
class CellRun:
    """One SQL cell's last run: what it ran with, and its result or the reason it has none."""

    cell_id: str
    source: str
    name: str | None
    bound: dict[str, Bound]  # the parameter values it was given (those it uses)
    inputs: dict[str, str] = field(default_factory=dict)  # id of a cell it read -> that run
    result: QueryResult | None = None
    error: str | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class NotebookRunner:
    """Runs a notebook's cells with its parameters through the workbench's sandbox."""

    workbench: Workbench
    include_message_content: bool
    keep: int | None = DISPLAY_LIMIT

    def run(
        self,
        cells: list[Cell],
        parameters: list[Parameter],
        chosen: Mapping[str, str],
        *,
        only: str | None = None,
        today: date | None = None,
        progress: Progress | None = None,
    ) -> dict[str, CellRun]:
        """Run every SQL cell (or ``only`` one and the cells it reads) on one snapshot; a cell's
        own failure is its run's error. ``ValidationError`` when a chosen value is not valid."""
        bound = bindings(parameters, chosen_values(parameters, dict(chosen), today=_today(today)))
        order = plan(cells, bound)
        targets = order.upstream(only) if only is not None else [*order.order, *order.errors]
        by_id = {cell.id: cell for cell in cells}
        read = {source for cell_id in targets for source in order.inputs.get(cell_id, ())}
        runs: dict[str, CellRun] = {}
        with self.workbench.open(include_message_content=self.include_message_content) as session:
            made: dict[str, int] = {}  # named cell id -> the session generation that holds it
            for done, cell_id in enumerate(targets):
                if progress is not None:
                    progress(done, len(targets))
                cell = by_id[cell_id]
                run = self._cell(session, cell, order, bound, runs, made, keep_name=cell_id in read)
                if run.result is not None and cell_id in read:
                    made[cell_id] = session.generation
                runs[cell_id] = run
        return runs

    def _cell(
        self,
        session: WorkbenchSession,
        cell: Cell,
        order: Plan,
        bound: dict[str, Bound],
        runs: dict[str, CellRun],
        made: dict[str, int],
        *,
        keep_name: bool,
    ) -> CellRun:
        used = _used(cell, bound)
        inputs = order.inputs.get(cell.id, ())
        base = CellRun(
            cell.id, cell.source, cell.name, used, {i: runs[i].token for i in inputs if i in runs}
        )
        blocked = order.errors.get(cell.id) or _blocked(inputs, runs, made, session)
        if blocked:
            return replace(base, error=blocked)
        name = cell.name if keep_name else None
        try:
            result = session.run(cell.source, keep=self.keep, params=used, name=name)
        except NexusError as exc:
            return replace(base, error=str(exc))
        if inputs or name:  # a fresh snapshot has no earlier results: bring them along
            chain = [c for c in order.upstream(cell.id) if c != cell.id]
            result = replace(result, export=self._chained_export(chain, cell, runs, bound))
        return replace(base, result=result)

    def _chained_export(
        self, chain: list[str], cell: Cell, runs: dict[str, CellRun], bound: dict[str, Bound]
    ) -> Callable[[str], bytes]:
        """The full result as a file: the cells it reads again, then it, on a fresh snapshot."""
        steps = [(runs[c].source, runs[c].name, runs[c].bound) for c in chain if c in runs]
        sql, used = cell.source, _used(cell, bound)

        def export(fmt: str) -> bytes:
            with self.workbench.open(
                include_message_content=self.include_message_content
            ) as session:
                for source, name, params in steps:
                    session.run(source, keep=0, params=params, name=name)
                return session.export(sql, fmt, params=used)

        return export


def _today(today: date | None) -> date:
    return today if today is not None else datetime.now(UTC).date()


def _used(cell: Cell, bound: dict[str, Bound]) -> dict[str, Bound]:
    """The bound values of the ``$names`` the cell's SQL uses (DuckDB refuses unused ones)."""
    return {
        name: bound[name] for name in sorted(references(cell.source).parameters) if name in bound
    }


def _blocked(
    inputs: tuple[str, ...],
    runs: dict[str, CellRun],
    made: dict[str, int],
    session: WorkbenchSession,
) -> str | None:
    for source in inputs:
        earlier = runs.get(source)
        name = earlier.name if earlier is not None else source
        if earlier is None or earlier.result is None:
            return FAILED_INPUT_MESSAGE.format(name=name)
        if made.get(source) != session.generation:
            return RESTARTED_MESSAGE.format(name=name)
    return None


def stale_cells(
    cells: list[Cell],
    parameters: list[Parameter],
    chosen: Mapping[str, str],
    runs: Mapping[str, CellRun],
    *,
    today: date | None = None,
) -> set[str]:
    """The cells whose last run is out of date: their SQL or name changed, a parameter they use
    has another value now, or a cell they read changed, ran again or is stale itself."""
    try:
        bound = bindings(parameters, chosen_values(parameters, dict(chosen), today=_today(today)))
    except NexusError:
        return set(runs)  # no valid values: nothing can be said to be current
    order = plan(cells, bound)
    by_id = {cell.id: cell for cell in cells}
    stale: set[str] = set()
    for cell_id in [*order.order, *order.errors]:
        run = runs.get(cell_id)
        if run is None:
            continue
        cell = by_id[cell_id]
        inputs = order.inputs.get(cell_id, ())
        changed = (
            run.source != cell.source
            or run.name != cell.name
            or run.bound != _used(cell, bound)
            or set(run.inputs) != set(inputs)
        )
        behind = any(
            i in stale or i not in runs or runs[i].token != run.inputs.get(i) for i in inputs
        )
        if changed or behind:
            stale.add(cell_id)
    return stale
