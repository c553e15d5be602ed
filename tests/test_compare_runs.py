"""Prompt comparisons through the real reply pipeline: variants in parallel on real jobs, provider,
model and temperature overrides on the wire to a fake Gemini, events tagged with the run, hidden
sessions, blind judging, votes and the leaderboard computed from them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.jobs import PROVIDER_UNAVAILABLE, ResponseWorker
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.app_context import AppContext
from nexus_core.audit import AuditQuery
from nexus_core.chat import ChatService
from nexus_core.compare.run_store import ReplyView
from nexus_core.compare.runs import CompareService, CompareView
from nexus_core.compare.scoring import leaderboard_csv, wilson_interval
from nexus_core.compare.variants import FEATURE_DENIED, LANE_WORKERS, VariantSpec
from nexus_core.compare.votes import Rating
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import ChatSession, CompareVote
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.ops.events import ListEventSink, read_events
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes.gated_provider import GatedProvider
from tests.fakes.gemini_server import FakeGeminiServer

API_KEY = "AIzaSy-compare-test-key-0123456789"
WAIT = 30.0
WORD_LATENCY = 0.004  # simulated seconds per word: a reply takes a few hundred ms
REVIEWER, ASSISTANT, WRITER = "Code Reviewer", "Nexus Assistant", "Technical Writer"


class NoSleep:
    """Stands in for time.sleep between retries and remembers the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def member(db: Database) -> UserView:
    PersonaService(db).seed_defaults()
    PersonaService(db).create(
        "Tester", "You are a terse test persona.", model="gemini-test-model", temperature=0.3
    )
    users = UserService(db)
    users.create("tess", PASSWORD)
    return users.set_feature("tess", "prompt_compare", True)


@pytest.fixture
def people(db: Database, member: UserView) -> dict[str, UserView]:
    users = UserService(db)
    users.create("other", "correct-horse-2")
    users.set_feature("other", "prompt_compare", True)
    users.create("plain", "correct-horse-3")
    users.create("root", "correct-horse-4", role="admin")
    return {"tess": member} | {name: users.get(name) for name in ("other", "plain", "root")}


@pytest.fixture
def events() -> ListEventSink:
    return ListEventSink()


@pytest.fixture
def gemini(gemini_server: FakeGeminiServer) -> Iterator[GeminiClient]:
    client = GeminiClient(
        api_key=API_KEY,
        model="gemini-flash-latest",
        api_base=gemini_server.base_url,
        timeout_seconds=5,
        http=httpx.Client(),
    )
    yield client
    client.close()


@pytest.fixture
def gated() -> Iterator[GatedProvider]:
    provider = GatedProvider()
    yield provider
    provider.open()  # never leave a job waiting at shutdown


@pytest.fixture
def worker(
    db: Database, events: ListEventSink, gemini: GeminiClient, gated: GatedProvider
) -> Iterator[ResponseWorker]:
    w = ResponseWorker(
        db,
        SimulatedProvider(latency_seconds=0),
        events,
        providers={"gemini": gemini, "gated": gated},
        lanes=LANE_WORKERS,
        retry_base_seconds=0.01,
        sleep=NoSleep(),
        max_workers=1,
    )
    yield w
    w.shutdown()


@pytest.fixture
def compare(db: Database, worker: ResponseWorker) -> CompareService:
    return CompareService(db, worker, env="test")


def finished(compare: CompareService, user: UserView, view: CompareView) -> CompareView:
    done = compare.wait(user, view.id, timeout=WAIT)
    assert done.finished
    return done


def by_persona(view: CompareView) -> dict[str, ReplyView]:
    return {slot.variant.persona: slot.reply for slot in view.slots if slot.variant is not None}


# --- running variants -------------------------------------------------------------------------


def test_variants_run_in_parallel_so_the_run_takes_about_as_long_as_the_slowest(
    settings: Settings, member: UserView
) -> None:
    # One chat thread: the comparison still runs all its variants at once, on its own lane.
    slow = dataclasses.replace(settings, simulated_latency_seconds=WORD_LATENCY, worker_threads=1)
    ctx = AppContext(slow)
    try:
        started = time.perf_counter()
        view = ctx.compare.start(
            member,
            "How should we roll out the new billing page?",
            [VariantSpec(REVIEWER), VariantSpec(ASSISTANT), VariantSpec(WRITER)],
        )
        done = ctx.compare.wait(member, view.id, timeout=WAIT)
        wall_ms = (time.perf_counter() - started) * 1000
    finally:
        ctx.close()
    latencies = [slot.reply.latency_ms for slot in done.slots]
    assert all(slot.reply.status == "succeeded" for slot in done.slots)
    assert all(latency is not None and latency > 100 for latency in latencies)
    slowest, total = max(latencies), sum(latencies)
    # One after another would take at least the sum; overlapping replies take well under it
    # (measured quiet: 1.06–1.35 × the slowest). Only the overlap is asserted, not a speed.
    assert wall_ms >= slowest, (wall_ms, latencies)
    assert wall_ms < 0.8 * total, (wall_ms, latencies)
    for slot in done.slots:
        assert slot.reply.ttft_ms is not None and slot.reply.ttft_ms < slot.reply.latency_ms
        assert slot.reply.tokens_in and slot.reply.tokens_out
        assert slot.reply.model == "simulated-1"


