"""`TestSetService`: named lists of prompts with checks, run against variants, runs compared.

A run asks every case of the set (as it was when the run started: the run keeps a copy) of every
chosen variant, one hidden session and one ordinary AI job per cell, on the worker's test-set
lane. Its results are the matrix of cells (case × variant): each reply checked with
``checks.evaluate`` against the stored text and latency (a reply job is timed from its start, not
from the queue). Two runs are compared with ``run_diff``; see ``compare`` for how their variants
are matched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.progress import FINISHED_STATES
from nexus_core.chat import CONTROL_CHARS
from nexus_core.compare.checks import TestCase, cases_from_json, cases_to_json
from nexus_core.compare.run_diff import RunComparison, compare_runs
from nexus_core.compare.run_store import NewSession, RunProgress, RunStore
from nexus_core.compare.test_results import ResultsMatrix, build_matrix, matched_cells
from nexus_core.compare.variants import (
    TEST_SET_LANE,
    VariantSpec,
    VariantView,
    check_count,
    require_feature,
    resolve_variants,
)
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, ChatSession, PromptRun, new_uuid
from nexus_core.db.models import TestSet as TestSetRow
from nexus_core.errors import NotFound, ValidationError
from nexus_core.users import UserView

KIND: Final = "test_set"
MAX_NAME_CHARS: Final = 120
TEST_SET_NOT_FOUND: Final = "That test set does not exist or is not yours."
OWNER_ONLY: Final = "Only the owner of a test set can change or delete it."


@dataclass(frozen=True)
class TestSetView:
    """A test set as plain data: its cases in order."""

    __test__ = False  # not a pytest test class, despite its name

    id: int
    owner_id: int
    name: str
    cases: tuple[TestCase, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TestRunView:
    """One run of a test set: the cases and variants it ran, and how far it has got."""

    __test__ = False

    id: str
    owner_id: int
    test_set_id: int | None  # None once the set is deleted; the run keeps its cases
    test_set_name: str
    created_at: datetime
    cases: tuple[TestCase, ...]
    variants: tuple[VariantView, ...]
    done: int
    total: int

    @property
    def finished(self) -> bool:
        """Whether every reply has arrived or failed."""
        return self.done == self.total


class TestSetService:
    """Create and edit test sets, run them against variants, read and compare the results."""

    __test__ = False

    def __init__(
        self, db: Database, worker: ResponseWorker, *, env: str, clock: Clock = utc_now
    ) -> None:
        self.db = db
        self.worker = worker
        self.env = env
        self.clock = clock
        self.store = RunStore(db, worker, clock=clock)

    # --- test sets ----------------------------------------------------------------------------

    def create(self, user: UserView, name: str, cases: Sequence[TestCase]) -> TestSetView:
        """A new test set owned by ``user``."""
        require_feature(user, self.env)
        name, stored = _clean_name(name), _stored_cases(cases)
        now = self.clock()
        try:
            with self.db.session() as session:
                row = TestSetRow(
                    owner_id=user.id, name=name, cases=stored, created_at=now, updated_at=now
                )
                session.add(row)
                session.flush()
                _audit(session, user, audit.TEST_SET_CREATED, row, cases=len(stored), at=now)
                return _set_view(row)
        except IntegrityError as exc:
            raise ValidationError(f"You already have a test set named {name!r}.") from exc

    def update(
        self,
        user: UserView,
        test_set_id: int,
        *,
        name: str | None = None,
        cases: Sequence[TestCase] | None = None,
    ) -> TestSetView:
        """Rename a test set and/or replace its cases (its owner only).

        A new case with the prompt of a frozen case keeps that case's history, baseline and
        origin (the text form shows only prompts and checks), see ``keep_frozen``."""
        require_feature(user, self.env)
        new_name = None if name is None else _clean_name(name)
        try:
            with self.db.session() as session:
                row = self._owned(session, user, test_set_id)
                if new_name is not None:
                    row.name = new_name
                if cases is not None:
                    kept = keep_frozen(cases_from_json(row.cases), cases)
                    row.cases = _stored_cases(kept)
                row.updated_at = self.clock()
                session.flush()
                _audit(
                    session,
                    user,
                    audit.TEST_SET_EDITED,
                    row,
                    cases=len(row.cases),
                    at=row.updated_at,
                )
                return _set_view(row)
        except IntegrityError as exc:
            raise ValidationError(f"You already have a test set named {new_name!r}.") from exc

    def delete(self, user: UserView, test_set_id: int) -> None:
        """Delete a test set (its owner only); its runs stay, with their copy of the cases."""
        require_feature(user, self.env)
        with self.db.session() as session:
            row = self._owned(session, user, test_set_id)
            _audit(
                session, user, audit.TEST_SET_DELETED, row, cases=len(row.cases), at=self.clock()
            )
            session.delete(row)

    def list(self, user: UserView) -> list[TestSetView]:
        """The user's test sets by name (an admin's list holds everyone's)."""
        require_feature(user, self.env)
        query = select(TestSetRow).order_by(TestSetRow.name, TestSetRow.id)
        if not user.is_admin:
            query = query.where(TestSetRow.owner_id == user.id)
        with self.db.session() as session:
            return [_set_view(row) for row in session.scalars(query)]

    def get(self, user: UserView, test_set_id: int) -> TestSetView:
        """A test set its owner or an admin may see."""
        require_feature(user, self.env)
        with self.db.session() as session:
            return _set_view(self._visible(session, user, test_set_id))

    # --- runs ---------------------------------------------------------------------------------

    def run(self, user: UserView, test_set_id: int, variants: Sequence[VariantSpec]) -> TestRunView:
        """Ask every case of the set of each variant (1–4); the replies arrive in the background."""
        require_feature(user, self.env)
        check_count(variants, 1)
        with self.db.session() as session:
            test_set = self._visible(session, user, test_set_id)
            cases = cases_from_json(test_set.cases)
            resolved = resolve_variants(
                session, variants, self.worker.providers, self.worker.provider.name, user
            )
        if not cases:
            raise ValidationError("This test set has no cases; add a prompt first.")
        run = PromptRun(
            id=new_uuid(),
            kind=KIND,
            user_id=user.id,
            history=[],
            blind=False,
            test_set_id=test_set.id,
            test_set_name=test_set.name,
            cases=cases_to_json(cases),
        )
        sessions = [
            NewSession(variant.position, index, case.prompt, case.history)
            for index, case in enumerate(cases)
            for variant in resolved
        ]
        details = {
            "test_set": test_set.name,
            "cases": len(cases),
            "variants": [v.label for v in resolved],
        }
        self.store.create(
            user,
            run,
            resolved,
            sessions,
            lane=TEST_SET_LANE,
            action=audit.TEST_SET_RUN_STARTED,
            details=details,
        )
        return self.get_run(user, run.id)

    def get_run(self, user: UserView, run_id: str) -> TestRunView:
        """A run its owner or an admin may see, with its progress."""
        require_feature(user, self.env)
        with self.db.session() as session:
            run = self.store.load(session, user, run_id, KIND)
            variants = self.store.variants(session, run_id)
        return _run_view(run, variants, self.store.progress(run_id))

    def progress(self, user: UserView, run_id: str) -> RunProgress:
        """(done, total) replies of a run, for a progress bar; cheap enough to poll."""
        require_feature(user, self.env)
        with self.db.session() as session:
            self.store.load(session, user, run_id, KIND)
        return self.store.progress(run_id)

    def results(self, user: UserView, run_id: str) -> ResultsMatrix:
        """The run's matrix: every case × variant cell with its reply and checks."""
        require_feature(user, self.env)
        with self.db.session() as session:
            run = self.store.load(session, user, run_id, KIND)
            variants = self.store.variants(session, run_id)
            replies = self.store.replies(session, run_id)
        done = sum(reply.finished for reply in replies.values())
        view = _run_view(run, variants, RunProgress(done, len(replies)))
        return build_matrix(view.cases, view.variants, replies, run=view)

    def wait(self, user: UserView, run_id: str, timeout: float | None = None) -> ResultsMatrix:
        """Block until every reply of the run has finished (or ``timeout``), then the results."""
        matrix = self.results(user, run_id)
        self.store.wait((cell.reply.job_id for cell in matrix.cells), timeout)
        return self.results(user, run_id)

    def list_runs(self, user: UserView, test_set_id: int) -> list[TestRunView]:
        """The runs of a test set the user may see (their own; an admin's: everyone's), newest
        first."""
        require_feature(user, self.env)
        with self.db.session() as session:
            self._visible(session, user, test_set_id)
            query = (
                select(PromptRun)
                .where(PromptRun.kind == KIND, PromptRun.test_set_id == test_set_id)
                .order_by(PromptRun.created_at.desc(), PromptRun.id)
            )
            if not user.is_admin:
                query = query.where(PromptRun.user_id == user.id)
            runs = list(session.scalars(query))
            counts = _progress_of(session, [run.id for run in runs])
            return [
                _run_view(run, self.store.variants(session, run.id), counts[run.id]) for run in runs
            ]

    def compare(self, user: UserView, before_run_id: str, after_run_id: str) -> RunComparison:
        """How a later run differs from an earlier one: what regressed, what got fixed.

        Cells are matched by prompt text and variant. Variants with the same label in both runs
        match; the rest match in their order in each run (a persona edited between the runs has
        a new version, so a new label), and are named ``before label → after label``.
        """
        before, after = self.results(user, before_run_id), self.results(user, after_run_id)
        for matrix in (before, after):
            if not matrix.run.finished:
                raise ValidationError(
                    f"The run of {matrix.run.created_at:%Y-%m-%d %H:%M} is still running "
                    f"({matrix.run.done} of {matrix.run.total}); compare it once it has finished."
                )
        old, new = matched_cells(before, after)
        return compare_runs(old, new)

    # --- helpers ------------------------------------------------------------------------------

    def _visible(self, session: Session, user: UserView, test_set_id: int) -> TestSetRow:
        row = session.get(TestSetRow, test_set_id)
        if row is None or (row.owner_id != user.id and not user.is_admin):
            raise NotFound(TEST_SET_NOT_FOUND)
        return row

    def _owned(self, session: Session, user: UserView, test_set_id: int) -> TestSetRow:
        row = self._visible(session, user, test_set_id)
        if row.owner_id != user.id:
            raise ValidationError(OWNER_ONLY)
        return row


