"""`nexus simulate`: demo data for every page, made by the app's own services.

Demo people chat with the personas through the real pipeline (the simulated provider answers, with
its retries and events), rate replies and file feedback; a demo analyst triages that feedback,
checks personas with a test set and runs an evaluation on conversations of its own; people run
blind comparisons and vote. Everything happens on a ``Timeline`` spread over the last ``days``,
read from one ``BackdatedClock``: the services stamp their rows with it and the event log its
lines, so the database and the log tell the same story — a session's messages carry the times of
its events, and the dashboard, session analytics, the feedback explorer and the leaderboard all
see the same days.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.simulated import SimulatedProvider, judge_score
from nexus_core.app_context import AppContext
from nexus_core.chat import ChatService, MessageView
from nexus_core.compare.checks import parse_test_set
from nexus_core.compare.runs import CompareService
from nexus_core.compare.test_sets import TestSetService
from nexus_core.compare.variants import FEATURE as COMPARE_FEATURE
from nexus_core.compare.variants import LANE_WORKERS as COMPARE_LANES
from nexus_core.compare.variants import VariantSpec
from nexus_core.compare.votes import Rating
from nexus_core.db.columns import utc_now
from nexus_core.errors import NotFound, ValidationError
from nexus_core.eval.freeze import FreezeService
from nexus_core.eval.runs import LANE_WORKERS as EVAL_LANES
from nexus_core.eval.runs import EvalService, EvalSpec
from nexus_core.feedback import FeedbackService
from nexus_core.feedback.triage import TriageService
from nexus_core.ops.events import ApiEventLogger
from nexus_core.simulation.clock import BackdatedClock, Timeline
from nexus_core.simulation.content import (
    APP_REPORTS,
    FROZEN_TEST_SET,
    PROMPTS,
    REPLY_REPORTS,
    SMOKE_TEST_SET,
    SMOKE_TEST_TEXT,
    TRIAGE_NOTES,
    TRIAGE_STEPS,
    VOTE_NOTES,
    Report,
)
from nexus_core.users import UserView, feature_enabled

DEMO_USER_PREFIX: Final = "demo-user-"
DEMO_ANALYST: Final = "demo-analyst"
PROVIDER: Final = "simulated"  # every demo job, whatever provider the app is set up with
MESSAGES_PER_SESSION: Final = (1, 4)
WORD_LATENCY_RANGE: Final = (0.001, 0.02)  # seconds per word: replies of roughly 0.1 s to 1 s
RETRY_BASE_SECONDS: Final = 0.05
THINK_SECONDS: Final = (20.0, 240.0)  # a person reads the reply before typing the next message
REACT_SECONDS: Final = (5.0, 90.0)  # ... or before rating it or reporting it
RATED_SHARE: Final = 0.4  # replies that get a thumbs up or down
THUMBS_UP_SHARE: Final = 0.75
REPORTED_SHARE: Final = 0.15  # replies that get a report
TRIAGE_DELAY_SHARE: Final = (0.1, 0.6)  # of the time left until now, before each triage step
SESSIONS_PER_APP_REPORT: Final = 4  # plus at least MIN_APP_REPORTS reports about the app
MIN_APP_REPORTS: Final = 4
SESSIONS_PER_COMPARISON: Final = 4
MIN_COMPARISONS: Final = 3
ANALYST_SESSIONS: Final = 2  # the analyst's own chats (its evaluation replays them)
SMOKE_RUN_AT: Final = 0.6  # where in the span the analyst runs the smoke test set...
EVAL_AT: Final = 0.9  # ... and the evaluation (after most blind votes: it calibrates on them)
RUN_TIMEOUT_SECONDS: Final = 300.0
COMPARE_TAG: Final = "demo"
TWO_PERSONAS_SHARE: Final = 0.5  # comparisons of two personas; the rest: one at two temperatures
TEMPERATURES: Final = (0.2, 0.9)
VOTE_NOISE: Final = 4.0  # a person's taste, added to the simulated judge's 0–9 score
RATINGS_SHARE: Final = 0.4  # votes that also rate each reply good or bad


@dataclass
class SimulationReport:
    """What a simulation produced."""

    users: int
    sessions: int
    replies: int = 0
    failures: int = 0
    ratings: int = 0
    reports: int = 0
    triage_steps: int = 0
    comparisons: int = 0
    votes: int = 0
    test_set_runs: int = 0
    eval_runs: int = 0


@dataclass
class _Demo:
    """The services of one simulation, every one stamping rows with the back-dated clock."""

    ctx: AppContext
    clock: BackdatedClock
    timeline: Timeline
    worker: ResponseWorker
    provider: SimulatedProvider
    rng: random.Random
    end: datetime
    report: SimulationReport
    word_latency: tuple[float, float]
    personas: list[str]
    analyst: UserView
    analyst_chats: list[str] = field(default_factory=list)  # its evaluation replays them
    reply_reports: int = 0
    chat: ChatService = field(init=False)
    feedback: FeedbackService = field(init=False)
    triage: TriageService = field(init=False)
    compare: CompareService = field(init=False)
    test_sets: TestSetService = field(init=False)
    freezer: FreezeService = field(init=False)
    evals: EvalService = field(init=False)

    def __post_init__(self) -> None:
        db, env, clock = self.ctx.db, self.ctx.settings.env, self.clock
        self.chat = ChatService(
            db, max_message_chars=self.ctx.settings.max_message_chars, clock=clock
        )
        self.feedback = FeedbackService(db, clock=clock)
        self.triage = TriageService(db, clock=clock)
        self.compare = CompareService(db, self.worker, env=env, clock=clock)
        self.test_sets = TestSetService(db, self.worker, env=env, clock=clock)
        budget = self.ctx.settings.context_budget_chars
        self.freezer = FreezeService(db, self.test_sets, budget_chars=budget, clock=clock)
        self.evals = EvalService(db, self.worker, self.test_sets, env=env, clock=clock)

    def pace(self) -> None:
        """A new typing speed for the simulated model's next replies."""
        self.provider.latency_seconds = self.rng.uniform(*self.word_latency)

    def later(self, share: tuple[float, float]) -> datetime:
        """A moment between now on the clock and the end, ``share`` of the way there."""
        left = self.end - self.clock()
        return self.clock() + left * self.rng.uniform(*share)


