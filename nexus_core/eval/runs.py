"""`EvalService`: replay a test set against a variant, judge every reply against its baseline, and
aggregate the verdict.

An eval run is a prompt run of kind ``eval`` that moves through three states, each step taken by
``advance`` once the jobs of the step before have all finished (so any process, and any page
polling it, can move it on; a guarded status update makes sure only one does):

    replaying   every case asked of the variant (position 0), with the case's frozen history,
                as ordinary jobs on the ``eval`` lane (channel ``eval``: synthetic traffic)
    judging     each case whose new reply arrived and that has a baseline judged twice, order
                swapped (positions 1 and 2, see ``judge``); with them, up to
                ``CALIBRATION_PAIRS`` pairs of blind-vote replies this judge has not judged yet
                (see ``calibration``)
    finished    verdicts stored per case; the aggregate in ``eval_runs.summary``; each judged
                case logged as an ``evaluation_result`` of its new reply's job
    failed      a step was refused (a spent hard budget): ``error`` says why

The baseline is the case's original reply (``original``), or the reply another eval or test-set
run gave the same prompt (its first variant). A case *passes* when its reply arrived and passed the
case's checks; it *regressed* when the baseline passed and the new reply does not. The judge's win
rate counts a tie as half a win over the judged cases, with its 95 % Wilson interval;
``gate_failed`` (CI's ``--fail-on-regression``) is a regression or an interval wholly below 0.5.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.lanes import EVAL_LANE
from nexus_core.compare.checks import TestCase, cases_from_json, cases_to_json, evaluate, passed
from nexus_core.compare.run_store import NewSession, ReplyView, RunStore
from nexus_core.compare.scoring import wilson_interval
from nexus_core.compare.test_sets import TestSetService, TestSetView
from nexus_core.compare.variants import (
    VariantSpec,
    VariantView,
    require_feature,
    resolve_variants,
)
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    AiJob,
    ChatSession,
    EvalRun,
    EvalVerdict,
    Message,
    Persona,
    PersonaVersion,
    PromptRun,
    User,
    new_uuid,
)
from nexus_core.errors import BudgetExceeded, NotFound, ValidationError
from nexus_core.eval import calibration
from nexus_core.eval.calibration import Agreement
from nexus_core.eval.judge import (
    JUDGE_POSITIONS,
    JUDGE_TEMPERATURE,
    NEW_FIRST,
    NEW_SECOND,
    Judgement,
    JudgeSessions,
    PairToJudge,
    judgement_of,
)
from nexus_core.ops.events import EventName
from nexus_core.ops.genai import JUDGE_PAIRWISE
from nexus_core.users import UserView, to_view

KIND: Final = "eval"
LANE_WORKERS: Final[dict[str, int]] = {EVAL_LANE: 4}
ORIGINAL: Final = "original"
CALIBRATION_PAIRS: Final = 50  # new blind-vote pairs a run judges, at most
RUN_LIST_LIMIT: Final = 50
WAIT_SLICE_SECONDS: Final = 0.05
EVAL_STARTED: Final = "eval.started"
TEST_SET_NOT_FOUND: Final = "There is no test set {ref!r} that you can see."
NO_REPLY: Final = "no new reply: {error}"
NO_BASELINE: Final = "no baseline reply to judge against"
DONE_STATES: Final = ("finished", "failed")
OUTCOME_OF: Final = {"first": "win", "second": "loss", "tie": "tie", "unjudged": "unjudged"}
# A judged outcome as an evaluation score of the new reply (a tie is half a win, as in the rate).
JUDGE_SCORES: Final = {"win": 1.0, "tie": 0.5, "loss": 0.0}
PICK_OF: Final = {"first": "new", "second": "baseline", "tie": "tie", None: None}


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate: a test set (name or id), the variant (persona, version, provider, model,
    temperature; None: the default), the judge (None: the server's provider and its model) and
    the baseline (``original`` or a run id)."""

    test_set: str
    persona: str
    version: int | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    judge_provider: str | None = None
    judge_model: str | None = None
    baseline: str = ORIGINAL


