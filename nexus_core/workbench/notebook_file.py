"""A notebook as one Markdown file, so notebooks live in version control and review like code.

::

    # Slow sessions by persona                 <- the title (the file's first line, optional)

    ```params                                  <- the parameters, one `name: type = default` a line
    period: date_range = last 30 days
    persona: persona
    ```

    Markdown between the fenced blocks is a text cell.

    ```sql slow_sessions                       <- a SQL cell; after `sql`, its name (optional)
    -- chart: bar x=persona y=replies          <- its chart (optional; color=COL agg=sum too)
    SELECT persona, count(*) AS replies FROM events
    WHERE ts >= $period_start AND ts < $period_end GROUP BY persona
    ```

    <!-- cell -->                              <- between two text cells in a row

Other fenced blocks (```python, …) are part of the text around them. A SQL cell whose SQL holds
a line of backticks is written with a longer fence. ``notebook_from_markdown`` and
``notebook_to_markdown`` are inverses: a file read and written again keeps every cell, name,
parameter and chart (cell ids are new on every import).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from nexus_core.errors import ValidationError
from nexus_core.workbench.cells import (
    AGGREGATIONS,
    MAX_TITLE_CHARS,
    Cell,
    ChartSpec,
    validate_name,
)
from nexus_core.workbench.parameters import Parameter, declarations, parse_declarations

SQL_INFO: Final = "sql"
PARAMS_INFO: Final = "params"
TEXT_CELL_BREAK: Final = "<!-- cell -->"
# Patterns whose parts never overlap (each runs in linear time on a line of any length); what
# they capture is stripped afterwards rather than by lazy groups, which backtrack badly.
FENCE: Final = re.compile(r"(`{3,})[ \t]*([^`\s]*)(.*)")
TITLE: Final = re.compile(r"#[ \t]+(.*)")
CHART_LINE: Final = re.compile(r"[ \t]*--[ \t]*chart[ \t]*:(.*)", re.IGNORECASE)
CHART_KEYS: Final = {"x": "x", "y": "y", "color": "color", "colour": "color", "agg": "aggregation"}
MAX_FILE_CHARS: Final = 2_000_000
T = TypeVar("T")


@dataclass(frozen=True)
class NotebookFile:
    """What a notebook file holds: a title, the parameters and the cells."""

    title: str
    parameters: list[Parameter]
    cells: list[Cell]


def notebook_to_markdown(title: str, parameters: list[Parameter], cells: list[Cell]) -> str:
    """The notebook as a Markdown file (see the module docstring)."""
    parts = [f"# {title.strip()}"]
    if parameters:
        parts.append(f"```{PARAMS_INFO}\n{declarations(parameters)}\n```")
    previous: Cell | None = None
    for cell in cells:
        if cell.kind == "markdown":
            if previous is not None and previous.kind == "markdown":
                parts.append(TEXT_CELL_BREAK)
            parts.append(cell.source.strip("\n") or " ")
        else:
            parts.append(_sql_block(cell))
        previous = cell
    return "\n\n".join(parts) + "\n"


def _sql_block(cell: Cell) -> str:
    body = [_chart_line(cell.chart)] if cell.chart is not None else []
    body += cell.source.strip("\n").splitlines() if cell.source.strip() else []
    longest = max((len(m[1]) for line in body if (m := FENCE.match(line))), default=0)
    fence = "`" * max(3, longest + 1)
    info = f"{SQL_INFO} {cell.name}" if cell.name else SQL_INFO
    return "\n".join([fence + info, *body, fence])


def _chart_line(chart: ChartSpec) -> str:
    words = [chart.kind, f"x={shlex.quote(chart.x)}" if chart.x else ""]
    words += [f"y={shlex.quote(chart.y)}" if chart.y else ""]
    words += [f"color={shlex.quote(chart.color)}" if chart.color else ""]
    words += [f"agg={chart.aggregation}" if chart.aggregation != "none" else ""]
    return "-- chart: " + " ".join(word for word in words if word)


def notebook_from_markdown(text: str, *, fallback_title: str = "Imported notebook") -> NotebookFile:
    """The notebook a Markdown file describes; ``ValidationError`` naming the line when it is
    not one (an unclosed block, a bad name, parameter or chart line)."""
    if len(text) > MAX_FILE_CHARS:
        raise ValidationError(f"A notebook file has at most {MAX_FILE_CHARS:,} characters.")
    lines = text.replace("\r\n", "\n").split("\n")
    title = fallback_title.strip()[:MAX_TITLE_CHARS] or "Imported notebook"
    start = next((n for n, line in enumerate(lines) if line.strip()), len(lines))
    heading = TITLE.match(lines[start]) if start < len(lines) else None
    if heading and (named := heading[1].strip().rstrip("#").strip()):
        title, start = named, start + 1
    reader = _Reader(lines, start)
    return NotebookFile(title, reader.parameters, reader.cells)


class _Reader:
    """Reads the lines of a notebook file after its title into parameters and cells."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines = lines
        self.cells: list[Cell] = []
        self.parameters: list[Parameter] = []
        self._params_seen = False
        text: list[str] = []
        n = start
        while n < len(lines):
            match = FENCE.match(lines[n])
            if match is None:
                text.append(lines[n])
                n += 1
                continue
            end = self._closing(n, match[1])
            if match[2].lower() in (SQL_INFO, PARAMS_INFO):
                self._text_cells(text)
                text = []
                self._block(n, match[2].lower(), match[3].strip(), lines[n + 1 : end])
            else:
                text.extend(lines[n : end + 1])
            n = end + 1
        self._text_cells(text)

    def _closing(self, opening: int, fence: str) -> int:
        for n in range(opening + 1, len(self.lines)):
            line = self.lines[n].strip()
            if line.startswith(fence) and not line.strip("`"):
                return n
        raise ValidationError(
            f"The fenced block that opens on line {opening + 1} is never closed; end it with "
            f"a line of {fence}."
        )

    def _text_cells(self, lines: list[str]) -> None:
        chunk: list[str] = []
        for line in [*lines, TEXT_CELL_BREAK]:
            if line.strip() != TEXT_CELL_BREAK:
                chunk.append(line)
                continue
            source = "\n".join(chunk).strip("\n")
            if source.strip():
                self.cells.append(Cell(kind="markdown", source=source))
            chunk = []

    def _block(self, opening: int, info: str, rest: str, body: list[str]) -> None:
        where = f"line {opening + 1}"
        if info == PARAMS_INFO:
            if self._params_seen:
                raise ValidationError(f"A second params block ({where}); a file has one.")
            self._params_seen = True
            self.parameters = _at(where, lambda: parse_declarations("\n".join(body)))
            return
        name = _at(where, lambda: validate_name(rest or None))
        chart = None
        kept = []
        for line in body:
            found = CHART_LINE.match(line)
            if found and chart is None:
                chart = _at(where, lambda found=found: parse_chart(found[1].strip()))
            else:
                kept.append(line)
        source = "\n".join(kept).strip("\n")
        self.cells.append(Cell(kind="sql", source=source, chart=chart, name=name))


def _at(where: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except ValidationError as exc:
        raise ValidationError(f"In the block on {where}: {exc}") from exc


def parse_chart(text: str) -> ChartSpec:
    """A chart from the words after ``-- chart:`` (``bar x=persona y=replies color=… agg=sum``)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValidationError(f"The chart line {text!r} has an unclosed quote.") from exc
    if not words:
        raise ValidationError("A chart line names its kind: `-- chart: bar x=COL y=COL`.")
    fields: dict[str, str] = {"kind": words[0]}
    for word in words[1:]:
        key, equals, value = word.partition("=")
        if not equals or key.lower() not in CHART_KEYS:
            raise ValidationError(
                f"{word!r} in the chart line is not one of x=, y=, color=, agg= "
                f"({', '.join(AGGREGATIONS)})."
            )
        fields[CHART_KEYS[key.lower()]] = value
    return ChartSpec.from_json(fields)
