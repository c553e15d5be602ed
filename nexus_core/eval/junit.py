"""An eval run as JUnit XML, the format CI systems show as a test report.

One ``testsuite`` (the run) with one ``testcase`` per case. A case fails when its checks regressed
(the baseline passed, the new reply does not) or the judge found the new reply worse (a loss);
the failure's message says which, and its text holds the check failures and the judge's reasons.
Other cases pass; an unjudged case carries its reason in ``system-out``. Built with
``xml.etree.ElementTree``, so the text of replies and prompts is escaped by the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from xml.etree import ElementTree

from nexus_core.eval.runs import CaseResult, EvalRunView

NAME_CHARS: Final = 80
SUITE_NAME: Final = "nexus eval: {test_set} → {variant}"


def junit_xml(view: EvalRunView, results: Sequence[CaseResult]) -> str:
    """The JUnit XML document of a finished run."""
    failures = [r for r in results if _failure(r)]
    suite = ElementTree.Element(
        "testsuite",
        {
            "name": SUITE_NAME.format(test_set=view.test_set_name, variant=view.variant.label),
            "tests": str(len(results)),
            "failures": str(len(failures)),
            "errors": "0",
            "skipped": "0",
            "timestamp": view.created_at.isoformat(),
            "time": f"{_seconds(results):.3f}",
        },
    )
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in _properties(view):
        ElementTree.SubElement(properties, "property", {"name": name, "value": value})
    for result in results:
        suite.append(_testcase(view, result))
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


def _testcase(view: EvalRunView, result: CaseResult) -> ElementTree.Element:
    case = ElementTree.Element(
        "testcase",
        {
            "classname": f"eval.{view.test_set_name}",
            "name": f"case {result.index + 1}: {_short(result.prompt)}",
            "time": f"{(result.reply.latency_ms or 0.0) / 1000:.3f}",
        },
    )
    message = _failure(result)
    details = [*result.failures, *(f"judge: {reason}" for reason in result.reasons)]
    if message:
        failure = ElementTree.SubElement(case, "failure", {"message": message, "type": "eval"})
        failure.text = "\n".join(details)
    elif details:
        ElementTree.SubElement(case, "system-out").text = "\n".join(details)
    return case


def _failure(result: CaseResult) -> str | None:
    reasons = []
    if result.regressed:
        reasons.append("regression: the checks passed on the baseline and fail now")
    if result.outcome == "loss":
        reasons.append("judged worse than the baseline in both orders")
    return "; ".join(reasons) or None


def _properties(view: EvalRunView) -> list[tuple[str, str]]:
    found = [("run_id", view.id), ("judge", view.judge), ("baseline", view.baseline)]
    summary = view.summary
    if summary is not None:
        judge, agreement = summary.judge, summary.agreement
        found += [
            ("win_rate", "" if judge.win_rate is None else f"{judge.win_rate:.4f}"),
            ("ci_low", f"{judge.ci_low:.4f}"),
            ("ci_high", f"{judge.ci_high:.4f}"),
            ("order_sensitive", str(judge.order_sensitive)),
            ("judge_human_pairs", str(agreement.pairs)),
            ("judge_human_kappa", "" if agreement.kappa is None else f"{agreement.kappa:.4f}"),
        ]
    return found


def _seconds(results: Sequence[CaseResult]) -> float:
    return sum((r.reply.latency_ms or 0.0) for r in results) / 1000


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= NAME_CHARS else line[: NAME_CHARS - 1] + "…"