@dataclass(frozen=True)
class JudgeTally:
    """The judge's verdicts over the cases: wins, ties, losses of the new version, how many ties
    were order-sensitive, how many cases went unjudged, and the win rate with its interval."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    order_sensitive: int = 0
    unjudged: int = 0
    win_rate: float | None = None
    ci_low: float = 0.0
    ci_high: float = 1.0

    @property
    def judged(self) -> int:
        """Cases with a verdict (both orders answered)."""
        return self.wins + self.ties + self.losses

    @property
    def consistency(self) -> float | None:
        """The share of judged cases where both orders agreed."""
        return None if not self.judged else 1 - self.order_sensitive / self.judged


@dataclass(frozen=True)
class EvalSummary:
    """The aggregate of a finished run (see the module docstring)."""

    cases: int
    passed: int
    failed: int
    regressions: int
    judge: JudgeTally
    agreement: Agreement
    cost_usd: float
    judge_cost_usd: float
    baseline_cost_usd: float | None
    latency_ms: float | None
    baseline_latency_ms: float | None

    @property
    def gate_failed(self) -> bool:
        """Whether CI should fail: a check regressed, or the win rate is surely below half."""
        return self.regressions > 0 or self.judge.ci_high < 0.5

    def to_json(self) -> dict[str, Any]:
        """The summary as stored (and as JSON)."""
        data = dataclasses.asdict(self)
        data["agreement"] = self.agreement.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSummary:
        """A summary from ``to_json``'s form."""
        return cls(
            **{
                **data,
                "judge": JudgeTally(**data["judge"]),
                "agreement": Agreement.from_json(data.get("agreement")),
            }
        )


@dataclass(frozen=True)
class CaseResult:
    """One case of a finished run: the new reply, the baseline, checks and the judge's verdict."""

    index: int
    prompt: str
    reply: ReplyView
    baseline: str | None
    outcome: str  # win, tie, loss, unjudged
    order_sensitive: bool
    reasons: tuple[str, ...]
    passed: bool
    baseline_passed: bool | None
    failures: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        """Whether the checks went from pass (baseline) to fail (new reply)."""
        return bool(self.baseline_passed) and not self.passed


@dataclass(frozen=True)
class EvalRunView:
    """An eval run as plain data; ``summary`` once it has finished."""

    id: str
    owner_id: int
    test_set_id: int | None
    test_set_name: str
    variant: VariantView
    judge: str
    baseline: str
    status: str
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    summary: EvalSummary | None

    @property
    def finished(self) -> bool:
        """Whether the run has ended (finished, or failed)."""
        return self.status in DONE_STATES


def judge_name(provider: str, model: str) -> str:
    """How a judge is named in calibrations and on the page: ``provider · model``."""
    return f"{provider} · {model}"


