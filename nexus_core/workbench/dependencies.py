"""Which cells read which: the order a notebook runs in, and the cells that cannot run.

A SQL cell reads another when its query names that cell's name as a table. What a query names is
read from DuckDB's own parse tree (``json_serialize_sql``: tables it reads, minus its CTEs, and
the ``$parameters`` it uses), never by searching the text, so a column or a string that happens to
spell a cell's name is not a dependency. Parsing runs nothing: it needs no data and no sandbox.

``plan`` orders the SQL cells so every cell runs after the cells it reads (notebook order where
that leaves a choice). A cell that reads a name no cell and no view has, or that is part of a
cycle, gets an error of its own and does not run; so do the cells that read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

import duckdb

from nexus_core.workbench.cells import RESERVED_NAMES, Cell
from nexus_core.workbench.query_process import parse_tree, tree_nodes

PARSE_SQL: Final = "SELECT json_serialize_sql($sql)"
# Names DuckDB itself answers (its catalog views): never reported as missing.
SYSTEM_PREFIXES: Final = ("duckdb_", "pg_", "sqlite_", "information_schema")
MISSING_MESSAGE: Final = (
    "No cell is named {name!r} and no view has that name. Name an earlier SQL cell {name!r} "
    "(the name box above its SQL), or read one of the views: {views}."
)
CYCLE_MESSAGE: Final = (
    "These cells read each other in a circle, so none of them can run first: {path} "
    "(→: reads). "
    "Break the circle by changing what one of them reads."
)
SELF_MESSAGE: Final = "Cell {name!r} reads its own name; a cell reads earlier results only."
UPSTREAM_MESSAGE: Final = "Not run: it reads {name!r}, which cannot run (see that cell)."
UNDECLARED_MESSAGE: Final = (
    "${name} is not a parameter of this notebook; declare it in the notebook's parameters "
    "(`{name}: text = …`) or remove it from the SQL."
)


@dataclass(frozen=True)
class References:
    """What one query reads: table names (lower case, CTEs left out) and ``$parameter`` names."""

    tables: frozenset[str] = frozenset()
    parameters: frozenset[str] = frozenset()


@lru_cache(maxsize=1024)
def references(sql: str) -> References:
    """The tables and parameters ``sql`` names; nothing when it does not parse (running it
    reports DuckDB's error, with its position)."""
    con = duckdb.connect()
    try:
        rows = con.execute(PARSE_SQL, {"sql": sql}).fetchall()
    except duckdb.Error:
        return References()
    finally:
        con.close()
    tree = parse_tree(rows[0][0] if rows else None)
    if tree.get("error"):
        return References()
    tables: set[str] = set()
    ctes: set[str] = set()
    parameters: set[str] = set()
    for node in tree_nodes(tree.get("statements", [])):
        if node.get("type") == "BASE_TABLE" and not node.get("schema_name"):
            tables.add(str(node.get("table_name", "")).lower())
        elif node.get("class") == "PARAMETER" and node.get("identifier"):
            parameters.add(str(node["identifier"]))
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
    return References(frozenset(tables - ctes), frozenset(parameters))


@dataclass(frozen=True)
class Plan:
    """The SQL cells in the order they run, what each reads, and why some cannot run."""

    order: tuple[str, ...]  # cell ids, each after the cells it reads
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # cell id -> cells it reads
    errors: dict[str, str] = field(default_factory=dict)  # cell id -> why it cannot run

    def upstream(self, cell_id: str) -> list[str]:
        """``cell_id`` and every cell it reads, directly or not, in run order."""
        wanted = {cell_id}
        stack = [cell_id]
        while stack:
            for source in self.inputs.get(stack.pop(), ()):
                if source not in wanted:
                    wanted.add(source)
                    stack.append(source)
        return [c for c in (*self.order, *self.errors) if c in wanted]

    def downstream(self, cell_id: str) -> set[str]:
        """Every cell that reads ``cell_id``, directly or not."""
        found: set[str] = set()
        frontier = {cell_id}
        while frontier:
            frontier = {c for c, ins in self.inputs.items() if frontier & set(ins)} - found
            found |= frontier
        return found


def plan(cells: Iterable[Cell], parameter_names: Iterable[str] = ()) -> Plan:
    """The run order of the SQL cells, and an error for each cell that cannot run."""
    sql_cells = [cell for cell in cells if cell.kind == "sql"]
    by_name = {cell.name.lower(): cell.id for cell in sql_cells if cell.name}
    names = {cell.id: cell.name or "" for cell in sql_cells}
    declared = set(parameter_names)
    inputs: dict[str, tuple[str, ...]] = {}
    errors: dict[str, str] = {}
    for cell in sql_cells:
        read = references(cell.source)
        inputs[cell.id] = tuple(by_name[t] for t in sorted(read.tables) if t in by_name)
        problem = _missing(read, by_name, declared)
        if problem:
            errors[cell.id] = problem
    order = _ordered([c.id for c in sql_cells], inputs, errors, names)
    return Plan(tuple(order), inputs, errors)


def _missing(read: References, by_name: dict[str, str], declared: set[str]) -> str | None:
    for table in sorted(read.tables):
        known = table in by_name or table in RESERVED_NAMES or table.startswith(SYSTEM_PREFIXES)
        if not known:
            views = ", ".join(sorted(RESERVED_NAMES))
            return MISSING_MESSAGE.format(name=table, views=views)
    for name in sorted(read.parameters):
        if name not in declared:
            return UNDECLARED_MESSAGE.format(name=name)
    return None


def _ordered(
    ids: list[str],
    inputs: dict[str, tuple[str, ...]],
    errors: dict[str, str],
    names: dict[str, str],
) -> list[str]:
    """Cells in notebook order, each moved after what it reads; the rest get errors."""
    done: list[str] = []
    placed: set[str] = set()
    waiting = [c for c in ids if c not in errors]
    while waiting:
        ready = next((c for c in waiting if all(i in placed for i in inputs[c])), None)
        if ready is None:
            break
        done.append(ready)
        placed.add(ready)
        waiting.remove(ready)
    for cell_id in waiting:  # in a cycle, behind one, or behind a cell with an error
        errors[cell_id] = _why_blocked(cell_id, inputs, errors, names, placed)
    return done


def _why_blocked(
    cell_id: str,
    inputs: dict[str, tuple[str, ...]],
    errors: dict[str, str],
    names: dict[str, str],
    placed: set[str],
) -> str:
    cycle = _cycle_through(cell_id, inputs)
    if cycle is not None:
        if len(cycle) == 2:
            return SELF_MESSAGE.format(name=names[cell_id])
        return CYCLE_MESSAGE.format(path=" → ".join(names[c] for c in cycle))
    blocker = next(i for i in inputs[cell_id] if i not in placed)
    return UPSTREAM_MESSAGE.format(name=names[blocker])


def _cycle_through(start: str, inputs: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A path start → … → start along "reads", if there is one (shortest first)."""
    paths = [[start]]
    seen: set[str] = set()
    while paths:
        path = paths.pop(0)
        for source in inputs.get(path[-1], ()):
            if source == start:
                return [*path, start]
            if source not in seen:
                seen.add(source)
                paths.append([*path, source])
    return None