def test_a_variant_refused_by_gemini_fails_alone_while_the_others_answer(
    compare: CompareService, member: UserView, gemini_server: FakeGeminiServer
) -> None:
    gemini_server.enqueue(status=400, error_message="Bad temperature.")
    view = compare.start(
        member,
        "Summarise the incident.",
        [VariantSpec(REVIEWER), VariantSpec("Tester", provider="gemini"), VariantSpec(WRITER)],
    )
    done = finished(compare, member, view)

    replies = by_persona(done)
    assert replies["Tester"].status == "failed"
    assert replies["Tester"].error_type == "http_400"
    assert replies["Tester"].error == "Gemini rejected the request (HTTP 400, INVALID_ARGUMENT)."
    assert replies["Tester"].text is None
    assert [replies[p].status for p in (REVIEWER, WRITER)] == ["succeeded", "succeeded"]
    assert len(gemini_server.requests) == 1  # a permanent failure is not retried


def test_a_transient_gemini_failure_is_retried_and_the_run_still_succeeds(
    compare: CompareService,
    member: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
) -> None:
    gemini_server.enqueue(status=503)
    gemini_server.enqueue(text="Recovered answer.")
    view = compare.start(
        member, "Try again", [VariantSpec("Tester", provider="gemini"), VariantSpec(REVIEWER)]
    )
    done = finished(compare, member, view)

    tester = by_persona(done)["Tester"]
    assert (tester.status, tester.text, tester.attempt) == ("succeeded", "Recovered answer.", 2)
    retries = events.named("job_retry")
    assert [e["error_type"] for e in retries] == ["http_503"]
    assert retries[0]["run_id"] == view.id


def test_model_temperature_and_shared_history_reach_the_gemini_request(
    compare: CompareService, member: UserView, gemini_server: FakeGeminiServer
) -> None:
    view = compare.start(
        member,
        "And the second question?",
        [
            VariantSpec("Tester", provider="gemini", model="gemini-2.5-pro", temperature=1.3),
            VariantSpec("Tester", provider="gemini"),  # the persona's model and temperature
        ],
        history=[("user", "First question?"), ("assistant", "First answer.")],
    )
    done = finished(compare, member, view)

    received = {
        (r.path.split("/models/")[1].split(":")[0], r.body["generationConfig"]["temperature"])
        for r in gemini_server.requests
    }
    assert received == {("gemini-2.5-pro", 1.3), ("gemini-test-model", 0.3)}
    for request in gemini_server.requests:
        turns = [(c["role"], c["parts"][0]["text"]) for c in request.body["contents"]]
        assert turns == [
            ("user", "First question?"),
            ("model", "First answer."),
            ("user", "And the second question?"),
        ]
        assert request.body["systemInstruction"]["parts"][0]["text"].startswith("You are a terse")
    labels = sorted(slot.variant.label for slot in done.slots)
    assert labels == [
        "Tester v1 · gemini · gemini-2.5-pro · t=1.3",
        "Tester v1 · gemini · gemini-test-model · t=0.3",
    ]
    assert sorted(slot.reply.model for slot in done.slots) == [
        "gemini-2.5-pro",
        "gemini-test-model",
    ]


def test_every_job_event_of_the_run_carries_its_run_id_and_chat_events_do_not(
    db: Database,
    compare: CompareService,
    worker: ResponseWorker,
    member: UserView,
    events: ListEventSink,
) -> None:
    view = finished(
        compare,
        member,
        compare.start(member, "Tag me", [VariantSpec(REVIEWER), VariantSpec(ASSISTANT)]),
    )
    chat = ChatService(db)
    session_id = chat.create_session(member, WRITER).public_id
    worker.wait(worker.enqueue(chat.add_user_message(session_id, member, "Hi").id, member), WAIT)

    hidden = {slot.reply.session_id for slot in view.slots}
    run_events = [e for e in events.events if e["chat_session_id"] in hidden]
    chat_events = [e for e in events.events if e["chat_session_id"] == session_id]
    names = {e["event"] for e in run_events}
    assert {"job_enqueued", "job_start", "request_start", "request_success", "job_success"} <= names
    assert all(e["run_id"] == view.id for e in run_events)
    assert chat_events and all("run_id" not in e for e in chat_events)