class EvalService:
    """Start eval runs, move them on, read their verdicts; the judge's agreement with people."""

    def __init__(
        self,
        db: Database,
        worker: ResponseWorker,
        test_sets: TestSetService,
        *,
        env: str,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.worker = worker
        self.test_sets = test_sets
        self.env = env
        self.clock = clock
        self.store = RunStore(db, worker, clock=clock)
        self.judges = JudgeSessions()

    # --- starting -----------------------------------------------------------------------------

    def start(self, user: UserView, spec: EvalSpec) -> EvalRunView:
        """Replay the test set against the variant; the run judges itself as ``advance`` is
        called. A spent hard budget refuses the run and stores nothing (``BudgetExceeded``)."""
        require_feature(user, self.env)
        test_set = self.find_test_set(user, spec.test_set)
        with self.db.session() as session:
            variant, judges = self._variants(session, user, spec)
            if spec.baseline != ORIGINAL:
                self._baseline_run(session, user, spec.baseline)
        run = PromptRun(
            id=new_uuid(),
            kind=KIND,
            user_id=user.id,
            history=[],
            blind=False,
            test_set_id=test_set.id,
            test_set_name=test_set.name,
            cases=cases_to_json(test_set.cases),
        )
        extra = EvalRun(
            run_id=run.id,
            baseline=None if spec.baseline == ORIGINAL else spec.baseline,
            judge_provider=judges[0].provider,
            judge_model=judges[0].model,
            status="replaying",
            calibration=[],
            summary={},
        )
        sessions = [
            NewSession(variant.position, index, case.prompt, case.history)
            for index, case in enumerate(test_set.cases)
        ]
        details = {
            "test_set": test_set.name,
            "cases": len(test_set.cases),
            "variant": variant.label,
            "judge": judge_name(judges[0].provider, judges[0].model),
            "baseline": spec.baseline,
        }
        self.store.create(
            user,
            run,
            [variant, *judges],
            sessions,
            lane=EVAL_LANE,
            action=EVAL_STARTED,
            details=details,
            extras=[extra],
        )
        return self.get(user, run.id)

    def find_test_set(self, user: UserView, ref: str | int) -> TestSetView:
        """A test set by id or name: the user's own by that name first, then (for an admin)
        anyone's, when only one has it."""
        text = str(ref).strip()
        if text.isdigit():
            try:
                return self.test_sets.get(user, int(text))
            except NotFound:
                pass
        named = [s for s in self.test_sets.list(user) if s.name == text]
        mine = [s for s in named if s.owner_id == user.id]
        found = mine or named
        if len(found) != 1:
            raise NotFound(TEST_SET_NOT_FOUND.format(ref=text))
        if not found[0].cases:
            raise ValidationError("This test set has no cases; add a prompt first.")
        return found[0]

    def _variants(
        self, session: Session, user: UserView, spec: EvalSpec
    ) -> tuple[VariantView, list[VariantView]]:
        providers, default = self.worker.providers, self.worker.provider.name
        wanted = VariantSpec(
            spec.persona,
            version=spec.version,
            provider=spec.provider,
            model=spec.model,
            temperature=spec.temperature,
        )
        (variant,) = resolve_variants(session, [wanted], providers, default, user)
        judge_spec = VariantSpec(
            spec.persona,
            version=variant.persona_version,
            provider=spec.judge_provider,
            model=spec.judge_model,
            temperature=JUDGE_TEMPERATURE,
        )
        try:
            (judge,) = resolve_variants(session, [judge_spec], providers, default, user)
        except ValidationError as exc:
            raise ValidationError(str(exc).replace("Variant 1", "The judge")) from exc
        name = judge_name(judge.provider, judge.model)
        judges = [
            dataclasses.replace(judge, position=NEW_FIRST, label=f"judge {name} (new reply as A)"),
            dataclasses.replace(judge, position=NEW_SECOND, label=f"judge {name} (new reply as B)"),
        ]
        return variant, judges

    # --- moving on ----------------------------------------------------------------------------

    def advance(self, user: UserView, run_id: str) -> EvalRunView:
        """Take the run's next step if the jobs of this one have all finished (see the module
        docstring); cheap when there is nothing to do, so pages may poll it."""
        view = self.get(user, run_id)
        if view.finished:
            return view
        progress = self.store.progress(run_id)
        if progress.done < progress.total:
            return view
        if view.status == "replaying":
            self._start_judging(user, view)
        elif view.status == "judging":
            self._finish(run_id)
        return self.get(user, run_id)

    def wait(self, user: UserView, run_id: str, timeout: float | None = None) -> EvalRunView:
        """Move the run on until it has ended (or ``timeout`` seconds pass), then show it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        view = self.advance(user, run_id)
        while not view.finished:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with self.db.session() as session:
                jobs = [reply.job_id for reply in self.store.replies(session, run_id).values()]
            self.store.wait(jobs, left)
            if self.store.progress(run_id).done < self.store.progress(run_id).total:
                time.sleep(WAIT_SLICE_SECONDS)  # jobs another process runs
            view = self.advance(user, run_id)
        return view

    def run(self, user: UserView, spec: EvalSpec, timeout: float | None = None) -> EvalRunView:
        """``start`` then ``wait``: the whole evaluation, for the CLI."""
        return self.wait(user, self.start(user, spec).id, timeout)

    def _start_judging(self, user: UserView, view: EvalRunView) -> None:
        try:
            jobs = self._judge_jobs(user, view)
        except BudgetExceeded as refused:
            self._fail(view.id, f"The judge was refused: {refused}")
            return
        if jobs is None:
            return  # another caller took this step
        if jobs:
            self.worker.submit(jobs, user, lane=EVAL_LANE)
        else:
            self._finish(view.id)

    def _judge_jobs(self, user: UserView, view: EvalRunView) -> list[Any] | None:
        judge = judge_name(*view.judge.split(" · ", 1))
        with self.db.session() as session:
            claimed = session.execute(
                update(EvalRun)
                .where(EvalRun.run_id == view.id, EvalRun.status == "replaying")
                .values(status="judging")
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            run = session.get(PromptRun, view.id)
            assert run is not None
            pairs = self._case_pairs(session, user, run, view)
            first_extra = len(run.cases)
            extra = calibration.pending(session, judge, self.store.replies, CALIBRATION_PAIRS)
            row = session.get(EvalRun, view.id)
            assert row is not None
            row.calibration = [list(key) for key, _ in extra]
            pairs += [(first_extra + k, pair) for k, (_, pair) in enumerate(extra)]
            if not pairs:
                return []
            judges = [
                v for v in self.store.variants(session, view.id) if v.position in JUDGE_POSITIONS
            ]
            messages = self.judges.add(
                session, run.user_id, view.id, judges, pairs, now=self.clock()
            )
            return self.worker.create_jobs(
                session.connection(), [m.id for m in messages], user, channel=KIND
            )

    def _case_pairs(
        self, session: Session, user: UserView, run: PromptRun, view: EvalRunView
    ) -> list[tuple[int, PairToJudge]]:
        cases = cases_from_json(run.cases)
        replies = self.store.replies(session, run.id)
        baselines = self._baselines(session, user, view, cases)
        instruction = _instruction(session, view.variant)
        pairs = []
        for index, case in enumerate(cases):
            reply, baseline = replies.get((index, 0)), baselines[index]
            if reply is None or reply.text is None or baseline is None:
                continue
            pair = PairToJudge(case.history, case.prompt, instruction, reply.text, baseline[0])
            pairs.append((index, pair))
        return pairs

    def _baselines(
        self, session: Session, user: UserView, view: EvalRunView, cases: Sequence[TestCase]
    ) -> list[tuple[str, bool] | None]:
        """Each case's baseline text and whether it passed the case's checks (None: none)."""
        if view.baseline == ORIGINAL:
            return [
                None
                if case.baseline is None
                else (
                    case.baseline.text,
                    passed(
                        evaluate(case.checks, case.baseline.text, case.baseline.latency_ms),
                        replied=True,
                    ),
                )
                for case in cases
            ]
        other = self._baseline_run(session, user, view.baseline)
        replies = self.store.replies(session, other.id)
        by_prompt: dict[str, tuple[str, bool]] = {}
        for index, case in enumerate(cases_from_json(other.cases)):
            reply = replies.get((index, 0))
            if reply is not None and reply.text is not None and case.prompt not in by_prompt:
                outcomes = evaluate(case.checks, reply.text, reply.latency_ms)
                by_prompt[case.prompt] = (reply.text, passed(outcomes, replied=True))
        return [by_prompt.get(case.prompt) for case in cases]

    def _baseline_run(self, session: Session, user: UserView, run_id: str) -> PromptRun:
        run = session.get(PromptRun, run_id)
        if run is None or run.kind not in (KIND, "test_set"):
            raise NotFound(f"There is no eval or test-set run {run_id!r} to use as the baseline.")
        return self.store.load(session, user, run_id, run.kind)

    def _fail(self, run_id: str, error: str) -> None:
        with self.db.session() as session:
            row = session.get(EvalRun, run_id)
            assert row is not None
            row.status, row.error, row.finished_at = "failed", error, self.clock()

    # --- finishing ----------------------------------------------------------------------------

    def _finish(self, run_id: str) -> None:
        finished = self._store_verdicts(run_id)
        if finished is None:
            return
        owner_id, judge, results = finished
        for fields in judge_evaluations(run_id, judge, results):
            self.worker.events.emit(EventName.EVALUATION_RESULT, user_id=owner_id, **fields)

    def _store_verdicts(self, run_id: str) -> tuple[int, str, list[CaseResult]] | None:
        """Store the run's verdicts and summary; its owner, judge and case results (None when
        another caller finished it first)."""
        with self.db.session() as session:
            row = session.get(EvalRun, run_id)
            run = session.get(PromptRun, run_id)
            assert row is not None and run is not None
            if row.status == "finished":
                return None
            owner = _owner(session, run.user_id)
            view = _run_view(run, row, self.store.variants(session, run_id))
            cases = cases_from_json(run.cases)
            replies = self.store.replies(session, run_id)
            baselines = self._baselines(session, owner, view, cases)
            results = [_case_result(i, case, replies, baselines[i]) for i, case in enumerate(cases)]
            session.add_all(_verdict_row(run_id, result) for result in results)
            judge = judge_name(row.judge_provider, row.judge_model)
            calibration.store(
                session,
                judge,
                [
                    (tuple(key), _judgement(replies, len(cases) + k))  # type: ignore[misc]
                    for k, key in enumerate(row.calibration or [])
                ],
                at=self.clock(),
            )
            session.flush()
            costs = _costs(session, run_id)
            summary = summarise(results, cases, calibration.agreement(session, judge), costs)
            row.summary = summary.to_json()
            row.status, row.finished_at = "finished", self.clock()
            return run.user_id, judge, results

    # --- reading ------------------------------------------------------------------------------

    def get(self, user: UserView, run_id: str) -> EvalRunView:
        """An eval run its owner or an admin may see."""
        require_feature(user, self.env)
        with self.db.session() as session:
            run = self.store.load(session, user, run_id, KIND)
            row = session.get(EvalRun, run_id)
            if row is None:
                raise NotFound("That eval run was not stored completely.")
            return _run_view(run, row, self.store.variants(session, run_id))

    def cases(self, user: UserView, run_id: str) -> list[CaseResult]:
        """Every case of a finished run with its reply, baseline, checks and verdict."""
        view = self.get(user, run_id)
        with self.db.session() as session:
            run = session.get(PromptRun, run_id)
            assert run is not None
            cases = cases_from_json(run.cases)
            replies = self.store.replies(session, run_id)
            baselines = self._baselines(session, user, view, cases)
            rows = {
                r.case_index: r
                for r in session.scalars(select(EvalVerdict).where(EvalVerdict.run_id == run_id))
            }
        return [
            _stored_result(i, case, replies[(i, 0)], baselines[i], rows.get(i))
            for i, case in enumerate(cases)
        ]

    def list_runs(self, user: UserView, *, limit: int = RUN_LIST_LIMIT) -> list[EvalRunView]:
        """Eval runs newest first: the user's own (an admin's list holds everyone's)."""
        require_feature(user, self.env)
        query = (
            select(PromptRun, EvalRun)
            .join(EvalRun, EvalRun.run_id == PromptRun.id)
            .where(PromptRun.kind == KIND)
            .order_by(PromptRun.created_at.desc(), PromptRun.id)
            .limit(limit)
        )
        if not user.is_admin:
            query = query.where(PromptRun.user_id == user.id)
        with self.db.session() as session:
            return [
                _run_view(run, row, self.store.variants(session, run.id))
                for run, row in session.execute(query)
            ]

    def latest_for_version(self, user: UserView, persona: str, version: int) -> EvalRunView | None:
        """The newest finished run of ``persona`` at ``version`` the user may see (a version's
        scorecard on the Personas page)."""
        for view in self.list_runs(user, limit=RUN_LIST_LIMIT):
            variant = view.variant
            if variant.persona == persona and variant.persona_version == version and view.summary:
                return view
        return None

    def agreement(self, user: UserView, judge_provider: str, judge_model: str) -> Agreement:
        """The judge's agreement with people's blind votes so far (for the leaderboard)."""
        require_feature(user, self.env)
        with self.db.session() as session:
            return calibration.agreement(session, judge_name(judge_provider, judge_model))


