"""The layering rules of the README's Architecture section that a machine can check.

Function size and complexity are ruff's (C901, PLR0915 in pyproject.toml, run by `make lint`):
a module may be as long as its concept needs; pages and the frame stay thin.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "nexus_core"
PAGE_MAX_LINES = 120
APP_MAX_LINES = 100


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_in_nexus_core_outside_ui_imports_streamlit() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in CORE.rglob("*.py")
        if "ui" not in path.relative_to(CORE).parts
        and any(
            m == "streamlit" or m.startswith(("streamlit.", "streamlit_"))
            for m in imported_modules(path)
        )
    ]
    assert offenders == []


def test_pages_reach_the_core_only_through_services_not_sql_or_http() -> None:
    forbidden = ("sqlalchemy", "httpx", "duckdb", "nexus_core.db")
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.startswith(forbidden)
        )
        for path in (ROOT / "app_pages").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pages_and_the_frame_stay_thin() -> None:
    too_long = {}
    for path in (ROOT / "app_pages").glob("*.py"):
        if len(path.read_text().splitlines()) > PAGE_MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = PAGE_MAX_LINES
    if len((ROOT / "app.py").read_text().splitlines()) > APP_MAX_LINES:
        too_long["app.py"] = APP_MAX_LINES
    assert too_long == {}