def test_events_of_a_comparison_reach_the_log_file_with_the_run_id(
    ctx: AppContext, member: UserView
) -> None:
    view = ctx.compare.start(member, "Log me", [VariantSpec(REVIEWER), VariantSpec(WRITER)])
    ctx.compare.wait(member, view.id, timeout=WAIT)

    logged, _ = read_events(ctx.settings.event_log_path)
    successes = [e for e in logged if e["event"] == "job_success"]
    assert len(successes) == 2 and {e["run_id"] for e in successes} == {view.id}


def test_hidden_sessions_never_show_in_the_chat_pages_lists_and_cannot_be_opened(
    db: Database, compare: CompareService, member: UserView
) -> None:
    chat = ChatService(db)
    own = chat.create_session(member, WRITER)
    view = finished(
        compare,
        member,
        compare.start(member, "Hidden", [VariantSpec(REVIEWER), VariantSpec(ASSISTANT)]),
    )

    listed = chat.list_sessions(member, include_archived=True)
    assert [s.public_id for s in listed] == [own.public_id]
    hidden = view.slots[0].reply.session_id
    with pytest.raises(NotFound):
        chat.get_session(hidden, member)
    with pytest.raises(NotFound):
        chat.add_user_message(hidden, member, "Continue here")
    with db.session() as session:
        rows = session.scalars(select(ChatSession).where(ChatSession.run_id == view.id)).all()
    assert sorted(row.variant_position for row in rows) == [0, 1]


def test_a_session_naming_a_provider_the_server_lacks_fails_with_a_clear_reason(
    db: Database, worker: ResponseWorker, member: UserView, events: ListEventSink
) -> None:
    chat = ChatService(db)
    session = chat.create_session(member, WRITER)
    with db.session() as s:
        s.get(ChatSession, session.id).provider = "openai"
    job = worker.wait(
        worker.enqueue(chat.add_user_message(session.public_id, member, "Hi").id, member), WAIT
    )
    assert (job.status, job.error_type) == ("failed", PROVIDER_UNAVAILABLE)
    assert "'openai'" in job.last_error and "not set up" in job.last_error
    assert events.named("job_failure")[-1]["error_type"] == PROVIDER_UNAVAILABLE


# --- starting: what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([VariantSpec(REVIEWER)], "between 2 and 4 variants"),
        ([VariantSpec(REVIEWER, temperature=t) for t in (0, 0.5, 1, 1.5, 2)], "between 2 and 4"),
        ([VariantSpec(REVIEWER), VariantSpec(REVIEWER, temperature=0.2)], "Variants 1 and 2 are"),
        ([VariantSpec(REVIEWER), VariantSpec("Nobody")], "Variant 2: there is no persona"),
        ([VariantSpec(REVIEWER), VariantSpec(WRITER, version=7)], "has no version 7"),
        ([VariantSpec(REVIEWER), VariantSpec(WRITER, provider="openai")], "not set up"),
        ([VariantSpec(REVIEWER), VariantSpec(WRITER, temperature=2.5)], "between 0 and 2"),
        ([VariantSpec(REVIEWER), VariantSpec(WRITER, model="gpt-4o")], "has one model"),
        (
            [VariantSpec(REVIEWER), VariantSpec("Tester", provider="gemini", model="a/../b")],
            "no '/'",
        ),
    ],
)
def test_invalid_variants_are_refused_with_the_variant_named(
    compare: CompareService, member: UserView, variants: list[VariantSpec], message: str
) -> None:
    with pytest.raises((ValidationError, NotFound), match=message):
        compare.start(member, "Hello", variants)


def test_prompt_and_history_are_checked_like_chat_messages(
    compare: CompareService, member: UserView
) -> None:
    two = [VariantSpec(REVIEWER), VariantSpec(WRITER)]
    with pytest.raises(ValidationError, match="empty"):
        compare.start(member, "   ", two)
    with pytest.raises(ValidationError, match="the limit is 8,000"):
        compare.start(member, "x" * 8001, two)
    with pytest.raises(ValidationError, match="message 1 should be from the user"):
        compare.start(member, "Q", two, history=[("assistant", "Hi")])
    with pytest.raises(ValidationError, match="ends with the assistant"):
        compare.start(member, "Q", two, history=[("user", "Hi")])
    with pytest.raises(ValidationError, match="at most 10 messages"):
        compare.start(member, "Q", two, history=[("user", "a"), ("assistant", "b")] * 6)


