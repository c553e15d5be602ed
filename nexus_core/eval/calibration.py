"""How far to trust the judge: its agreement with people's blind votes on the Compare page.

A blind comparison's vote is a human pairwise judgement. For each pair of its replies (positions
``first`` < ``second``, both answered) a vote says:

- a best pick that is one of the two: that one won (``first`` or ``second``); a best pick that is
  neither says nothing about the pair;
- without a pick, good/bad ratings of both: the good one won, or ``tie`` when they agree.

The judge re-judges each pair once per judge model, both orders (see ``judge``), kept in
``judge_calibrations``. Agreement is the share of (vote, pair) items where the judge's outcome
(an order-sensitive tie counts as ``tie``) equals the person's, and Cohen's kappa corrects it for
the agreement chance alone would give: κ = (pₒ − pₑ) / (1 − pₑ), pₑ = Σₖ p_human(k) · p_judge(k).
Kappa is None when it is undefined (pₑ = 1: both always said the same one thing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core.ai.response import HistoryItem
from nexus_core.compare.run_store import ReplyView
from nexus_core.db.models import CompareVote, JudgeCalibration, PromptRun, RunVariant
from nexus_core.eval.judge import Judgement, PairToJudge

COMPARE_KIND: Final = "compare"
NO_VERDICT: Final = "none"

PairKey = tuple[str, int, int]  # (comparison run id, first position, second position)


@dataclass(frozen=True)
class HumanPair:
    """One person's judgement of one pair of replies: ``first``, ``second`` or ``tie``."""

    key: PairKey
    label: str


@dataclass(frozen=True)
class Agreement:
    """Judge–human agreement over ``pairs`` (vote, pair) items: the share agreeing and kappa."""

    pairs: int
    agreement: float | None
    kappa: float | None

    def to_json(self) -> dict[str, Any]:
        """The agreement as a JSON-ready dict."""
        return {"pairs": self.pairs, "agreement": self.agreement, "kappa": self.kappa}

    @classmethod
    def from_json(cls, data: Any) -> Agreement:
        """An agreement from ``to_json``'s form (nothing: no pairs)."""
        data = data or {}
        return cls(int(data.get("pairs", 0)), data.get("agreement"), data.get("kappa"))


def human_label(best: int | None, ratings: dict[str, Any], first: int, second: int) -> str | None:
    """What one vote says about the pair (see the module docstring); None: nothing."""
    if best is not None:
        return "first" if best == first else "second" if best == second else None
    one, two = ratings.get(str(first)), ratings.get(str(second))
    if not isinstance(one, dict) or not isinstance(two, dict):
        return None
    good_one, good_two = bool(one.get("good")), bool(two.get("good"))
    if good_one == good_two:
        return "tie"
    return "first" if good_one else "second"


def cohen_kappa(labels: Iterable[tuple[str, str]]) -> Agreement:
    """Agreement and Cohen's kappa of (human, judge) label pairs."""
    pairs = list(labels)
    n = len(pairs)
    if n == 0:
        return Agreement(0, None, None)
    observed = sum(human == judge for human, judge in pairs) / n
    humans = Counter(human for human, _ in pairs)
    judges = Counter(judge for _, judge in pairs)
    expected = sum(humans[k] * judges[k] for k in humans) / (n * n)
    kappa = None if expected == 1 else (observed - expected) / (1 - expected)
    return Agreement(n, observed, kappa)


def human_pairs(session: Session) -> list[HumanPair]:
    """Every (vote, pair) judgement of blind comparisons, oldest vote first."""
    rows = session.execute(
        select(CompareVote.run_id, CompareVote.best_position, CompareVote.ratings)
        .join(PromptRun, PromptRun.id == CompareVote.run_id)
        .where(PromptRun.kind == COMPARE_KIND, PromptRun.blind.is_(True))
        .order_by(CompareVote.created_at, CompareVote.id)
    )
    positions = _positions(session)
    found = []
    for run_id, best, ratings in rows:
        for first, second in combinations(positions.get(run_id, []), 2):
            label = human_label(best, ratings or {}, first, second)
            if label is not None:
                found.append(HumanPair((run_id, first, second), label))
    return found


def judged(session: Session, judge: str) -> dict[PairKey, str]:
    """The judge's stored verdicts by pair."""
    rows = session.execute(
        select(
            JudgeCalibration.compare_run_id,
            JudgeCalibration.first,
            JudgeCalibration.second,
            JudgeCalibration.verdict,
        ).where(JudgeCalibration.judge == judge)
    )
    return {(run_id, first, second): verdict for run_id, first, second, verdict in rows}


def agreement(session: Session, judge: str) -> Agreement:
    """The judge's agreement with people over every pair it has judged."""
    verdicts = judged(session, judge)
    return cohen_kappa(
        (pair.label, verdicts[pair.key])
        for pair in human_pairs(session)
        if verdicts.get(pair.key, NO_VERDICT) != NO_VERDICT
    )


def pending(
    session: Session,
    judge: str,
    replies_of: Any,
    limit: int,
) -> list[tuple[PairKey, PairToJudge]]:
    """Up to ``limit`` pairs people judged that ``judge`` has not, with what to show it.

    ``replies_of(session, run_id)`` gives a comparison's replies by (None, position)."""
    done = judged(session, judge)
    keys = list(dict.fromkeys(p.key for p in human_pairs(session) if p.key not in done))
    found: list[tuple[PairKey, PairToJudge]] = []
    for key in keys:
        if len(found) == limit:
            break
        pair = _pair(session, key, replies_of(session, key[0]))
        if pair is not None:
            found.append((key, pair))
    return found


def store(
    session: Session,
    judge: str,
    results: Sequence[tuple[PairKey, Judgement]],
    *,
    at: datetime,
) -> None:
    """Keep the judge's verdicts on pairs, judged ``at`` (a pair already judged keeps its first
    verdict)."""
    done = judged(session, judge)
    session.add_all(
        JudgeCalibration(
            compare_run_id=key[0],
            first=key[1],
            second=key[2],
            judge=judge,
            verdict=NO_VERDICT if result.outcome == "unjudged" else result.outcome,
            order_sensitive=result.order_sensitive,
            reasons=list(result.reasons),
            created_at=at,
        )
        for key, result in results
        if key not in done
    )


def _positions(session: Session) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    query = (
        select(RunVariant.run_id, RunVariant.position)
        .where(RunVariant.run_id.in_(select(CompareVote.run_id).scalar_subquery()))
        .order_by(RunVariant.run_id, RunVariant.position)
    )
    for run_id, position in session.execute(query):
        positions.setdefault(run_id, []).append(position)
    return positions


def _pair(session: Session, key: PairKey, replies: dict[Any, ReplyView]) -> PairToJudge | None:
    run = session.get(PromptRun, key[0])
    one, two = replies.get((None, key[1])), replies.get((None, key[2]))
    if run is None or one is None or two is None or one.text is None or two.text is None:
        return None
    history = tuple(HistoryItem(t["role"], t["content"]) for t in run.history or [])
    return PairToJudge(history, run.prompt or "", "", one.text, two.text)
