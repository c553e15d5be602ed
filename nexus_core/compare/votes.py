"""Votes on comparisons, and the leaderboard computed from every stored vote.

A vote picks the best reply, rates replies good or bad with a note, or both; it is cast once
every reply has finished, once per person and run (the database refuses a second), and never
changes. Each vote is audited as ``compare.voted``, and logged as one ``evaluation_result``
event per reply it judged (``vote_evaluations``), which the traces export as
``gen_ai.evaluation.result`` on the reply's job. How votes turn into wins and losses is
``scoring``'s rule; variants are identified by their labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.chat import CONTROL_CHARS
from nexus_core.compare.run_store import AUDIT_TARGET
from nexus_core.compare.scoring import LeaderboardRow, VoteRecord, leaderboard
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import CompareVote, PromptRun, RunVariant
from nexus_core.errors import ValidationError
from nexus_core.ops.genai import VOTE_BEST, VOTE_RATING
from nexus_core.users import UserView

if TYPE_CHECKING:
    from nexus_core.compare.runs import CompareView

MAX_NOTE_CHARS: Final = 1000
ALREADY_VOTED: Final = "You have already judged this comparison; a vote cannot be changed."
NOT_FINISHED: Final = "Wait until every reply has arrived or failed before judging."
NOTHING_CHOSEN: Final = "Pick the best reply, or rate at least one reply good or bad."
COMPARE_KIND: Final = "compare"
PERSON: Final = "person"  # the evaluator of a vote


@dataclass(frozen=True)
class Rating:
    """A thumbs rating of one reply, with an optional note."""

    good: bool
    note: str = ""


@dataclass(frozen=True)
class VoteView:
    """One person's stored judgement of a comparison; ratings by variant position."""

    id: int
    run_id: str
    user_id: int
    best_position: int | None
    ratings: Mapping[int, Rating]
    created_at: datetime


class VoteBook:
    """Stores votes and reads them back, per run or as a leaderboard."""

    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    def of_run(self, session: Session, run_id: str) -> list[VoteView]:
        """Every vote on a run, oldest first."""
        query = select(CompareVote).where(CompareVote.run_id == run_id).order_by(CompareVote.id)
        return [_vote_view(vote) for vote in session.scalars(query)]

    def voters(self, session: Session, run_ids: Sequence[str]) -> dict[str, set[int]]:
        """Run id → the ids of the users who voted on it."""
        voters: dict[str, set[int]] = {}
        if run_ids:
            rows = session.execute(
                select(CompareVote.run_id, CompareVote.user_id).where(
                    CompareVote.run_id.in_(run_ids)
                )
            )
            for run_id, user_id in rows:
                voters.setdefault(run_id, set()).add(user_id)
        return voters

    def cast(
        self,
        user: UserView,
        view: CompareView,
        labels: Mapping[int, str],
        *,
        best: int | None,
        ratings: Mapping[int, Rating | tuple[bool, str]],
    ) -> VoteView:
        """Store ``user``'s vote on the comparison ``view`` shows them, with its audit record."""
        if not view.finished:
            raise ValidationError(NOT_FINISHED)
        if view.my_vote is not None:
            raise ValidationError(ALREADY_VOTED)
        letters = {slot.position: slot.letter for slot in view.slots}
        if best is not None:
            if best not in letters:
                raise ValidationError("There is no such reply to pick as the best.")
            if not view.slot(best).reply.succeeded:
                raise ValidationError(
                    f"Reply {letters[best]} failed; pick the best among the replies that arrived."
                )
        cleaned = {
            position: _clean_rating(letters, position, rating)
            for position, rating in ratings.items()
        }
        if best is None and not cleaned:
            raise ValidationError(NOTHING_CHOSEN)
        details: dict[str, Any] = {
            "best": labels.get(best) if best is not None else None,
            "ratings": {labels[p]: r.good for p, r in cleaned.items()},
            "notes": sum(bool(r.note) for r in cleaned.values()),
            "blind": view.blind,
        }
        now = self.clock()
        try:
            with self.db.session() as session:
                vote = CompareVote(
                    run_id=view.id,
                    user_id=user.id,
                    best_position=best,
                    ratings={str(p): {"good": r.good, "note": r.note} for p, r in cleaned.items()},
                    created_at=now,
                )
                session.add(vote)
                audit.record(
                    session,
                    audit.COMPARE_VOTED,
                    actor_id=user.id,
                    actor_name=user.username,
                    target_type=AUDIT_TARGET,
                    target_id=view.id,
                    details=details,
                    at=now,
                )
                session.flush()
                return _vote_view(vote)
        except IntegrityError as exc:  # a second vote that raced the first one
            raise ValidationError(ALREADY_VOTED) from exc

    def leaderboard(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        tag: str | None = None,
    ) -> list[LeaderboardRow]:
        """The leaderboard over votes with start ≤ created_at < end (naive times are UTC)."""
        start, end = _aware(start), _aware(end)
        votes = (
            select(
                CompareVote.run_id,
                CompareVote.created_at,
                CompareVote.best_position,
                CompareVote.ratings,
                PromptRun.tag,
            )
            .join(PromptRun, PromptRun.id == CompareVote.run_id)
            .where(PromptRun.kind == COMPARE_KIND)
        )
        if start is not None:
            votes = votes.where(CompareVote.created_at >= start)
        if end is not None:
            votes = votes.where(CompareVote.created_at < end)
        if tag is not None:
            votes = votes.where(PromptRun.tag == tag)
        run_ids = votes.with_only_columns(CompareVote.run_id).distinct().scalar_subquery()
        variants = (
            select(RunVariant.run_id, RunVariant.position, RunVariant.label)
            .where(RunVariant.run_id.in_(run_ids))
            .order_by(RunVariant.run_id, RunVariant.position)
        )
        with self.db.session() as session:
            labels: dict[str, dict[int, str]] = {}
            for run_id, position, label in session.execute(variants):
                labels.setdefault(run_id, {})[position] = label
            records = [_record(row, labels.get(row.run_id, {})) for row in session.execute(votes)]
        return leaderboard(records, start=start, end=end, tag=tag)


