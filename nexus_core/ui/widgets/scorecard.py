"""How an eval run reads in one line: the verdict with its interval, regressions, cost and
latency against the baseline, and how far the judge agrees with people. Used by the Evals page
and by each version's scorecard on the Personas page."""

from __future__ import annotations

from nexus_core.eval.calibration import Agreement
from nexus_core.eval.runs import EvalSummary


def agreement_text(agreement: Agreement) -> str:
    """``80% (κ 0.60, n=10)``, or that there are no votes to compare with yet."""
    if not agreement.pairs or agreement.agreement is None:
        return "no votes yet"
    kappa = "undefined" if agreement.kappa is None else f"{agreement.kappa:.2f}"
    return f"{agreement.agreement:.0%} (κ {kappa}, n={agreement.pairs})"


def _change(new: float | None, old: float | None, fmt: str) -> str:
    if new is None:
        return "—"
    return fmt.format(new) + ("" if old is None else " vs " + fmt.format(old))


def scorecard_text(summary: EvalSummary) -> str:
    """The verdict of a finished run in one line of plain text."""
    judge = summary.judge
    rate = "—" if judge.win_rate is None else f"{judge.win_rate:.0%}"
    latency = (
        None if summary.latency_ms is None else summary.latency_ms / 1000,
        None if summary.baseline_latency_ms is None else summary.baseline_latency_ms / 1000,
    )
    return (
        f"Win rate {rate} ({judge.ci_low:.0%}–{judge.ci_high:.0%}, 95 %) over {judge.judged} "
        f"judged cases: {judge.wins} wins, {judge.ties} ties ({judge.order_sensitive} "
        f"order-sensitive), {judge.losses} losses · {summary.regressions} regressions · cost "
        f"{_change(summary.cost_usd, summary.baseline_cost_usd, '${:,.4f}')} · latency "
        f"{_change(*latency, '{:.1f} s')} · judge–human agreement "
        f"{agreement_text(summary.agreement)}"
    )
