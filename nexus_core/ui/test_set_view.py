"""The Compare page's leaderboard and test-set sections: win rates with Wilson intervals, test
sets written in a small text format, runs filling a results matrix, and two runs compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.compare.checks import format_test_set, parse_test_set
from nexus_core.compare.run_diff import STATUSES
from nexus_core.compare.scoring import leaderboard_csv
from nexus_core.compare.test_results import ResultsMatrix
from nexus_core.compare.test_sets import TestRunView, TestSetView
from nexus_core.ui import notices, show
from nexus_core.ui.dates import day_range
from nexus_core.ui.widgets.follow import follow
from nexus_core.ui.widgets.scorecard import agreement_text
from nexus_core.ui.widgets.variants import variant_pickers
from nexus_core.users import UserView

ALL_TAGS = "All tags"
LEADERBOARD_DAYS = 30
SET_PICK = "nexus_ts_pick"
PENDING_PICK = "nexus_ts_pending_pick"
NEW_SET = "(new test set)"
NEW_SET_ID = 0  # not None: a None value would leave the box blank (ids start at 1)
SET_NAME = "nexus_ts_name"
SET_TEXT = "nexus_ts_text"
SAVE_SET = "nexus_ts_save"
DELETE_SET = "nexus_ts_delete"
RUN_COUNT = "nexus_ts_variant_count"
RUN_VARIANT_PREFIX = "nexus_ts_variant_"
RUN_BUTTON = "nexus_ts_run"
RUN_PICK = "nexus_ts_run_pick"
BEFORE_PICK = "nexus_ts_before"
AFTER_PICK = "nexus_ts_after"
LB_DATES = "nexus_lb_dates"
LB_TAG = "nexus_lb_tag"
FOLLOW_EVERY = 0.5  # seconds between redraws of a running test set's progress
EXAMPLE = (
    "What is your refund policy?\ncontains: refund\nmax latency ms: 3000\n---\n"
    "Say hello in French.\ncontains: bonjour"
)


def leaderboard(ctx: AppContext, user: UserView) -> None:
    """Win rate per variant over the chosen dates and tag, with its 95 % interval; CSV export."""
    today = datetime.now(UTC).date()
    left, right = st.columns(2)
    votes = day_range(
        "Votes between",
        key=LB_DATES,
        value=(today - timedelta(days=LEADERBOARD_DAYS), today),
        where=left,
    )
    tags = notices.act(lambda: ctx.compare.tags(user)) or []
    tag = right.selectbox("Prompt tag", [ALL_TAGS, *tags], key=LB_TAG)
    rows = notices.act(
        lambda: ctx.compare.leaderboard(
            user, start=votes.start, end=votes.end, tag=None if tag == ALL_TAGS else tag
        )
    )
    if rows is None:
        return
    _judge_agreement(ctx, user)
    if not rows:
        st.info("No judged comparisons in this range yet. Compare some variants and vote.")
        return
    table = pl.DataFrame(
        {
            "Variant": [r.variant for r in rows],
            "Comparisons": [r.comparisons for r in rows],
            "Wins": [r.wins for r in rows],
            "Win rate": [100 * r.win_rate for r in rows],
            "95% low": [100 * r.low for r in rows],
            "95% high": [100 * r.high for r in rows],
        }
    )
    percent = st.column_config.NumberColumn(format="%.1f %%")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"Win rate": percent, "95% low": percent, "95% high": percent},
    )
    st.caption(
        "Ranked by the lower end of the 95 % Wilson score interval (what the votes make sure of); "
        "a comparison counts for every variant that was judged."
    )
    st.download_button(
        "CSV",
        data=leaderboard_csv(rows),
        file_name=f"leaderboard-{today:%Y%m%d}.csv",
        mime="text/csv",
        icon=":material/download:",
    )


def _judge_agreement(ctx: AppContext, user: UserView) -> None:
    """How far the eval judge agrees with these blind votes (all of them, not only the range)."""
    judge = (ctx.provider.name, ctx.provider.default_model)
    agreement = notices.act(lambda: ctx.evals.agreement(user, *judge))
    if agreement is not None:
        show.caption(
            f"These votes calibrate the eval judge. The default judge ({judge[0]}, {judge[1]}) "
            f"against people's votes: {agreement_text(agreement)}."
        )


def test_sets(ctx: AppContext, user: UserView) -> None:
    """Write or pick a test set, run it against variants, read the matrix, compare two runs."""
    sets = notices.act(lambda: ctx.test_sets.list(user)) or []
    by_id = {s.id: s for s in sets}
    labels = _set_labels(ctx, user, sets)
    if PENDING_PICK in st.session_state:  # chosen by the last save or delete
        st.session_state[SET_PICK] = st.session_state.pop(PENDING_PICK)
    if st.session_state.get(SET_PICK) not in by_id:  # deleted meanwhile, or never picked
        st.session_state[SET_PICK] = NEW_SET_ID
    picked = st.selectbox(
        "Test set",
        [NEW_SET_ID, *by_id],
        format_func=lambda set_id: labels.get(set_id, NEW_SET),
        key=SET_PICK,
    )
    current = by_id.get(picked)
    if current is not None and current.owner_id != user.id:
        _read_only(current, labels[current.id])
    else:
        _editor(ctx, user, current)
    if current is None:
        return
    st.divider()
    _runner(ctx, user, current)
    st.divider()
    _runs(ctx, user, current)


def _set_labels(ctx: AppContext, user: UserView, sets: list[TestSetView]) -> dict[int, str]:
    """Each set's name; an admin sees others' sets too, so theirs carry the owner's username."""
    foreign = {s.owner_id for s in sets} - {user.id}
    owners = {u.id: u.username for u in notices.act(ctx.users.list) or []} if foreign else {}
    labels: dict[int, str] = {}
    for s in sets:
        label = s.name if s.owner_id == user.id else f"{s.name} · {owners.get(s.owner_id, '?')}"
        if label == NEW_SET or label in labels.values():  # the box tells options apart by label
            label = f"{label} (#{s.id})"
        labels[s.id] = label
    return labels