def summarise(
    results: Sequence[CaseResult],
    cases: Sequence[TestCase],
    agreement: Agreement,
    costs: dict[str, float | None],
) -> EvalSummary:
    """The aggregate of a run's case results (see the module docstring)."""
    counts = {
        outcome: sum(r.outcome == outcome for r in results) for outcome in OUTCOME_OF.values()
    }
    judged = counts["win"] + counts["tie"] + counts["loss"]
    score = counts["win"] + counts["tie"] / 2
    low, high = wilson_interval(score, judged) if judged else (0.0, 1.0)  # type: ignore[arg-type]
    tally = JudgeTally(
        wins=counts["win"],
        ties=counts["tie"],
        losses=counts["loss"],
        order_sensitive=sum(r.order_sensitive for r in results),
        unjudged=counts["unjudged"],
        win_rate=score / judged if judged else None,
        ci_low=low,
        ci_high=high,
    )
    frozen = [c.baseline for c in cases if c.baseline is not None]
    baseline_costs = [b.cost_usd for b in frozen if b.cost_usd is not None]
    baseline_latency = [b.latency_ms for b in frozen if b.latency_ms is not None]
    new_latency = [r.reply.latency_ms for r in results if r.reply.latency_ms is not None]
    return EvalSummary(
        cases=len(results),
        passed=sum(r.passed for r in results),
        failed=sum(not r.passed for r in results),
        regressions=sum(r.regressed for r in results),
        judge=tally,
        agreement=agreement,
        cost_usd=costs["new"] or 0.0,
        judge_cost_usd=costs["judge"] or 0.0,
        baseline_cost_usd=sum(baseline_costs) if baseline_costs else None,
        latency_ms=_mean(new_latency),
        baseline_latency_ms=_mean(baseline_latency),
    )