def test_only_users_with_the_prompt_compare_feature_may_compare(
    compare: CompareService, people: dict[str, UserView]
) -> None:
    with pytest.raises(PermissionDenied) as refused:
        compare.start(people["plain"], "Hi", [VariantSpec(REVIEWER), VariantSpec(WRITER)])
    assert str(refused.value) == FEATURE_DENIED
    with pytest.raises(PermissionDenied):
        compare.leaderboard(people["plain"])


def test_a_comparison_is_visible_to_its_owner_and_admins_only(
    compare: CompareService, people: dict[str, UserView]
) -> None:
    view = compare.start(people["tess"], "Mine", [VariantSpec(REVIEWER), VariantSpec(WRITER)])
    assert compare.get(people["root"], view.id).prompt == "Mine"
    with pytest.raises(NotFound):
        compare.get(people["other"], view.id)
    assert compare.list_runs(people["other"]) == []
    assert [r.id for r in compare.list_runs(people["tess"])] == [view.id]


# --- judging ----------------------------------------------------------------------------------


def test_a_vote_is_stored_and_audited_and_a_second_one_is_refused(
    db: Database, compare: CompareService, member: UserView
) -> None:
    view = finished(
        compare,
        member,
        compare.start(
            member, "Judge me", [VariantSpec(REVIEWER), VariantSpec(WRITER)], tag="billing"
        ),
    )
    writer = next(s.position for s in view.slots if s.variant.persona == WRITER)
    reviewer = 1 - writer

    vote = compare.vote(
        member, view.id, best=writer, ratings={reviewer: (False, "  Too terse\x07 ")}
    )

    assert vote.best_position == writer
    assert vote.ratings == {reviewer: Rating(False, "Too terse")}
    assert compare.get(member, view.id).my_vote == vote
    with db.session() as session:
        assert session.scalars(select(CompareVote)).one().ratings == {
            str(reviewer): {"good": False, "note": "Too terse"}
        }
    record = audit.search(db, AuditQuery(actions=(audit.COMPARE_VOTED,)), limit=1)[0]
    assert (record.actor_name, record.target_type, record.target_id) == (
        "tess",
        "prompt_run",
        view.id,
    )
    assert record.details["best"] == "Technical Writer v1 · simulated · t=0.5"
    assert record.details["ratings"] == {"Code Reviewer v1 · simulated · t=0.2": False}
    with pytest.raises(ValidationError, match="already judged"):
        compare.vote(member, view.id, best=reviewer)


def test_judging_waits_until_every_reply_has_finished(
    compare: CompareService, member: UserView, gated: GatedProvider
) -> None:
    view = compare.start(
        member, "Hold on", [VariantSpec(REVIEWER), VariantSpec(WRITER, provider="gated")]
    )
    with pytest.raises(ValidationError, match="Wait until every reply"):
        compare.vote(member, view.id, best=0)
    gated.open()
    done = finished(compare, member, view)
    assert compare.vote(member, done.id, best=0).best_position == 0


@pytest.mark.parametrize(
    ("best", "ratings", "message"),
    [
        (None, {}, "Pick the best reply, or rate"),
        (5, {}, "no such reply"),
        (None, {7: (True, "")}, "no such reply to rate"),
        (None, {0: (True, "x" * 1001)}, "the limit is 1,000"),
    ],
)
def test_a_vote_must_pick_or_rate_existing_replies(
    compare: CompareService, member: UserView, best: int | None, ratings: dict, message: str
) -> None:
    view = finished(
        compare, member, compare.start(member, "Q", [VariantSpec(REVIEWER), VariantSpec(WRITER)])
    )
    with pytest.raises(ValidationError, match=message):
        compare.vote(member, view.id, best=best, ratings=ratings)


def test_a_failed_reply_cannot_be_picked_as_best_but_can_be_retried(
    compare: CompareService, member: UserView, gemini_server: FakeGeminiServer
) -> None:
    gemini_server.enqueue(status=400)
    view = finished(
        compare,
        member,
        compare.start(
            member, "Q", [VariantSpec(REVIEWER), VariantSpec("Tester", provider="gemini")]
        ),
    )
    failed = next(s for s in view.slots if s.reply.status == "failed")
    with pytest.raises(ValidationError, match=f"Reply {failed.letter} failed"):
        compare.vote(member, view.id, best=failed.position)

    compare.retry(member, view.id, failed.position)
    again = finished(compare, member, view)
    assert again.slot(failed.position).reply.status == "succeeded"
    assert again.slot(failed.position).reply.job_id != failed.reply.job_id


