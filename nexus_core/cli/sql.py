"""`nexus sql QUERY [--format table|csv|json]`: one query through the workbench's sandbox.

An operator's tool on the server, so it sees what admins see (message content included). The
table shows the first ``DISPLAY_LIMIT`` rows like the page does; CSV and JSON carry every row
(up to ``NEXUS_SQL_DOWNLOAD_MAX_BYTES``), built in the query process.
Errors are one line on stderr (DuckDB's message with the line and column) and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Final

from nexus_core.errors import QueryError
from nexus_core.workbench.results import DISPLAY_LIMIT, QueryResult
from nexus_core.workbench.sandbox import Workbench

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext


TABLE_CELL_CHARS: Final = 60  # longer values are cut with an ellipsis in the table
NULL_TEXT: Final = "NULL"


def cmd_sql(ctx: AppContext, args: argparse.Namespace) -> int:
    """Run ``args.query`` and print its result in ``args.format``; 1 when the query fails."""
    with Workbench(ctx.settings, ctx.db) as workbench:
        try:
            if args.format == "table":
                text = table_text(
                    workbench.run(args.query, include_message_content=True, keep=DISPLAY_LIMIT)
                )
            else:
                data = workbench.export(args.query, args.format, include_message_content=True)
                text = data.decode().rstrip("\n")
        except QueryError as exc:  # the page shows the caret; a terminal gets one line
            print(f"nexus: {exc.summary}", file=sys.stderr)
            return 1
    print(text)
    return 0


def table_text(result: QueryResult) -> str:
    """The displayed rows as an aligned text table, then how many rows there are."""
    frame = result.display
    header = list(frame.columns)
    rows = [[_cell_text(value) for value in row] for row in frame.iter_rows()]
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(header)]
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]

    def line(cells: list[str]) -> str:
        aligned = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return " | ".join(aligned).rstrip()

    lines = [line(header), "-+-".join("-" * width for width in widths)] if header else []
    lines += [line(row) for row in rows]
    count = f"{result.row_count:,} row{'' if result.row_count == 1 else 's'}"
    if result.truncated:
        count += f", showing the first {DISPLAY_LIMIT:,} (--format csv or json prints all)"
    lines.append(f"({count}, {result.elapsed_ms:,.0f} ms)")
    return "\n".join(lines)


def _cell_text(value: object) -> str:
    text = NULL_TEXT if value is None else str(value)
    text = " ".join(text.split()) if any(c in text for c in "\n\r\t") else text
    return text if len(text) <= TABLE_CELL_CHARS else text[: TABLE_CELL_CHARS - 1] + "…"