def judge_evaluations(
    run_id: str, judge: str, results: Sequence[CaseResult]
) -> list[dict[str, Any]]:
    """The judge's verdicts as evaluations of each judged case's new reply
    (``evaluation_result`` event fields); unjudged cases have none. Never the judge's reasons:
    they may quote the conversation."""
    return [
        {
            "job_id": result.reply.job_id,
            "run_id": run_id,
            "case_index": result.index,
            "evaluation": JUDGE_PAIRWISE,
            "score_value": JUDGE_SCORES[result.outcome],
            "score_label": result.outcome,
            "evaluator": judge,
            "order_sensitive": result.order_sensitive,
        }
        for result in results
        if result.outcome in JUDGE_SCORES and result.reply.job_id is not None
    ]


def contract_json(view: EvalRunView) -> dict[str, Any]:
    """The last line of ``nexus eval run --json`` (docs/contract.md)."""
    summary = view.summary
    if summary is None:
        raise ValidationError(f"The eval run {view.id} has not finished ({view.status}).")
    judge = summary.judge
    return {
        "run_id": view.id,
        "cases": summary.cases,
        "passed": summary.passed,
        "failed": summary.failed,
        "regressions": summary.regressions,
        "judge": {
            "wins": judge.wins,
            "ties": judge.ties,
            "losses": judge.losses,
            "order_sensitive": judge.order_sensitive,
            "win_rate": judge.win_rate,
            "ci_low": judge.ci_low,
            "ci_high": judge.ci_high,
        },
    }