def test_blind_mode_hides_the_variants_until_the_owner_has_voted(
    compare: CompareService, people: dict[str, UserView]
) -> None:
    member, admin = people["tess"], people["root"]
    specs = [
        VariantSpec(REVIEWER),
        VariantSpec(ASSISTANT),
        VariantSpec(WRITER),
        VariantSpec("Tester"),
    ]
    view = finished(compare, member, compare.start(member, "Blind", specs, blind=True))

    assert not view.revealed
    assert [slot.letter for slot in view.slots] == ["A", "B", "C", "D"]
    assert all(slot.variant is None and slot.reply.model is None for slot in view.slots)
    assert all(slot.reply.text and slot.reply.latency_ms for slot in view.slots)
    assert sorted(slot.position for slot in view.slots) == [0, 1, 2, 3]
    assert compare.list_runs(member)[0].labels is None
    assert compare.get(member, view.id).slots == view.slots  # the same shuffle every time

    compare.vote(member, view.id, best=view.slots[0].position)

    for viewer in (member, admin):
        shown = compare.get(viewer, view.id)
        assert shown.revealed
        assert [s.letter for s in shown.slots] == ["A", "B", "C", "D"]
        assert [s.position for s in shown.slots] == [s.position for s in view.slots]
        assert {s.variant.persona for s in shown.slots} == {REVIEWER, ASSISTANT, WRITER, "Tester"}
        assert {s.reply.model for s in shown.slots} == {"simulated-1"}


# --- the leaderboard --------------------------------------------------------------------------


def test_the_leaderboard_counts_stored_votes_with_wilson_intervals(
    compare: CompareService, member: UserView
) -> None:
    specs = [VariantSpec(REVIEWER), VariantSpec(ASSISTANT), VariantSpec(WRITER)]
    reviewer, assistant = 0, 1
    judged = [
        ("billing", {"best": reviewer}),
        ("billing", {"best": reviewer}),
        ("support", {"best": assistant}),
        (None, {"ratings": {reviewer: (True, ""), assistant: (False, "off topic")}}),
    ]
    for tag, judgement in judged:
        view = finished(compare, member, compare.start(member, "Rank us", specs, tag=tag))
        compare.vote(member, view.id, **judgement)

    rows = {row.variant: row for row in compare.leaderboard(member)}

    label = {
        reviewer: "Code Reviewer v1 · simulated · t=0.2",
        assistant: "Nexus Assistant v1 · simulated · t=0.7",
        2: "Technical Writer v1 · simulated · t=0.5",
    }
    expected = {label[reviewer]: (3, 4), label[assistant]: (1, 4), label[2]: (0, 3)}
    assert {v: (r.wins, r.comparisons) for v, r in rows.items()} == expected
    for variant, (wins, n) in expected.items():
        assert (rows[variant].low, rows[variant].high) == pytest.approx(wilson_interval(wins, n))
        assert rows[variant].win_rate == pytest.approx(wins / n)
    assert [r.variant for r in compare.leaderboard(member)] == [
        label[reviewer],
        label[assistant],
        label[2],
    ]
    billing = compare.leaderboard(member, tag="billing")
    assert {r.variant: (r.wins, r.comparisons) for r in billing} == {
        label[reviewer]: (2, 2),
        label[assistant]: (0, 2),
        label[2]: (0, 2),
    }
    now = utc_now()
    assert compare.leaderboard(member, start=now + timedelta(hours=1)) == []
    assert compare.leaderboard(member, end=now - timedelta(hours=1)) == []
    naive_start = (now - timedelta(hours=1)).replace(tzinfo=None)  # naive times are UTC
    assert len(compare.leaderboard(member, start=naive_start)) == 3
    assert compare.tags(member) == ["billing", "support"]
    assert leaderboard_csv(billing).splitlines()[1].startswith(f"{label[reviewer]},2,2,1.0000")


def test_provider_choices_list_the_default_first(compare: CompareService) -> None:
    choices = compare.provider_choices()
    assert [(c.name, c.is_default) for c in choices] == [
        ("simulated", True),
        ("gated", False),
        ("gemini", False),
    ]
    assert choices[0].label == "Simulated model (offline)"
    assert choices[2].default_model == "gemini-flash-latest"
