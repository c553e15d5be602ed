"""Notebook cells as plain data: what a notebook stores, validated on the way in and out.

A notebook is an ordered list of cells. A cell is SQL (one read-only DuckDB query) or markdown;
a SQL cell may carry a chart spec (kind, x, y, colour, aggregation) that the page draws with plotly,
and a name: later cells read a named cell's result as a table of that name (``dependencies``).
Cells are stored as JSON; ``cells_from_json`` rejects anything that is not a well-formed cell list.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, cast

from nexus_core.errors import ValidationError

CellKind = Literal["sql", "markdown"]
ChartKind = Literal["line", "bar", "area", "scatter", "histogram"]
Aggregation = Literal["none", "sum", "mean", "count", "min", "max"]

CELL_KINDS: Final[tuple[CellKind, ...]] = ("sql", "markdown")
CHART_KINDS: Final[tuple[ChartKind, ...]] = ("line", "bar", "area", "scatter", "histogram")
AGGREGATIONS: Final[tuple[Aggregation, ...]] = ("none", "sum", "mean", "count", "min", "max")
MAX_CELLS: Final = 100
MAX_SOURCE_CHARS: Final = 20_000
MAX_TITLE_CHARS: Final = 120
MAX_NAME_CHARS: Final = 63
NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a cell may not be named: the workbench's own relations (``data.view_schemas``).
RESERVED_NAMES: Final = frozenset(
    {"events", "sessions", "messages", "feedback", "audit_events", "personas", "users"}
)


def new_cell_id() -> str:
    """A fresh, short, unique cell id."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class ChartSpec:
    """How to draw a SQL cell's result: chart kind, columns, optional aggregation of y by x."""

    kind: ChartKind = "bar"
    x: str = ""
    y: str | None = None
    color: str | None = None
    aggregation: Aggregation = "none"

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return {
            "kind": self.kind,
            "x": self.x,
            "y": self.y,
            "color": self.color,
            "aggregation": self.aggregation,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChartSpec:
        """A spec from its JSON form; raises ``ValidationError`` when it is malformed."""
        if not isinstance(data, dict):
            raise ValidationError("A chart must be an object.")
        kind = data.get("kind", "bar")
        aggregation = data.get("aggregation", "none")
        if kind not in CHART_KINDS:
            raise ValidationError(
                f"Unknown chart kind {kind!r}; use one of {', '.join(CHART_KINDS)}."
            )
        if aggregation not in AGGREGATIONS:
            raise ValidationError(
                f"Unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}."
            )
        x, y, color = data.get("x", ""), data.get("y"), data.get("color")
        if not isinstance(x, str) or not all(v is None or isinstance(v, str) for v in (y, color)):
            raise ValidationError("Chart columns must be names.")
        return cls(
            kind=cast(ChartKind, kind),
            x=x,
            y=y or None,
            color=color or None,
            aggregation=cast(Aggregation, aggregation),
        )


@dataclass(frozen=True)
class Cell:
    """One notebook cell: SQL or markdown source, and for SQL an optional chart."""

    kind: CellKind
    source: str = ""
    chart: ChartSpec | None = None
    id: str = field(default_factory=new_cell_id)
    name: str | None = None  # SQL cells only: later cells read its result under this name

    def duplicate(self) -> Cell:
        """A copy of the cell with a new id (and the same name: for copying whole notebooks)."""
        return replace(self, id=new_cell_id())

    def to_json(self) -> dict[str, Any]:
        """The cell as a JSON-ready dict."""
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "chart": self.chart.to_json() if self.chart is not None else None,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Any) -> Cell:
        """A cell from its JSON form; raises ``ValidationError`` when it is malformed."""
        if not isinstance(data, dict):
            raise ValidationError("A cell must be an object.")
        kind = data.get("kind")
        if kind not in CELL_KINDS:
            raise ValidationError(f"Unknown cell kind {kind!r}; use sql or markdown.")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise ValidationError("A cell's source must be text.")
        if len(source) > MAX_SOURCE_CHARS:
            raise ValidationError(f"A cell holds at most {MAX_SOURCE_CHARS:,} characters.")
        chart_data = data.get("chart")
        chart = ChartSpec.from_json(chart_data) if chart_data is not None else None
        if chart is not None and kind != "sql":
            raise ValidationError("Only SQL cells can have a chart.")
        cell_id = data.get("id") or new_cell_id()
        if not isinstance(cell_id, str):
            raise ValidationError("A cell id must be text.")
        name = validate_name(data.get("name"))
        if name is not None and kind != "sql":
            raise ValidationError("Only SQL cells can have a name.")
        return cls(kind=cast(CellKind, kind), source=source, chart=chart, id=cell_id, name=name)