def _case_result(
    index: int,
    case: TestCase,
    replies: dict[Any, ReplyView],
    baseline: tuple[str, bool] | None,
) -> CaseResult:
    reply = replies[(index, 0)]
    outcomes = evaluate(case.checks, reply.text, reply.latency_ms, reply.error)
    ok = passed(outcomes, replied=reply.succeeded)
    failures = [o.detail for o in outcomes if not o.passed]
    if not reply.succeeded and not failures:
        failures.append(NO_REPLY.format(error=reply.error or "the job failed"))
    if reply.text is None:
        judgement = Judgement(
            "unjudged", False, None, None, (NO_REPLY.format(error=reply.error or "-"), "")
        )
    elif baseline is None:
        judgement = Judgement("unjudged", False, None, None, (NO_BASELINE, ""))
    else:
        judgement = _judgement(replies, index)
    return CaseResult(
        index=index,
        prompt=case.prompt,
        reply=reply,
        baseline=None if baseline is None else baseline[0],
        outcome=OUTCOME_OF[judgement.outcome],
        order_sensitive=judgement.order_sensitive,
        reasons=tuple(r for r in judgement.reasons if r),
        passed=ok,
        baseline_passed=None if baseline is None else baseline[1],
        failures=tuple(failures),
    )


def _judgement(replies: dict[Any, ReplyView], index: int) -> Judgement:
    calls = [replies.get((index, position)) for position in JUDGE_POSITIONS]
    if any(call is None for call in calls):
        return Judgement("unjudged", False, None, None, ("the judge was not asked", ""))
    return judgement_of(calls)  # type: ignore[arg-type]


