"""`CompareService`: one prompt to 2–4 variants side by side, judged, and the leaderboard it feeds.

Each variant's reply is an ordinary AI job in a hidden chat session (see ``run_store``), so it
streams, retries and logs ``job_*`` / ``request_*`` events like a chat reply, with the run's
``run_id``. The variants run at once on the worker's compare lane.

Blind mode shuffles the replies (the same way every time for a run) and hides which variant wrote
which until the viewer, or the run's owner, has voted. Pages show a slot's ``letter``, never its
``position``, which is only the handle to vote with.
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.response import HistoryItem
from nexus_core.chat import CONTROL_CHARS, clean_message
from nexus_core.compare.run_store import NewSession, ReplyView, RunStore
from nexus_core.compare.scoring import LeaderboardRow
from nexus_core.compare.variants import (
    COMPARE_LANE,
    ProviderChoice,
    VariantSpec,
    VariantView,
    check_count,
    provider_choices,
    require_feature,
    resolve_variants,
)
from nexus_core.compare.votes import Rating, VoteBook, VoteView, vote_evaluations
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import PromptRun, RunVariant, new_uuid
from nexus_core.errors import ValidationError
from nexus_core.ops.events import EventName
from nexus_core.users import UserView

KIND: Final = "compare"
MIN_VARIANTS: Final = 2
MAX_HISTORY_MESSAGES: Final = 10
MAX_TAG_CHARS: Final = 40
RUN_LIST_LIMIT: Final = 50
HISTORY_ROLES: Final = ("user", "assistant")  # the shared history alternates, user first
LETTERS: Final = string.ascii_uppercase


@dataclass(frozen=True)
class CompareSlot:
    """One reply column: its letter, the variant and the reply so far (while blind: no variant,
    and no model on the reply)."""

    letter: str
    position: int
    variant: VariantView | None
    reply: ReplyView


@dataclass(frozen=True)
class CompareView:
    """A comparison as one viewer sees it; ``slots`` in display order (shuffled when blind)."""

    id: str
    owner_id: int
    prompt: str
    history: tuple[HistoryItem, ...]
    tag: str | None
    blind: bool
    revealed: bool
    created_at: datetime
    slots: tuple[CompareSlot, ...]
    my_vote: VoteView | None
    votes: int

    @property
    def finished(self) -> bool:
        """Whether every reply has arrived or failed (judging is open)."""
        return all(slot.reply.finished for slot in self.slots)

    def slot(self, position: int) -> CompareSlot:
        """The slot of the variant at ``position``."""
        return next(slot for slot in self.slots if slot.position == position)


@dataclass(frozen=True)
class CompareSummary:
    """A comparison in a list; ``labels`` is None while blind and unjudged."""

    id: str
    prompt: str
    tag: str | None
    blind: bool
    created_at: datetime
    labels: tuple[str, ...] | None
    voted: bool


class CompareService:
    """Start comparisons, show them as they stream, record votes, rank variants."""

    def __init__(
        self,
        db: Database,
        worker: ResponseWorker,
        *,
        env: str,
        max_message_chars: int = 8000,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.worker = worker
        self.env = env
        self.max_message_chars = max_message_chars
        self.store = RunStore(db, worker, clock=clock)
        self.votes = VoteBook(db, clock=clock)

    def provider_choices(self) -> list[ProviderChoice]:
        """The providers a variant may use, the app's default first."""
        return provider_choices(self.worker.providers, self.worker.provider.name)

    def start(
        self,
        user: UserView,
        prompt: str,
        variants: Sequence[VariantSpec],
        *,
        history: Sequence[tuple[str, str]] = (),
        tag: str | None = None,
        blind: bool = False,
    ) -> CompareView:
        """Send ``prompt`` (after the shared ``history``) to every variant at once."""
        require_feature(user, self.env)
        check_count(variants, MIN_VARIANTS)
        prompt = clean_message(prompt, self.max_message_chars)
        turns = self._clean_history(history)
        tag = clean_tag(tag)
        with self.db.session() as session:
            resolved = resolve_variants(
                session, variants, self.worker.providers, self.worker.provider.name, user
            )
        run = PromptRun(
            id=new_uuid(),
            kind=KIND,
            user_id=user.id,
            prompt=prompt,
            history=[item._asdict() for item in turns],
            tag=tag,
            blind=blind,
            cases=[],
        )
        sessions = [NewSession(v.position, None, prompt, turns) for v in resolved]
        details = {"variants": [v.label for v in resolved], "tag": tag, "blind": blind}
        self.store.create(
            user,
            run,
            resolved,
            sessions,
            lane=COMPARE_LANE,
            action=audit.COMPARE_STARTED,
            details=details,
        )
        return self.get(user, run.id)

    def get(self, user: UserView, run_id: str) -> CompareView:
        """A comparison its owner or an admin may see, with every reply as it stands."""
        require_feature(user, self.env)
        with self.db.session() as session:
            run = self.store.load(session, user, run_id, KIND)
            variants = self.store.variants(session, run_id)
            replies = self.store.replies(session, run_id)
            votes = self.votes.of_run(session, run_id)
        mine = next((vote for vote in votes if vote.user_id == user.id), None)
        revealed = not run.blind or mine is not None or any(v.user_id == run.user_id for v in votes)
        order = display_order(run.id, [v.position for v in variants], blind=run.blind)
        ordered = sorted(variants, key=lambda v: order[v.position])
        slots = tuple(
            _slot(LETTERS[place], variant, replies[(None, variant.position)], revealed)
            for place, variant in enumerate(ordered)
        )
        return CompareView(
            id=run.id,
            owner_id=run.user_id,
            prompt=run.prompt or "",
            history=tuple(HistoryItem(t["role"], t["content"]) for t in run.history),
            tag=run.tag,
            blind=run.blind,
            revealed=revealed,
            created_at=run.created_at,
            slots=slots,
            my_vote=mine,
            votes=len(votes),
        )

    def wait(self, user: UserView, run_id: str, timeout: float | None = None) -> CompareView:
        """Block until every reply of the run has finished (or ``timeout``), then show it."""
        view = self.get(user, run_id)
        self.store.wait((slot.reply.job_id for slot in view.slots), timeout)
        return self.get(user, run_id)

    def retry(self, user: UserView, run_id: str, position: int) -> CompareView:
        """Ask a variant whose reply failed again (before anyone has judged the comparison)."""
        view = self.get(user, run_id)
        if view.owner_id != user.id:
            raise ValidationError("Only the person who started a comparison can retry a reply.")
        slot = next((s for s in view.slots if s.position == position), None)
        if slot is None or slot.reply.job_id is None or slot.reply.status != "failed":
            raise ValidationError("Only a failed reply can be retried.")
        if view.votes:
            raise ValidationError("This comparison has been judged; start a new one instead.")
        self.worker.retry(slot.reply.job_id, user, lane=COMPARE_LANE)
        return self.get(user, run_id)

    def vote(
        self,
        user: UserView,
        run_id: str,
        *,
        best: int | None = None,
        ratings: Mapping[int, Rating | tuple[bool, str]] | None = None,
    ) -> VoteView:
        """Record the viewer's judgement: the best reply (a position) and/or good/bad ratings
        with notes. Once every reply has finished; once per person. Once stored, the vote is
        logged through the worker's event sink as evaluations of the replies it judged."""
        view = self.get(user, run_id)
        with self.db.session() as session:
            labels = {v.position: v.label for v in self.store.variants(session, run_id)}
        vote = self.votes.cast(user, view, labels, best=best, ratings=ratings or {})
        for fields in vote_evaluations(view, vote):
            self.worker.events.emit(EventName.EVALUATION_RESULT, user_id=user.id, **fields)
        return vote

    def list_runs(self, user: UserView, *, limit: int = RUN_LIST_LIMIT) -> list[CompareSummary]:
        """The user's own comparisons, newest first."""
        require_feature(user, self.env)
        with self.db.session() as session:
            runs = list(
                session.scalars(
                    select(PromptRun)
                    .where(PromptRun.user_id == user.id, PromptRun.kind == KIND)
                    .order_by(PromptRun.created_at.desc(), PromptRun.id)
                    .limit(limit)
                )
            )
            ids = [run.id for run in runs]
            labels = _labels_of(session, ids)
            voters = self.votes.voters(session, ids)
        return [
            CompareSummary(
                id=run.id,
                prompt=run.prompt or "",
                tag=run.tag,
                blind=run.blind,
                created_at=run.created_at,
                labels=(
                    tuple(labels.get(run.id, ()))
                    if not run.blind or run.user_id in voters.get(run.id, set())
                    else None
                ),
                voted=user.id in voters.get(run.id, set()),
            )
            for run in runs
        ]

    def leaderboard(
        self,
        user: UserView,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        tag: str | None = None,
    ) -> list[LeaderboardRow]:
        """Every variant's win rate over everyone's votes with start ≤ vote time < end, with
        its comparisons and 95% Wilson interval (see ``scoring``); ``tag`` keeps one tag."""
        require_feature(user, self.env)
        return self.votes.leaderboard(start=start, end=end, tag=tag)

    def tags(self, user: UserView) -> list[str]:
        """Every tag comparisons have used, alphabetically."""
        require_feature(user, self.env)
        query = (
            select(PromptRun.tag)
            .where(PromptRun.kind == KIND, PromptRun.tag.is_not(None))
            .group_by(PromptRun.tag)
            .order_by(PromptRun.tag)
        )
        with self.db.session() as session:
            return [tag for tag in session.scalars(query) if tag]

    def _clean_history(self, history: Sequence[tuple[str, str]]) -> tuple[HistoryItem, ...]:
        if len(history) > MAX_HISTORY_MESSAGES:
            raise ValidationError(
                f"The shared history holds at most {MAX_HISTORY_MESSAGES} messages; "
                f"this one has {len(history)}."
            )
        turns = []
        for number, (role, content) in enumerate(history, start=1):
            expected = HISTORY_ROLES[(number - 1) % len(HISTORY_ROLES)]
            if role != expected:
                raise ValidationError(
                    f"History message {number} should be from the {expected}: the shared history "
                    "alternates user and assistant messages, starting with the user."
                )
            try:
                turns.append(HistoryItem(role, clean_message(content, self.max_message_chars)))
            except ValidationError as exc:
                raise ValidationError(f"History message {number}: {exc}") from exc
        if turns and turns[-1].role != HISTORY_ROLES[-1]:
            raise ValidationError(
                "The shared history ends with the assistant's answer; the prompt is the next "
                "user message."
            )
        return tuple(turns)