def simulate(
    ctx: AppContext,
    *,
    users: int,
    sessions: int,
    days: float,
    failure_rate: float = 0.0,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    word_latency: tuple[float, float] = WORD_LATENCY_RANGE,
) -> SimulationReport:
    """Fill every page with demo data for ``users`` demo people: ``sessions`` chats with their
    ratings and feedback, its triage, blind comparisons with votes, a test-set run and an
    evaluation, spread over the last ``days``."""
    if users < 1 or sessions < 1 or days <= 0:
        raise ValidationError("--users and --sessions must be at least 1 and --days above 0.")
    personas = [p.name for p in ctx.personas.list()]
    if not personas:
        raise ValidationError("There are no active personas; run `nexus init` first.")
    rng = random.Random(seed)
    end = utc_now()
    clock = BackdatedClock(end - timedelta(days=days))
    log = ApiEventLogger(
        ctx.settings.own_event_log_path,
        ctx.settings.log_max_bytes,
        ctx.settings.log_backups,
        clock=clock,
    )
    provider = SimulatedProvider(failure_rate=failure_rate, seed=seed)
    worker = ResponseWorker(
        ctx.db,
        provider,
        log,
        lanes=COMPARE_LANES | EVAL_LANES,  # a comparison's variants answer at once, as in the app
        retry_base_seconds=RETRY_BASE_SECONDS,
        max_workers=1,
        wall_clock=clock,
        rng=random.Random(rng.random()),  # retry jitter, drawn on job threads: its own
    )
    people = _demo_users(ctx, users)
    demo = _Demo(
        ctx=ctx,
        clock=clock,
        timeline=Timeline(clock),
        worker=worker,
        provider=provider,
        rng=rng,
        end=end,
        report=SimulationReport(users=len(people), sessions=sessions),
        word_latency=word_latency,
        personas=personas,
        analyst=_demo_analyst(ctx),
    )
    try:
        _plan(demo, people, sessions, days, progress)
        demo.timeline.run()
    finally:
        worker.shutdown()
        log.close()
    return demo.report


# --- the plan -------------------------------------------------------------------------------------


