"""`nexus notebooks import|export|run`: workbench notebooks as Markdown files, and run from the
command line (for version control and CI; see README, "Notebooks").

An operator's tool on the server, like `nexus sql`: ``export`` and ``run`` read any notebook by its
id and see what admins see (message content included); ``import`` makes the notebook ``--owner``'s.
``run`` prints each cell's result and ends with one JSON line (``--json``); it exits 1 when a cell
failed, so a broken notebook fails a CI step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nexus_core.errors import ValidationError
from nexus_core.workbench.results import json_rows
from nexus_core.workbench.runs import CellRun, NotebookRunner

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext
    from nexus_core.workbench.notebooks import NotebookView

JSON_ROWS: Final = 100  # rows of each cell's result in the JSON line
CELL_FAILED: Final = 1


def cmd_import(ctx: AppContext, args: argparse.Namespace) -> int:
    """Import a Markdown file as a new notebook of ``--owner``; prints its id last."""
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise ValidationError(f"Cannot read {path}: {reason}.") from exc
    owner = ctx.users.get(args.owner)
    notebook = ctx.notebooks.import_markdown(owner, text, fallback_title=path.stem)
    print(f"Imported {notebook.title!r} for {owner.username} ({len(notebook.cells)} cells).")
    print(notebook.id)
    return 0


def cmd_export(ctx: AppContext, args: argparse.Namespace) -> int:
    """Print a notebook as its Markdown file."""
    print(ctx.notebooks.get_any(args.id).to_markdown(), end="")
    return 0


def cmd_run(ctx: AppContext, args: argparse.Namespace) -> int:
    """Run every cell in dependency order on one snapshot; 1 when a cell failed."""
    notebook = ctx.notebooks.get_any(args.id)
    chosen = parse_params(args.param or [])
    runner = NotebookRunner(ctx.workbench, include_message_content=True)
    runs = runner.run(notebook.cells, notebook.parameters, chosen)
    report = run_report(notebook, runs)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for cell in report["cells"]:
            print(_cell_line(cell))
    return CELL_FAILED if any(cell["error"] for cell in report["cells"]) else 0


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` arguments as chosen values (their text form; checked against the notebook)."""
    chosen: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ValidationError(f"--param {pair!r} is not NAME=VALUE.")
        chosen[name.strip()] = value
    return chosen


def run_report(notebook: NotebookView, runs: dict[str, CellRun]) -> dict[str, Any]:
    """``{"cells": [{"index", "name", "kind", "rows", "columns", "data", "error"}]}``, every cell
    in notebook order (``index`` from 0; ``data`` the first rows as objects, null for text)."""
    cells = []
    for index, cell in enumerate(notebook.cells):
        entry: dict[str, Any] = {
            "index": index,
            "name": cell.name,
            "kind": cell.kind,
            "rows": None,
            "columns": None,
            "data": None,
            "error": None,
        }
        run = runs.get(cell.id)
        if run is not None and run.result is not None:
            frame = run.result.frame
            entry |= {
                "rows": run.result.row_count,
                "columns": list(frame.columns),
                "data": json.loads(json_rows(frame.head(JSON_ROWS))),
            }
        elif run is not None:
            entry["error"] = run.error
        cells.append(entry)
    return {"cells": cells}


def _cell_line(cell: dict[str, Any]) -> str:
    label = f"[{cell['index']}] {cell['kind']}" + (f" {cell['name']}" if cell["name"] else "")
    if cell["error"]:
        return f"{label}: error: {cell['error'].splitlines()[0]}"
    if cell["kind"] != "sql":
        return label
    return f"{label}: {cell['rows']:,} rows ({', '.join(cell['columns'])})"