def vote_evaluations(view: CompareView, vote: VoteView) -> list[dict[str, Any]]:
    """The vote as evaluations of the replies it judged (``evaluation_result`` event fields):
    best or not for each reply that arrived when a best one was picked, good or bad for each
    rated reply. Never a note's text: it may hold personal data."""
    found: list[dict[str, Any]] = []
    for slot in view.slots:
        if slot.reply.job_id is None:
            continue
        judged = {"job_id": slot.reply.job_id, "run_id": view.id, "vote_id": vote.id}
        if vote.best_position is not None and slot.reply.succeeded:
            best = slot.position == vote.best_position
            found.append(
                {
                    **judged,
                    "evaluation": VOTE_BEST,
                    "score_value": 1.0 if best else 0.0,
                    "score_label": "best" if best else "not_best",
                    "evaluator": PERSON,
                }
            )
        rating = vote.ratings.get(slot.position)
        if rating is not None:
            found.append(
                {
                    **judged,
                    "position": slot.position,
                    "evaluation": VOTE_RATING,
                    "score_value": 1.0 if rating.good else 0.0,
                    "score_label": "good" if rating.good else "bad",
                    "evaluator": PERSON,
                }
            )
    return found


def _clean_rating(
    letters: Mapping[int, str], position: int, rating: Rating | tuple[bool, str]
) -> Rating:
    if position not in letters:
        raise ValidationError("There is no such reply to rate.")
    good, note = (rating.good, rating.note) if isinstance(rating, Rating) else rating
    note = CONTROL_CHARS.sub("", note or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError(
            f"The note on reply {letters[position]} has {len(note):,} characters; "
            f"the limit is {MAX_NOTE_CHARS:,}."
        )
    return Rating(bool(good), note)


def _vote_view(vote: CompareVote) -> VoteView:
    return VoteView(
        id=vote.id,
        run_id=vote.run_id,
        user_id=vote.user_id,
        best_position=vote.best_position,
        ratings={
            int(p): Rating(bool(r.get("good")), str(r.get("note") or ""))
            for p, r in (vote.ratings or {}).items()
        },
        created_at=vote.created_at,
    )


def _record(row: Any, labels: Mapping[int, str]) -> VoteRecord:
    ratings = {labels[int(p)]: bool(r.get("good")) for p, r in (row.ratings or {}).items()}
    return VoteRecord(
        run_id=row.run_id,
        created_at=row.created_at,
        tag=row.tag,
        variants=tuple(labels[p] for p in sorted(labels)),
        best=labels[row.best_position] if row.best_position is not None else None,
        ratings=ratings,
    )


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