def _plan(
    demo: _Demo,
    people: list[UserView],
    sessions: int,
    days: float,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Put every activity on the timeline: the chats (the analyst's own first), reports about
    the app, comparisons, the smoke test run and the evaluation."""
    rng, analyst, start = demo.rng, demo.analyst, demo.end - timedelta(days=days)

    def moment(share: float | None = None) -> datetime:
        return start + (demo.end - start) * (rng.random() if share is None else share)

    starts = sorted(moment() for _ in range(sessions))
    own = min(ANALYST_SESSIONS, sessions // 3)  # the earliest chats are the analyst's
    for done, started in enumerate(starts, start=1):
        person = analyst if done <= own else rng.choice(people)
        demo.timeline.at(started, _session_activity(demo, person, done, progress))
    app_reports = max(MIN_APP_REPORTS, sessions // SESSIONS_PER_APP_REPORT)
    for index in range(app_reports):
        report = APP_REPORTS[index % len(APP_REPORTS)]
        demo.timeline.at(moment(), _app_report(demo, rng.choice(people), report))
    for _ in range(max(MIN_COMPARISONS, sessions // SESSIONS_PER_COMPARISON)):
        demo.timeline.at(moment(), _comparison(demo, rng.choice(people)))
    demo.timeline.at(moment(SMOKE_RUN_AT), lambda: _smoke_test_run(demo, analyst))
    demo.timeline.at(moment(EVAL_AT), lambda: _evaluation(demo, analyst))


# --- chats, ratings and feedback ------------------------------------------------------------------


def _session_activity(
    demo: _Demo, user: UserView, done: int, progress: Callable[[int, int], None] | None
) -> Callable[[], None]:
    """One chat: 1–4 messages a few minutes apart, each reply perhaps rated or reported (the
    analyst only chats: it triages the reports, it does not file them)."""
    analyst = user.id == demo.analyst.id

    def converse() -> None:
        chat = demo.chat.create_session(user, demo.rng.choice(demo.personas))
        if analyst:
            demo.analyst_chats.append(chat.public_id)
        for turn in range(demo.rng.randint(*MESSAGES_PER_SESSION)):
            if turn:
                demo.clock.skip(demo.rng.uniform(*THINK_SECONDS))
            reply = _ask(demo, user, chat.public_id, demo.rng.choice(PROMPTS))
            if reply is not None and not analyst:
                _react(demo, user, reply)
        if progress is not None:
            progress(done, demo.report.sessions)

    return converse


def _ask(demo: _Demo, user: UserView, session_id: str, text: str) -> MessageView | None:
    """One user message through the chat pipeline; the stored reply, or None when it failed."""
    demo.pace()
    _message, job_id = demo.worker.ask(demo.chat, session_id, user, text)
    job = demo.worker.wait(job_id)
    if job.status != "succeeded" or job.reply_message_id is None:
        demo.report.failures += 1
        return None
    demo.report.replies += 1
    return demo.chat.message(job.reply_message_id, user)


def _react(demo: _Demo, user: UserView, reply: MessageView) -> None:
    """Sometimes a thumbs up or down on the reply, sometimes a report about it."""
    rng = demo.rng
    if rng.random() < RATED_SHARE:
        demo.clock.skip(rng.uniform(*REACT_SECONDS))
        demo.feedback.rate(user, reply.id, int(rng.random() < THUMBS_UP_SHARE))
        demo.report.ratings += 1
    if rng.random() < REPORTED_SHARE:
        demo.clock.skip(rng.uniform(*REACT_SECONDS))
        report = REPLY_REPORTS[demo.reply_reports % len(REPLY_REPORTS)]
        demo.reply_reports += 1
        item = demo.feedback.submit(
            user,
            category=report.category,
            priority=report.priority,
            description=report.description,
            message_id=reply.id,
        )
        demo.report.reports += 1
        _plan_triage(demo, item.id, report)


def _app_report(demo: _Demo, user: UserView, report: Report) -> Callable[[], None]:
    def file() -> None:
        item = demo.feedback.submit(
            user,
            category=report.category,
            priority=report.priority,
            description=report.description,
        )
        demo.report.reports += 1
        _plan_triage(demo, item.id, report)

    return file


def _plan_triage(demo: _Demo, feedback_id: int, report: Report) -> None:
    """Put the analyst's steps that take the item to its outcome on the timeline, each a while
    after the one before (all before the end)."""
    steps = TRIAGE_STEPS[report.outcome]
    moments = sorted(demo.later(TRIAGE_DELAY_SHARE) for _ in steps)
    for number, (status, at) in enumerate(zip(steps, moments, strict=True)):
        demo.timeline.at(at, _triage_step(demo, feedback_id, status, first=number == 0))


def _triage_step(demo: _Demo, feedback_id: int, status: str, *, first: bool) -> Callable[[], None]:
    def step() -> None:
        analyst = demo.analyst
        if first:
            demo.triage.assign(feedback_id, analyst.username, analyst)
        demo.triage.set_status(feedback_id, status, analyst)
        demo.triage.add_note(feedback_id, TRIAGE_NOTES[status], analyst)
        demo.report.triage_steps += 1

    return step


# --- comparisons and votes ------------------------------------------------------------------------


def _comparison(demo: _Demo, user: UserView) -> Callable[[], None]:
    """A blind comparison of two variants of the personas, then the person's vote: the reply
    they prefer (the simulated judge's score, with a person's noise), sometimes with ratings."""

    def compare() -> None:
        rng = demo.rng
        first, second = _variant_pair(demo)
        demo.pace()
        view = demo.compare.start(
            user, rng.choice(PROMPTS), [first, second], tag=COMPARE_TAG, blind=True
        )
        view = demo.compare.wait(user, view.id, timeout=RUN_TIMEOUT_SECONDS)
        demo.report.comparisons += 1
        arrived = [slot for slot in view.slots if slot.reply.succeeded]
        if not arrived:
            return
        demo.clock.skip(rng.uniform(*REACT_SECONDS))
        best = max(
            arrived, key=lambda s: judge_score(s.reply.text or "") + VOTE_NOISE * rng.random()
        )
        ratings: dict[int, Rating] = {}
        if rng.random() < RATINGS_SHARE:
            ratings = {
                slot.position: Rating(slot is best, rng.choice(VOTE_NOTES)) for slot in arrived
            }
        demo.compare.vote(user, view.id, best=best.position, ratings=ratings)
        demo.report.votes += 1

    return compare


def _variant_pair(demo: _Demo) -> tuple[VariantSpec, VariantSpec]:
    """Two variants to compare: two personas, or one persona at two temperatures."""
    rng = demo.rng
    names = demo.personas[:3]
    if len(names) > 1 and rng.random() < TWO_PERSONAS_SHARE:
        one, two = rng.sample(names, 2)
        return VariantSpec(one, provider=PROVIDER), VariantSpec(two, provider=PROVIDER)
    low, high = (VariantSpec(names[0], provider=PROVIDER, temperature=t) for t in TEMPERATURES)
    return low, high


# --- the analyst's test set and evaluation --------------------------------------------------------


def _smoke_test_run(demo: _Demo, analyst: UserView) -> None:
    """The analyst's smoke test set (made once), run against two personas."""
    mine = [s for s in demo.test_sets.list(analyst) if s.owner_id == analyst.id]
    test_set = next((s for s in mine if s.name == SMOKE_TEST_SET), None)
    if test_set is None:
        test_set = demo.test_sets.create(analyst, SMOKE_TEST_SET, parse_test_set(SMOKE_TEST_TEXT))
    variants = [VariantSpec(name, provider=PROVIDER) for name in demo.personas[:2]]
    demo.pace()
    run = demo.test_sets.run(analyst, test_set.id, variants)
    demo.test_sets.wait(analyst, run.id, timeout=RUN_TIMEOUT_SECONDS)
    demo.report.test_set_runs += 1


def _evaluation(demo: _Demo, analyst: UserView) -> None:
    """The analyst freezes its own conversations and asks whether another persona would have
    answered them better (the simulated judge, both orders)."""
    if not demo.analyst_chats:
        return
    try:
        frozen = demo.freezer.freeze(analyst, FROZEN_TEST_SET, session_ids=demo.analyst_chats)
    except ValidationError:
        return  # every reply of those chats failed: nothing to replay
    persona = demo.personas[-1]
    demo.pace()
    spec = EvalSpec(str(frozen.test_set.id), persona, provider=PROVIDER, judge_provider=PROVIDER)
    demo.evals.run(analyst, spec, timeout=RUN_TIMEOUT_SECONDS)
    demo.report.eval_runs += 1


# --- the demo people ------------------------------------------------------------------------------


def _demo_users(ctx: AppContext, count: int) -> list[UserView]:
    """Demo members 1..count (made when missing), with prompt comparison turned on."""
    return [
        _with_compare(ctx, _demo_user(ctx, f"{DEMO_USER_PREFIX}{n}", f"Demo user {n}", "member"))
        for n in range(1, count + 1)
    ]


def _demo_analyst(ctx: AppContext) -> UserView:
    """The demo product analyst who triages feedback and tests personas."""
    return _with_compare(ctx, _demo_user(ctx, DEMO_ANALYST, "Demo analyst", "analyst"))


def _demo_user(ctx: AppContext, name: str, display_name: str, role: str) -> UserView:
    try:
        return ctx.users.get(name)
    except NotFound:
        return ctx.users.create(
            name,
            secrets.token_urlsafe(16),
            role=role,
            display_name=display_name,
            must_change_password=True,
        )


def _with_compare(ctx: AppContext, user: UserView) -> UserView:
    if feature_enabled(user, COMPARE_FEATURE, env=ctx.settings.env):
        return user
    return ctx.users.set_feature(user.username, COMPARE_FEATURE, True)
