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
from nexus_core.workbench.parameters import validate_parameters
from nexus_core.workbench.runs import NotebookRunner
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
        kinds_of_input = {p.type for p in validate_parameters(list(starter.parameters))}
        assert "date_range" in kinds_of_input, starter.key
    with_persona = [
        s.key for s in STARTER_NOTEBOOKS if any(p.type == "persona" for p in s.parameters)
    ]
    assert len(with_persona) >= 4
    named = [c.name for c in STARTERS_BY_KEY["slowest-sessions"].cells if c.name]
    assert named == ["slow_sessions"]


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
    persona = demo.personas.list()[0].name
    with Workbench(demo.settings, demo.db) as workbench:
        # Analysts use the starters too: no message content, no session titles.
        runner = NotebookRunner(workbench, include_message_content=False)
        for starter in STARTER_NOTEBOOKS:
            cells, parameters = list(starter.cells), list(starter.parameters)
            runs = runner.run(cells, parameters, {})
            for cell in cells:
                if cell.kind != "sql":
                    continue
                run = runs[cell.id]
                assert run.result is not None, (cell.id, run.error)
                assert run.result.row_count > 0, f"{cell.id} returned no rows"
                assert_chart_columns_exist(cell, run.result.frame.columns)
            if any(p.name == "persona" for p in parameters):
                picked = runner.run(cells, parameters, {"persona": persona})
                assert all(run.error is None for run in picked.values()), starter.key


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
    starter = STARTERS_BY_KEY["persona-comparison"]
    sql_cells = [c for c in starter.cells if c.kind == "sql"]
    with Workbench(demo.settings, demo.db) as workbench:
        runner = NotebookRunner(workbench, include_message_content=False)
        runs = runner.run(list(starter.cells), list(starter.parameters), {}, only=sql_cells[0].id)
    result = runs[sql_cells[0].id].result
    assert result is not None
    assert result.frame["replies"].sum() == replies
