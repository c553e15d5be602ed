"""The Evals page: eval runs with their verdicts, moved on while the page is open, and a form to
start one (test set, persona and version, judge). See README, "Evaluating persona changes on real
traffic"."""

from __future__ import annotations

from functools import partial
from typing import Final

import polars as pl
import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.eval.runs import EvalRunView, EvalSpec
from nexus_core.ui import notices, show
from nexus_core.ui.widgets.follow import follow
from nexus_core.ui.widgets.scorecard import agreement_text
from nexus_core.users import UserView

POLL_SECONDS: Final = 2.0
NOTICE_KEY: Final = "eval_notice"
FORM_KEY: Final = "eval_start"
DEFAULT_JUDGE: Final = "(the server's provider)"


def start_form(ctx: AppContext, user: UserView) -> None:
    """Start an eval run of one of the user's test sets against a persona version."""
    notices.show(NOTICE_KEY)
    sets = notices.act(lambda: ctx.test_sets.list(user)) or []
    if not sets:
        show.info(
            "No test sets yet: freeze real conversations into one (`nexus testsets freeze`), "
            "or write one on the Compare page."
        )
        return
    personas = [p.name for p in ctx.personas.list()]
    judges = [DEFAULT_JUDGE, *(c.name for c in ctx.compare.provider_choices())]
    with st.form(FORM_KEY):
        chosen = st.selectbox("Test set", range(len(sets)), format_func=lambda i: sets[i].name)
        persona = st.selectbox("Persona", personas, format_func=show.plain)
        version = st.number_input("Version (0: the current one)", min_value=0, step=1, value=0)
        judge = st.selectbox("Judge provider", judges, format_func=show.plain)
        model = st.text_input("Judge model (empty: the provider's own)")
        if not st.form_submit_button("Run the evaluation", type="primary"):
            return
    spec = EvalSpec(
        test_set=str(sets[chosen].id),
        persona=str(persona),
        version=int(version) or None,
        judge_provider=None if judge == DEFAULT_JUDGE else str(judge),
        judge_model=model.strip() or None,
    )
    started = notices.act(lambda: ctx.evals.start(user, spec))
    if started is not None:
        notices.leave(NOTICE_KEY, "Started: the replies are on their way; the verdict follows.")
        st.rerun()


def runs_table(ctx: AppContext, user: UserView) -> None:
    """Every eval run the user may see, newest first, with its verdict; followed (redrawn, and
    runs still going moved on) while any is unfinished."""
    runs = notices.act(lambda: ctx.evals.list_runs(user)) or []
    running = any(not r.finished for r in runs)
    follow(ctx, partial(_runs_part, ctx, user), running=running, every_seconds=POLL_SECONDS)


def _runs_part(ctx: AppContext, user: UserView) -> bool:
    """Draw the runs; whether any is still going."""
    runs = notices.act(lambda: ctx.evals.list_runs(user)) or []
    runs = [ctx.evals.advance(user, r.id) if not r.finished else r for r in runs]
    if not runs:
        show.caption("No eval runs yet.")
        return False
    st.dataframe(pl.DataFrame([_row(run) for run in runs]), hide_index=True)
    show.caption(
        "Win rate counts a tie as half a win, with its 95% Wilson interval. Order-sensitive: "
        "ties where the judge changed its mind when the replies swapped places. Agreement: how "
        "often the judge agrees with people's blind votes on the Compare page (kappa corrects "
        "for chance; n pairs)."
    )
    return any(not r.finished for r in runs)


def _row(run: EvalRunView) -> dict[str, object]:
    row: dict[str, object] = {
        "Started": run.created_at.strftime("%Y-%m-%d %H:%M"),
        "Test set": run.test_set_name,  # dataframe cells are plain text
        "Variant": run.variant.label,
        "Judge": run.judge,
        "Status": run.status if run.error is None else f"failed: {run.error}",
    }
    summary = run.summary
    if summary is None:
        return row
    judge, agreement = summary.judge, summary.agreement
    rate = "—" if judge.win_rate is None else f"{judge.win_rate:.0%}"
    return row | {
        "Win / tie / loss": f"{judge.wins} / {judge.ties} / {judge.losses}",
        "Win rate (95% CI)": f"{rate} ({judge.ci_low:.0%}–{judge.ci_high:.0%})",
        "Order-sensitive": judge.order_sensitive,
        "Agreement (κ, n)": agreement_text(agreement),
        "Regressions": summary.regressions,
        "Checks passed": f"{summary.passed} of {summary.cases}",
        "Run id": run.id,
    }
