"""`nexus testsets freeze` and `nexus eval run`: real conversations into test sets, and a persona
version replayed and judged against them — for people and for CI (see README, "Evaluating persona
changes on real traffic")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_core.errors import ValidationError
from nexus_core.eval.junit import junit_xml
from nexus_core.eval.runs import ORIGINAL, EvalRunView, EvalSpec, contract_json
from nexus_core.users import ADMIN_USERNAME

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
        baseline=args.baseline,
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


def add_eval_commands(sub: Any) -> None:
    """`testsets freeze`, `eval freeze` (the same) and `eval run` on the `nexus` parser."""
    testsets = sub.add_parser("testsets", help="test sets from real conversations")
    testsets_sub = testsets.add_subparsers(dest="testsets_command", required=True)
    _freeze_arguments(testsets_sub.add_parser("freeze", help=FREEZE_HELP))

    evals = sub.add_parser("eval", help="evaluate a persona version on frozen real traffic")
    evals_sub = evals.add_subparsers(dest="eval_command", required=True)
    _freeze_arguments(evals_sub.add_parser("freeze", help=FREEZE_HELP + " (= testsets freeze)"))
    run = evals_sub.add_parser("run", help="replay a test set, judge it against the baseline")
    run.add_argument("--test-set", required=True, metavar="NAME|ID")
    run.add_argument("--persona", required=True, metavar="NAME")
    run.add_argument("--version", type=int, metavar="N", help="default: the current version")
    run.add_argument("--provider", metavar="P", help="default: the server's provider")
    run.add_argument("--model", metavar="M")
    run.add_argument("--temperature", type=float, help="default: the persona version's")
    run.add_argument("--judge-provider", metavar="P", help="default: the server's provider")
    run.add_argument("--judge-model", metavar="M", help="default: the judge provider's model")
    run.add_argument("--baseline", default=ORIGINAL, metavar="original|RUN_ID")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per case")
    run.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a check went from pass to fail or the win rate's interval is below 0.5",
    )
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after")
    run.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    _user_argument(run)


FREEZE_HELP = "turn real user turns into test-set cases with their original replies"


def _freeze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", "--test-set", dest="name", required=True, metavar="NAME")
    parser.add_argument(
        "--message-id",
        "--message",
        dest="message_ids",
        action="append",
        type=int,
        metavar="ID",
        help="a user message or its reply (repeatable)",
    )
    parser.add_argument(
        "--session", dest="sessions", action="append", metavar="UUID", help="(repeatable)"
    )
    _user_argument(parser)


def _user_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        default=ADMIN_USERNAME,
        metavar="NAME",
        help=f"act as this account (default {ADMIN_USERNAME}, which may freeze anyone's turns)",
    )