def keep_frozen(old: Sequence[TestCase], new: Sequence[TestCase]) -> list[TestCase]:
    """``new`` where a case without frozen context takes it from an unused frozen case of ``old``
    with the same prompt (the first one, so repeated prompts pair up in order)."""
    spare: dict[str, list[TestCase]] = {}
    for item in old:
        if item.frozen:
            spare.setdefault(item.prompt, []).append(item)
    kept = []
    for item in new:
        source = spare.get(item.prompt)
        if item.frozen or not source:
            kept.append(item)
            continue
        frozen = source.pop(0)
        kept.append(
            dataclasses.replace(
                item, history=frozen.history, baseline=frozen.baseline, origin=frozen.origin
            )
        )
    return kept


def _clean_name(name: str) -> str:
    cleaned = " ".join(CONTROL_CHARS.sub("", name or "").split())
    if not cleaned or len(cleaned) > MAX_NAME_CHARS:
        raise ValidationError(f"A test set's name has 1–{MAX_NAME_CHARS} characters.")
    return cleaned


def _stored_cases(cases: Sequence[TestCase]) -> list[dict[str, object]]:
    if not all(isinstance(case, TestCase) for case in cases):
        raise ValidationError("A test set's cases must be test cases.")
    stored = cases_to_json(cases)
    cases_from_json(stored)  # the same limits as reading them back (the number of cases)
    if not stored:
        raise ValidationError("A test set needs at least one prompt.")
    return stored


