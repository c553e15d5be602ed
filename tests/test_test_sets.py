"""Test sets through the real reply pipeline: who may edit them, runs that fill the results matrix
with checks that pass and fail as they should, progress while replies are in flight, a lane that
never delays chat replies, and the comparison of two runs around a persona edit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from nexus_core import audit
from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.chat import ChatService
from nexus_core.compare.checks import Check, TestCase, parse_test_set
from nexus_core.compare.test_sets import OWNER_ONLY, TestSetService
from nexus_core.compare.variants import FEATURE_DENIED, LANE_WORKERS, VariantSpec
from nexus_core.db.engine import Database
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.ops.events import ListEventSink
from nexus_core.personas import PersonaService
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes.gated_provider import GatedProvider
from tests.fakes.gemini_server import FakeGeminiServer

WAIT = 30.0
POLL = 0.01
PIRATE = "Pirate"
CHECKED = """How do ships float?
contains: ships
not contains: banana
regex: ^\\[Simulated reply
max latency ms: 60000
---
Name a fruit
contains: banana
max latency ms: 0.001
---
Anything without checks
"""
PIRATE_SET = """Who are you?
contains: pirate
---
Introduce yourself
contains: butler
---
Say hello
contains: hello
"""


@pytest.fixture
def member(db: Database) -> UserView:
    PersonaService(db).seed_defaults()
    PersonaService(db).create(PIRATE, "You are a pirate captain. Answer briefly.")
    users = UserService(db)
    users.create("tess", PASSWORD)
    return users.set_feature("tess", "prompt_compare", True)


@pytest.fixture
def events() -> ListEventSink:
    return ListEventSink()


@pytest.fixture
def gated() -> Iterator[GatedProvider]:
    provider = GatedProvider()
    yield provider
    provider.open()


@pytest.fixture
def worker(
    db: Database, events: ListEventSink, gemini_server: FakeGeminiServer, gated: GatedProvider
) -> Iterator[ResponseWorker]:
    gemini = GeminiClient(
        api_key="AIzaSy-test-sets-key-0123456789",
        api_base=gemini_server.base_url,
        timeout_seconds=5,
        http=httpx.Client(),
    )
    w = ResponseWorker(
        db,
        SimulatedProvider(latency_seconds=0),
        events,
        providers={"gemini": gemini, "gated": gated},
        lanes=LANE_WORKERS,
        retry_base_seconds=0.01,
        sleep=lambda _seconds: None,
        max_workers=1,
    )
    yield w
    w.shutdown()
    gemini.close()


@pytest.fixture
def sets(db: Database, worker: ResponseWorker) -> TestSetService:
    return TestSetService(db, worker, env="test")


def until(condition: object, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(POLL)


# --- the test sets themselves -----------------------------------------------------------------


def test_a_test_set_is_created_read_and_changed_by_its_owner_only(
    db: Database, sets: TestSetService, member: UserView
) -> None:
    users = UserService(db)
    users.create("other", "correct-horse-2")
    other = users.set_feature("other", "prompt_compare", True)
    admin = users.create("root", "correct-horse-3", role="admin")

    created = sets.create(member, "  Smoke   test ", parse_test_set(CHECKED))

    assert created.name == "Smoke test"
    assert [case.prompt for case in created.cases] == [
        "How do ships float?",
        "Name a fruit",
        "Anything without checks",
    ]
    assert created.cases[1].checks == (
        Check("contains", "banana"),
        Check("max_latency_ms", "0.001"),
    )
    assert sets.get(member, created.id) == created
    assert [s.name for s in sets.list(member)] == ["Smoke test"]
    assert sets.list(other) == []
    with pytest.raises(NotFound):
        sets.get(other, created.id)
    assert sets.get(admin, created.id).name == "Smoke test"
    with pytest.raises(ValidationError, match=OWNER_ONLY):
        sets.update(admin, created.id, name="Taken over")
    with pytest.raises(ValidationError, match="already have a test set named"):
        sets.create(member, "Smoke test", [TestCase("Hi")])
    with pytest.raises(ValidationError, match="at least one prompt"):
        sets.create(member, "Empty", [])

    changed = sets.update(member, created.id, name="Smoke", cases=[TestCase("Only this")])

    assert (changed.name, [c.prompt for c in changed.cases]) == ("Smoke", ["Only this"])
    actions = [r.action for r in audit.for_target(db, "test_set", str(created.id))]
    assert actions == [audit.TEST_SET_CREATED, audit.TEST_SET_EDITED]


def test_deleting_a_test_set_keeps_its_runs_with_their_copy_of_the_cases(
    sets: TestSetService, member: UserView
) -> None:
    test_set = sets.create(member, "Short-lived", [TestCase("Hello there")])
    run = sets.run(member, test_set.id, [VariantSpec(PIRATE)])
    sets.wait(member, run.id, timeout=WAIT)

    sets.delete(member, test_set.id)

    with pytest.raises(NotFound):
        sets.get(member, test_set.id)
    kept = sets.get_run(member, run.id)
    assert (kept.test_set_id, kept.test_set_name) == (None, "Short-lived")
    assert [c.prompt for c in kept.cases] == ["Hello there"]


def test_test_sets_need_the_feature_and_one_to_four_variants(
    db: Database, sets: TestSetService, member: UserView
) -> None:
    users = UserService(db)
    plain = users.create("plain", "correct-horse-2")
    with pytest.raises(PermissionDenied) as refused:
        sets.create(plain, "Mine", [TestCase("Hi")])
    assert str(refused.value) == FEATURE_DENIED
    test_set = sets.create(member, "Limits", [TestCase("Hi")])
    with pytest.raises(ValidationError, match="between 1 and 4 variants; there are 0"):
        sets.run(member, test_set.id, [])
    with pytest.raises(ValidationError, match="there are 5"):
        sets.run(member, test_set.id, [VariantSpec(PIRATE, temperature=t / 4) for t in range(5)])
    stranger = users.set_feature("plain", "prompt_compare", True)
    with pytest.raises(NotFound):
        sets.run(stranger, test_set.id, [VariantSpec(PIRATE)])


# --- running them -----------------------------------------------------------------------------


def test_a_run_fills_the_matrix_with_pass_and_fail_per_check(
    sets: TestSetService,
    member: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
) -> None:
    for _ in range(3):
        gemini_server.enqueue(status=400, error_message="Unsupported model.")
    test_set = sets.create(member, "Checked", parse_test_set(CHECKED))
    run = sets.run(
        member, test_set.id, [VariantSpec(PIRATE), VariantSpec(PIRATE, provider="gemini")]
    )
    assert run.total == 6

    matrix = sets.wait(member, run.id, timeout=WAIT)

    assert (matrix.run.done, matrix.run.total, matrix.run.finished) == (6, 6, True)
    ships, fruit, unchecked = (matrix.cell(i, 0) for i in range(3))
    assert ships.passed and [o.passed for o in ships.outcomes] == [True, True, True, True]
    assert ships.result.failures == () and ships.result.tokens_out
    assert ships.reply.latency_ms is not None and ships.result.latency_ms == ships.reply.latency_ms
    assert not fruit.passed
    assert [o.passed for o in fruit.outcomes] == [False, False]
    assert fruit.result.failures[0] == "reply does not contain “banana”"
    assert fruit.result.failures[1].endswith("limit 0.001 ms")
    assert unchecked.passed and unchecked.outcomes == ()
    for index in range(3):
        failed = matrix.cell(index, 1)
        assert (failed.reply.status, failed.passed) == ("failed", False)
        assert failed.result.failures
        assert all(f.startswith("no reply: ") for f in failed.result.failures)
        assert failed.result.failures[0] == (
            "no reply: Gemini rejected the request (HTTP 400, INVALID_ARGUMENT)."
        )
    assert matrix.passed_count(0) == (2, 3) and matrix.passed_count(1) == (0, 3)
    assert [v.label for v in matrix.variants] == [
        "Pirate v1 · simulated · t=0.7",
        "Pirate v1 · gemini · gemini-flash-latest · t=0.7",
    ]
    hidden = {cell.reply.session_id for cell in matrix.cells}
    tagged = [e for e in events.events if e["chat_session_id"] in hidden]
    assert {e["run_id"] for e in tagged} == {run.id}
    assert len([e for e in tagged if e["event"] == "job_enqueued"]) == 6


def test_progress_counts_finished_replies_while_the_rest_are_in_flight(
    sets: TestSetService, member: UserView, gated: GatedProvider
) -> None:
    test_set = sets.create(member, "Slow", parse_test_set(CHECKED))
    run = sets.run(
        member, test_set.id, [VariantSpec(PIRATE), VariantSpec(PIRATE, provider="gated")]
    )

    until(lambda: sets.progress(member, run.id).done == 3 and gated.waiting() == 3)
    matrix = sets.results(member, run.id)
    held = matrix.cell(0, 1)
    assert sets.progress(member, run.id) == (3, 6)
    assert (held.finished, held.passed, held.result.failures) == (False, False, ("no reply yet",))
    assert held.reply.status == "running"
    with pytest.raises(ValidationError, match=r"still running \(3 of 6\)"):
        sets.compare(member, run.id, run.id)

    gated.open()

    assert sets.wait(member, run.id, timeout=WAIT).run.finished
    done, total = sets.progress(member, run.id)
    assert done == total == 6
    assert [(r.id, r.done, r.total) for r in sets.list_runs(member, test_set.id)] == [
        (run.id, 6, 6)
    ]


def test_a_test_set_run_never_delays_a_chat_reply(
    db: Database,
    sets: TestSetService,
    worker: ResponseWorker,
    member: UserView,
    gated: GatedProvider,
) -> None:
    many = [TestCase(f"Question {n}") for n in range(8)]
    run = sets.run(
        member, sets.create(member, "Busy", many).id, [VariantSpec(PIRATE, provider="gated")]
    )
    until(lambda: gated.waiting() == LANE_WORKERS["test_set"])  # every test-set thread is busy

    chat = ChatService(db)
    session = chat.create_session(member, PIRATE)
    job_id = worker.enqueue(chat.add_user_message(session.public_id, member, "Hi").id, member)

    assert worker.wait(job_id, timeout=5).status == "succeeded"
    assert sets.progress(member, run.id) == (0, 8)
    gated.open()
    assert sets.wait(member, run.id, timeout=WAIT).run.finished


def test_comparing_runs_before_and_after_a_persona_edit_shows_the_regression(
    db: Database, sets: TestSetService, member: UserView
) -> None:
    test_set = sets.create(member, "Identity", parse_test_set(PIRATE_SET))
    before = sets.run(member, test_set.id, [VariantSpec(PIRATE)])
    sets.wait(member, before.id, timeout=WAIT)
    PersonaService(db).edit(PIRATE, system_instruction="You are a butler. Answer briefly.")
    after = sets.run(member, test_set.id, [VariantSpec(PIRATE)])
    sets.wait(member, after.id, timeout=WAIT)

    comparison = sets.compare(member, before.id, after.id)

    renamed = "Pirate v1 · simulated · t=0.7 → Pirate v2 · simulated · t=0.7"
    assert {k: v for k, v in comparison.summary.items() if v} == {
        "regressed": 1,
        "fixed": 1,
        "still passing": 1,
    }
    (regressed,) = [r for r in comparison.rows if r.status == "regressed"]
    assert (regressed.prompt, regressed.variant) == ("Who are you?", renamed)
    assert regressed.after is not None
    assert regressed.after.failures == ("reply does not contain “pirate”",)
    (fixed,) = [r for r in comparison.rows if r.status == "fixed"]
    assert fixed.prompt == "Introduce yourself"
    (change,) = comparison.variants
    assert (change.variant, change.passed_before, change.passed_after) == (renamed, 2, 2)
    assert [r.id for r in sets.list_runs(member, test_set.id)] == [after.id, before.id]