def _read_only(current: TestSetView, label: str) -> None:
    """Someone else's set (an admin looking): shown, runnable, not editable."""
    show.caption(
        f"“{label}” belongs to someone else: you can run it, only its owner can change it."
    )
    st.code(format_test_set(current.cases), language=None)


def _editor(ctx: AppContext, user: UserView, current: TestSetView | None) -> None:
    suffix = str(current.id) if current else "new"
    name = st.text_input("Name", value=current.name if current else "", key=f"{SET_NAME}_{suffix}")
    text = st.text_area(
        "Prompts and checks (one prompt per block, blocks separated by a line “---”; check lines: "
        "“contains:”, “not contains:”, “regex:”, “max latency ms:”)",
        value=format_test_set(current.cases) if current else "",
        placeholder=EXAMPLE,
        height=200,
        key=f"{SET_TEXT}_{suffix}",
    )
    left, right, _ = st.columns([1, 1, 3])
    if left.button("Save", icon=":material/save:", key=f"{SAVE_SET}_{suffix}"):
        cases = notices.act(lambda: parse_test_set(text))
        if cases is not None:
            saved = notices.act(
                lambda: (
                    ctx.test_sets.update(user, current.id, name=name, cases=cases)
                    if current
                    else ctx.test_sets.create(user, name, cases)
                )
            )
            if saved is not None:
                st.session_state[PENDING_PICK] = saved.id
                st.rerun()
    if current is not None and right.button(
        "Delete", icon=":material/delete:", key=f"{DELETE_SET}_{suffix}"
    ):
        if notices.act(lambda: ctx.test_sets.delete(user, current.id)) is None:
            return
        st.session_state[PENDING_PICK] = NEW_SET_ID
        st.rerun()


