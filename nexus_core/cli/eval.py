"""`nexus testsets freeze` and `nexus eval run`: real conversations into test sets, and a persona
version replayed and judged against them — for people and for CI (see README, "Evaluating persona
changes on real traffic")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from nexus_core.errors import ValidationError
from nexus_core.eval.junit import junit_xml
from nexus_core.eval.runs import ORIGINAL, EvalRunView, EvalSpec, contract_json

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext

GATE_FAILED = 1


def cmd_freeze(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.get(args.user)
    if not args.message_ids and not args.sessions:
        raise ValidationError("Give at least one --message-id ID or --session UUID to freeze.")
    result = ctx.freezer.freeze(
        user, args.name, message_ids=args.message_ids or (), session_ids=args.sessions or ()
    )
    print(
        f"Froze {result.added} case(s) into test set {result.test_set.name!r} "
        f"({len(result.test_set.cases)} in all)."
    )
    print(json.dumps({"test_set_id": result.test_set.id, "cases": result.added}))
    return 0


def cmd_eval_run(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.get(args.user)
    spec = EvalSpec(
        test_set=args.test_set,
        persona=args.persona,
        version=args.version,
        provider=args.provider,
        model=args.model,
        temperature=args.temperature,
        judge_provider=args.judge_provider,
        judge_model=args.judge_model,
        baseline=args.baseline or ORIGINAL,
    )
    view = ctx.evals.run(user, spec, timeout=args.timeout)
    if view.status == "failed":
        raise ValidationError(f"The eval run {view.id} failed: {view.error}")
    if view.summary is None:
        raise ValidationError(
            f"The eval run {view.id} did not finish within {args.timeout} s ({view.status})."
        )
    if args.junit:
        xml = junit_xml(view, ctx.evals.cases(user, view.id))
        Path(args.junit).write_text(xml, encoding="utf-8")
    for line in summary_lines(view):
        print(line)
    if args.json:
        print(json.dumps(contract_json(view)))
    return GATE_FAILED if args.fail_on_regression and view.summary.gate_failed else 0


def summary_lines(view: EvalRunView) -> list[str]:
    """The verdict of a finished run for a terminal."""
    summary = view.summary
    assert summary is not None
    judge, agreement = summary.judge, summary.agreement
    rate = "—" if judge.win_rate is None else f"{judge.win_rate:.0%}"
    trust = (
        "no blind votes to compare it with yet"
        if not agreement.pairs
        else f"agrees with people on {agreement.agreement:.0%} of {agreement.pairs} pairs, "
        f"kappa {_number(agreement.kappa)}"
    )
    return [
        f"eval run {view.id}: {view.test_set_name} → {view.variant.label} "
        f"(baseline {view.baseline}, judge {view.judge})",
        f"checks: {summary.passed} passed, {summary.failed} failed, "
        f"{summary.regressions} regressions (pass → fail) of {summary.cases} cases",
        f"judge: {judge.wins} wins, {judge.ties} ties ({judge.order_sensitive} order-sensitive), "
        f"{judge.losses} losses, {judge.unjudged} unjudged; win rate {rate} "
        f"(95% CI {judge.ci_low:.0%}–{judge.ci_high:.0%})",
        f"judge–human agreement: {trust}",
    ]


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"