def validate_name(name: Any) -> str | None:
    """A cell name as stored (None for none); refuses one a query could not use as a table."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    if not isinstance(name, str):
        raise ValidationError("A cell's name must be text.")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS or not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"A cell name is a letter or _ followed by letters, digits or _ (at most "
            f"{MAX_NAME_CHARS}), as a table name in SQL; {name!r} is not."
        )
    if name.lower() in RESERVED_NAMES:
        raise ValidationError(f"{name!r} is one of the workbench's views; name the cell otherwise.")
    return name


def cells_to_json(cells: list[Cell]) -> list[dict[str, Any]]:
    """The cells as a JSON-ready list."""
    return [cell.to_json() for cell in cells]


def cells_from_json(data: Any) -> list[Cell]:
    """Cells from their JSON form, in order; raises ``ValidationError`` when malformed."""
    if not isinstance(data, list):
        raise ValidationError("A notebook's cells must be a list.")
    if len(data) > MAX_CELLS:
        raise ValidationError(f"A notebook holds at most {MAX_CELLS} cells.")
    cells = [Cell.from_json(item) for item in data]
    if len({cell.id for cell in cells}) != len(cells):
        raise ValidationError("Two cells share an id.")
    names = [cell.name.lower() for cell in cells if cell.name]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValidationError(f"Two cells are named {twice[0]!r}; a name belongs to one cell.")
    return cells


def _index(cells: list[Cell], cell_id: str) -> int:
    for index, cell in enumerate(cells):
        if cell.id == cell_id:
            return index
    raise ValidationError("That cell is no longer in the notebook; reload the page.")


def replace_cell(cells: list[Cell], cell: Cell) -> list[Cell]:
    """The cells with the one of the same id replaced by ``cell``."""
    index = _index(cells, cell.id)
    return [*cells[:index], cell, *cells[index + 1 :]]


def move_cell(cells: list[Cell], cell_id: str, offset: int) -> list[Cell]:
    """The cells with one moved ``offset`` places (clamped at either end)."""
    index = _index(cells, cell_id)
    target = max(0, min(len(cells) - 1, index + offset))
    moved = [c for c in cells if c.id != cell_id]
    moved.insert(target, cells[index])
    return moved


def duplicate_cell(cells: list[Cell], cell_id: str) -> list[Cell]:
    """The cells with a copy (new id) of one inserted right after it."""
    index = _index(cells, cell_id)
    if len(cells) >= MAX_CELLS:
        raise ValidationError(f"A notebook holds at most {MAX_CELLS} cells.")
    copy = replace(cells[index].duplicate(), name=None)  # a name belongs to one cell
    return [*cells[: index + 1], copy, *cells[index + 1 :]]


def remove_cell(cells: list[Cell], cell_id: str) -> list[Cell]:
    """The cells without one."""
    index = _index(cells, cell_id)
    return [*cells[:index], *cells[index + 1 :]]


def append_cell(cells: list[Cell], kind: CellKind) -> list[Cell]:
    """The cells with a new empty cell of ``kind`` at the end."""
    if len(cells) >= MAX_CELLS:
        raise ValidationError(f"A notebook holds at most {MAX_CELLS} cells.")
    return [*cells, Cell(kind=kind)]