def _runner(ctx: AppContext, user: UserView, current: TestSetView) -> None:
    st.markdown(f"**Run “{show.plain(current.name)}”** ({len(current.cases)} prompts) against:")
    count = st.segmented_control("Variants", [1, 2, 3, 4], default=2, key=RUN_COUNT) or 2
    specs = variant_pickers(ctx, RUN_VARIANT_PREFIX, int(count))
    if not st.button("Run test set", icon=":material/play_arrow:", type="primary", key=RUN_BUTTON):
        return
    run = notices.act(lambda: ctx.test_sets.run(user, current.id, specs))
    if run is None:
        return
    st.session_state[RUN_PICK] = run.id  # its results are shown below, filling in as they come


def _runs(ctx: AppContext, user: UserView, current: TestSetView) -> None:
    runs = notices.act(lambda: ctx.test_sets.list_runs(user, current.id)) or []
    if not runs:
        st.caption("No runs of this test set yet.")
        return
    labels = {r.id: _run_label(r) for r in runs}
    run_id = st.selectbox(
        "Results of run", list(labels), format_func=labels.__getitem__, key=RUN_PICK
    )
    picked = next(r for r in runs if r.id == run_id)
    follow(
        ctx,
        lambda: _results(ctx, user, run_id),
        running=picked.done < picked.total,
        every_seconds=FOLLOW_EVERY,
    )
    if len(runs) < 2:
        return
    st.markdown("**Compare two runs** (what changed after a persona edit)")
    left, right = st.columns(2)
    before = left.selectbox(
        "Before", list(labels), index=1, format_func=labels.__getitem__, key=BEFORE_PICK
    )
    after = right.selectbox(
        "After", list(labels), index=0, format_func=labels.__getitem__, key=AFTER_PICK
    )
    diff = notices.act(lambda: ctx.test_sets.compare(user, before, after))
    if diff is None:
        return
    show.caption(" · ".join(f"{status}: {diff.summary[status]}" for status in STATUSES))
    st.dataframe(
        pl.DataFrame(
            {
                "Status": [row.status for row in diff.rows],
                "Prompt": [row.prompt for row in diff.rows],
                "Variant": [row.variant for row in diff.rows],
                "Before": [_verdict(row.before) for row in diff.rows],
                "After": [_verdict(row.after) for row in diff.rows],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def _results(ctx: AppContext, user: UserView, run_id: str) -> bool:
    """A run's progress while it runs and its results matrix; is it still running?"""
    progress = notices.act(lambda: ctx.test_sets.progress(user, run_id))
    if progress is None:
        return False
    running = progress.done < progress.total
    if running:
        text = f"{progress.done} of {progress.total} replies"
        st.progress(progress.done / max(progress.total, 1), text=show.plain(text))
    matrix = notices.act(lambda: ctx.test_sets.results(user, run_id))
    if matrix is not None:
        _matrix(matrix)
    return running


def _run_label(run: TestRunView) -> str:
    variants = ", ".join(v.label for v in run.variants)
    return f"{run.created_at:%Y-%m-%d %H:%M} · {run.done}/{run.total} replies · {variants}"


def _verdict(cell: object) -> str:
    if cell is None:
        return "—"
    passed = getattr(cell, "passed", False)
    failures = getattr(cell, "failures", ())
    return "✅ pass" if passed else "❌ " + ("; ".join(failures) or "fail")


def _matrix(matrix: ResultsMatrix) -> None:
    """Prompt × variant: pass/fail with the reason, latency and tokens; totals per variant."""
    columns: dict[str, list[str]] = {"Prompt": [case.prompt for case in matrix.cases]}
    for variant in matrix.variants:
        passed, total = matrix.passed_count(variant.position)
        header = f"{variant.label} ({passed}/{total})"
        column = []
        for index in range(len(matrix.cases)):
            cell = matrix.cell(index, variant.position)
            if not cell.finished:
                column.append("… running")
                continue
            facts = []
            if cell.reply.latency_ms is not None:
                facts.append(f"{cell.reply.latency_ms:,.0f} ms")
            if cell.reply.tokens_out is not None:
                facts.append(f"{cell.reply.tokens_out} tok")
            verdict = "✅" if cell.passed else "❌ " + "; ".join(cell.result.failures)
            column.append(" · ".join([verdict, *facts]))
        columns[header] = column
    st.dataframe(pl.DataFrame(columns), hide_index=True, width="stretch")
