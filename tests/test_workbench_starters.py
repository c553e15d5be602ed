"""Starter notebooks: well-formed cells, and every SQL cell runs on a fresh install with demo data.

The data is `nexus simulate`'s alone: it drives the chat pipeline with the simulated provider (some
calls failing, so there are retries), and its demo people leave thumbs and reports.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nexus_core.app_context import AppContext
from nexus_core.db.models import Message
from nexus_core.ops.events import read_events
from nexus_core.simulation import simulate
from nexus_core.workbench.cells import Cell, cells_from_json, cells_to_json
from nexus_core.workbench.sandbox import Workbench
from nexus_core.workbench.starters import STARTER_NOTEBOOKS, STARTERS_BY_KEY

STARTER_TOPICS = (
    "slo",
    "feedback-weekly",
    "slowest-sessions",
    "retry-storms",
    "persona-comparison",
    "cost-by-member-model",
)


def test_starters_cover_the_issue_topics_with_explained_sql_cells() -> None:
    assert tuple(STARTERS_BY_KEY) == STARTER_TOPICS
    for starter in STARTER_NOTEBOOKS:
        kinds = [cell.kind for cell in starter.cells]
        assert kinds[0] == "markdown" and "sql" in kinds, starter.key
        assert starter.title and starter.description, starter.key
        assert cells_from_json(cells_to_json(list(starter.cells))) == list(starter.cells)
        assert len({cell.id for cell in starter.cells}) == len(starter.cells)
        assert any(cell.chart is not None for cell in starter.cells), starter.key


def test_starter_cell_ids_are_stable_across_imports() -> None:
    ids = [cell.id for cell in STARTERS_BY_KEY["slo"].cells]
    assert ids == [f"slo-{n}" for n in range(1, len(ids) + 1)]


@pytest.fixture
def demo(ctx: AppContext) -> AppContext:
    """A fresh install with nothing but `nexus simulate`'s data over two days (some calls
    failing, so there are retries; the demo people rate and report on their own)."""
    ctx.init()
    report = simulate(
        ctx, users=2, sessions=8, days=2, failure_rate=0.35, seed=11, word_latency=(0.0, 0.0)
    )
    events, _ = read_events(ctx.settings.event_log_path)
    assert report.replies and any(e["event"] == "job_retry" for e in events)
    return ctx


def test_every_starter_runs_on_a_fresh_install_with_simulated_data(demo: AppContext) -> None:
    with Workbench(demo.settings, demo.db) as workbench:
        for starter in STARTER_NOTEBOOKS:
            # Analysts use the starters too: no message content, no session titles.
            with workbench.open(include_message_content=False) as session:
                for cell in starter.cells:
                    if cell.kind != "sql":
                        continue
                    result = session.run(cell.source)
                    assert result.row_count > 0, f"{cell.id} returned no rows"
                    assert_chart_columns_exist(cell, result.frame.columns)


def assert_chart_columns_exist(cell: Cell, columns: list[str]) -> None:
    if cell.chart is None:
        return
    named = [cell.chart.x, cell.chart.y, cell.chart.color]
    assert all(name in columns for name in named if name), (cell.id, named, columns)


def test_starter_numbers_agree_with_the_database(demo: AppContext) -> None:
    with demo.db.session() as db_session:
        replies = db_session.scalar(
            select(func.count()).select_from(Message).where(Message.role == "assistant")
        )
    sql_cells = [c for c in STARTERS_BY_KEY["persona-comparison"].cells if c.kind == "sql"]
    with Workbench(demo.settings, demo.db) as workbench:
        result = workbench.run(sql_cells[0].source, include_message_content=False)
    assert result.frame["replies"].sum() == replies