def _set_view(row: TestSetRow) -> TestSetView:
    return TestSetView(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        cases=tuple(cases_from_json(row.cases)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _run_view(
    run: PromptRun, variants: Sequence[VariantView], progress: RunProgress
) -> TestRunView:
    return TestRunView(
        id=run.id,
        owner_id=run.user_id,
        test_set_id=run.test_set_id,
        test_set_name=run.test_set_name or "",
        created_at=run.created_at,
        cases=tuple(cases_from_json(run.cases)),
        variants=tuple(variants),
        done=progress.done,
        total=progress.total,
    )


def _progress_of(session: Session, run_ids: Sequence[str]) -> dict[str, RunProgress]:
    """(done, total) of several test-set runs in one query (their cells have one job each)."""
    finished = case((AiJob.status.in_(FINISHED_STATES), 1), else_=0)
    rows = session.execute(
        select(ChatSession.run_id, func.count(ChatSession.id), func.coalesce(func.sum(finished), 0))
        .outerjoin(AiJob, AiJob.session_id == ChatSession.id)
        .where(ChatSession.run_id.in_(run_ids))
        .group_by(ChatSession.run_id)
    )
    counts = {run_id: RunProgress(int(done), int(total)) for run_id, total, done in rows}
    return {run_id: counts.get(run_id, RunProgress(0, 0)) for run_id in run_ids}


def _audit(
    session: Session, user: UserView, action: str, row: TestSetRow, *, cases: int, at: datetime
) -> None:
    audit.record(
        session,
        action,
        actor_id=user.id,
        actor_name=user.username,
        target_type="test_set",
        target_id=row.id,
        details={"name": row.name, "cases": cases},
        at=at,
    )