def clean_tag(tag: str | None) -> str | None:
    """A tag without control characters or surrounding space; empty is no tag."""
    cleaned = " ".join(CONTROL_CHARS.sub("", tag or "").split())
    if len(cleaned) > MAX_TAG_CHARS:
        raise ValidationError(f"A tag has at most {MAX_TAG_CHARS} characters.")
    return cleaned or None


def display_order(run_id: str, positions: Sequence[int], *, blind: bool) -> dict[int, int]:
    """Position → place on the page: as chosen, or shuffled (seeded by the run) when blind."""
    ordered = sorted(positions)
    if blind:
        random.Random(run_id).shuffle(ordered)
    return {position: place for place, position in enumerate(ordered)}


def _slot(letter: str, variant: VariantView, reply: ReplyView, revealed: bool) -> CompareSlot:
    if not revealed:  # the variant, or the model its reply names, would give it away
        return CompareSlot(letter, variant.position, None, dataclasses.replace(reply, model=None))
    return CompareSlot(letter, variant.position, variant, reply)


def _labels_of(session: Session, run_ids: Sequence[str]) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    if not run_ids:
        return labels
    rows = session.execute(
        select(RunVariant.run_id, RunVariant.label)
        .where(RunVariant.run_id.in_(run_ids))
        .order_by(RunVariant.run_id, RunVariant.position)
    )
    for run_id, label in rows:
        labels.setdefault(run_id, []).append(label)
    return labels