def _verdict_row(run_id: str, result: CaseResult) -> EvalVerdict:
    return EvalVerdict(
        run_id=run_id,
        case_index=result.index,
        outcome=result.outcome,
        order_sensitive=result.order_sensitive,
        reasons=list(result.reasons),
        passed=result.passed,
        baseline_passed=result.baseline_passed,
        failures=list(result.failures),
    )


def _stored_result(
    index: int,
    case: TestCase,
    reply: ReplyView,
    baseline: tuple[str, bool] | None,
    row: EvalVerdict | None,
) -> CaseResult:
    return CaseResult(
        index=index,
        prompt=case.prompt,
        reply=reply,
        baseline=None if baseline is None else baseline[0],
        outcome=row.outcome if row else "unjudged",
        order_sensitive=bool(row and row.order_sensitive),
        reasons=tuple(row.reasons) if row else (),
        passed=bool(row and row.passed),
        baseline_passed=row.baseline_passed if row else None,
        failures=tuple(row.failures) if row else (),
    )


def _run_view(run: PromptRun, row: EvalRun, variants: Sequence[VariantView]) -> EvalRunView:
    return EvalRunView(
        id=run.id,
        owner_id=run.user_id,
        test_set_id=run.test_set_id,
        test_set_name=run.test_set_name or "",
        variant=next(v for v in variants if v.position == 0),
        judge=judge_name(row.judge_provider, row.judge_model),
        baseline=row.baseline or ORIGINAL,
        status=row.status,
        error=row.error,
        created_at=run.created_at,
        finished_at=row.finished_at,
        summary=EvalSummary.from_json(row.summary) if row.status == "finished" else None,
    )


def _instruction(session: Session, variant: VariantView) -> str:
    stored = session.scalar(
        select(PersonaVersion.system_instruction).where(
            PersonaVersion.persona_id == variant.persona_id,
            PersonaVersion.version == variant.persona_version,
        )
    )
    if stored is not None:
        return stored
    persona = session.get(Persona, variant.persona_id)
    return persona.system_instruction if persona else ""


def _owner(session: Session, user_id: int) -> UserView:
    found = session.get(User, user_id)
    assert found is not None
    return to_view(found)


def _costs(session: Session, run_id: str) -> dict[str, float | None]:
    """The cost of the run's new replies and of its judge calls (priced replies only)."""
    rows = session.execute(
        select(ChatSession.variant_position, func.sum(Message.cost_usd))
        .join(AiJob, AiJob.session_id == ChatSession.id)
        .join(Message, Message.id == AiJob.reply_message_id)
        .where(ChatSession.run_id == run_id, Message.role == "assistant")
        .group_by(ChatSession.variant_position)
    )
    costs: dict[str, float | None] = {"new": None, "judge": None}
    for position, cost in rows:
        key = "new" if position == 0 else "judge"
        if cost is not None:
            costs[key] = (costs[key] or 0.0) + float(cost)
    return costs


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
