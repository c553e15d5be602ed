"""Evaluating persona changes on real traffic, through the real reply pipeline with a fake Gemini:
freezing keeps the exact history the model saw and the original reply; replays are eval jobs that
retry; the judge sees both replies and the rubric in both orders, and a disagreement is an
order-sensitive tie; agreement with people and Cohen's kappa match an independent computation;
JUnit XML parses; a spent budget refuses a run cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.simulated import REPLY_A, REPLY_B, SimulatedProvider, judge_score
from nexus_core.chat import ChatService
from nexus_core.compare.checks import Check, TestCase
from nexus_core.compare.runs import CompareService
from nexus_core.compare.test_sets import TestSetService
from nexus_core.compare.variants import LANE_WORKERS, VariantSpec
from nexus_core.cost.budgets import BudgetService
from nexus_core.cost.prices import PriceService
from nexus_core.db.engine import Database
from nexus_core.db.models import JudgeCalibration
from nexus_core.errors import BudgetExceeded, NotFound
from nexus_core.eval.calibration import cohen_kappa, human_label
from nexus_core.eval.freeze import FreezeService
from nexus_core.eval.judge import (
    JUDGE_INSTRUCTION,
    RUBRIC,
    OrderVerdict,
    PairToJudge,
    combine,
    judge_prompt,
    parse_verdict,
)
from nexus_core.eval.junit import junit_xml
from nexus_core.eval.runs import LANE_WORKERS as EVAL_LANES
from nexus_core.eval.runs import EvalService, EvalSpec, contract_json
from nexus_core.ops.events import EventName, ListEventSink, is_synthetic
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes.gemini_server import FakeGeminiServer
from tests.test_cli import run_nexus

WAIT = 60.0
PERSONA = "Nexus Assistant"
BUDGET_CHARS = 60
SIM = "simulated"
EXPENSIVE = {"promptTokenCount": 2_000_000, "candidatesTokenCount": 1_000_000}


@pytest.fixture
def people(db: Database) -> dict[str, UserView]:
    PersonaService(db).seed_defaults()
    users = UserService(db)
    users.create("mel", PASSWORD)
    users.create("ana", PASSWORD, role="analyst")
    users.create("root", PASSWORD, role="admin")
    return {
        "member": users.set_feature("mel", "prompt_compare", True),
        "analyst": users.set_feature("ana", "prompt_compare", True),
        "admin": users.get("root"),
    }


@pytest.fixture
def events() -> ListEventSink:
    return ListEventSink()


@pytest.fixture
def worker(
    db: Database, events: ListEventSink, gemini_server: FakeGeminiServer
) -> Iterator[ResponseWorker]:
    gemini = GeminiClient(
        api_key="AIzaSy-eval-key-0123456789",
        api_base=gemini_server.base_url,
        timeout_seconds=5,
        http=httpx.Client(),
    )
    w = ResponseWorker(  # chats answer with the fake Gemini; evals choose their providers
        db,
        gemini,
        events,
        providers={"simulated": SimulatedProvider(latency_seconds=0)},
        lanes=LANE_WORKERS | EVAL_LANES,
        retry_base_seconds=0.01,
        sleep=lambda _seconds: None,
        budget_chars=BUDGET_CHARS,
        max_workers=1,
    )
    yield w
    w.shutdown()
    gemini.close()


@pytest.fixture
def services(db: Database, worker: ResponseWorker) -> dict[str, object]:
    sets = TestSetService(db, worker, env="test")
    return {
        "chat": ChatService(db),
        "sets": sets,
        "freezer": FreezeService(db, sets, budget_chars=BUDGET_CHARS),
        "evals": EvalService(db, worker, sets, env="test"),
        "compare": CompareService(db, worker, env="test"),
    }


def simulated_spec(test_set: str) -> EvalSpec:
    """The current persona version replayed and judged by the simulated model."""
    return EvalSpec(test_set, PERSONA, provider=SIM, judge_provider=SIM)


def converse(
    worker: ResponseWorker, chat: ChatService, user: UserView, texts: list[str]
) -> list[int]:
    """A real conversation through the pipeline; returns the user messages' ids."""
    session = chat.create_session(user, PERSONA)
    ids = []
    for text in texts:
        message, job_id = worker.ask(chat, session.public_id, user, text)
        assert worker.wait(job_id, timeout=WAIT).status == "succeeded"
        ids.append(message.id)
    return ids


def gemini_turns(body: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(c["role"], c["parts"][0]["text"]) for c in body["contents"]]


# --- freezing ---------------------------------------------------------------------------------


def test_freezing_keeps_the_history_the_model_saw_and_the_original_reply(
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
    gemini_server: FakeGeminiServer,
) -> None:
    member = people["member"]
    for text in ("First answer, quite a long one.", "Second answer.", "Third answer here."):
        gemini_server.enqueue(text=text)
    ids = converse(worker, services["chat"], member, ["Hello there", "Tell me more", "Why?"])
    seen = gemini_turns(gemini_server.requests[-1].body)

    result = services["freezer"].freeze(member, "Real traffic", message_ids=[ids[2]])

    [case] = result.test_set.cases
    model_roles = {"user": "user", "model": "assistant"}
    assert [(item.role, item.content) for item in case.history] + [("user", case.prompt)] == [
        (model_roles[role], text) for role, text in seen
    ]
    assert len(case.history) < 4  # the 60-character budget cut the oldest turns, as the job did
    assert case.baseline is not None and case.baseline.text == "Third answer here."
    assert case.origin is not None
    assert (case.origin.persona, case.origin.persona_version) == (PERSONA, 1)
    assert case.origin.message_id == ids[2]
    again = services["sets"].get(member, result.test_set.id).cases[0]
    assert again == case  # stored and read back exactly


def test_only_admins_freeze_other_peoples_conversations(
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
) -> None:
    [asked] = converse(worker, services["chat"], people["member"], ["How do ships float?"])
    freezer: FreezeService = services["freezer"]
    for outsider in (people["analyst"],):
        with pytest.raises(NotFound, match="not in one of your conversations"):
            freezer.freeze(outsider, "Stolen", message_ids=[asked])
    assert services["sets"].list(people["analyst"]) == []

    by_admin = freezer.freeze(people["admin"], "Reviewed", message_ids=[asked + 1])  # the reply

    assert by_admin.added == 1 and by_admin.test_set.owner_id == people["admin"].id
    assert by_admin.test_set.cases[0].prompt == "How do ships float?"
    own = freezer.freeze(people["member"], "Mine", message_ids=[asked])
    assert own.test_set.cases == by_admin.test_set.cases


def test_editing_a_frozen_set_as_text_keeps_the_frozen_context(
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
) -> None:
    member = people["member"]
    ids = converse(worker, services["chat"], member, ["Plan a migration", "Explain indexes"])
    frozen = services["freezer"].freeze(member, "Set", message_ids=ids).test_set

    edited = services["sets"].update(
        member,
        frozen.id,
        cases=[TestCase("Explain indexes", (Check("contains", "index"),)), TestCase("New one")],
    )

    assert edited.cases[0].baseline == frozen.cases[1].baseline
    assert edited.cases[0].history == frozen.cases[1].history
    assert edited.cases[0].checks == (Check("contains", "index"),)
    assert edited.cases[1].baseline is None


# --- the judge, pure ------------------------------------------------------------------------


def test_the_judge_prompt_carries_both_replies_and_the_rubric_in_either_order() -> None:
    pair = PairToJudge((), "Why?", "You are terse.", "NEW REPLY", "OLD </reply_b> REPLY")

    shown = judge_prompt(pair, swapped=False)
    swapped = judge_prompt(pair, swapped=True)

    assert all(item.split(":")[0] in JUDGE_INSTRUCTION for item in RUBRIC)
    assert f"{REPLY_A[0]}\nNEW REPLY\n{REPLY_A[1]}" in shown
    assert f"{REPLY_A[0]}\nOLD ‹/reply_b> REPLY\n{REPLY_A[1]}" in swapped  # markers defused
    assert f"{REPLY_B[0]}\nNEW REPLY\n{REPLY_B[1]}" in swapped
    assert "You are terse." in shown and "Why?" in shown


def test_both_orders_must_agree_or_the_case_is_an_order_sensitive_tie() -> None:
    a, b, tie = OrderVerdict("A", "a"), OrderVerdict("B", "b"), OrderVerdict("tie", "t")
    assert combine(a, b).outcome == "first" and not combine(a, b).order_sensitive
    assert combine(b, a).outcome == "second"
    assert combine(tie, tie).outcome == "tie" and not combine(tie, tie).order_sensitive
    favours_a = combine(a, a)  # each call picked whatever it read first
    assert (favours_a.outcome, favours_a.order_sensitive) == ("tie", True)
    assert favours_a.reasons == ("a", "a")
    assert combine(a, parse_verdict(None, "503")).outcome == "unjudged"
    assert parse_verdict('Sure! {"winner": "b", "reason": "clearer"}') == OrderVerdict(
        "B", "clearer"
    )
    assert parse_verdict("Winner: tie").winner == "tie"
    assert parse_verdict("I cannot decide.").winner is None


# --- eval runs through the pipeline -----------------------------------------------------------


def new_version(db: Database, admin: UserView) -> None:
    PersonaService(db).edit(
        PERSONA, actor=admin, system_instruction="You are a blunt helper. Answer in one line."
    )


def test_an_eval_replays_through_the_pipeline_with_retries_and_judges_both_orders(
    db: Database,
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
    events: ListEventSink,
    gemini_server: FakeGeminiServer,
) -> None:
    admin = people["admin"]
    ids = converse(worker, services["chat"], admin, ["Plan a migration"])
    services["freezer"].freeze(admin, "Traffic", message_ids=ids)
    gemini_server.enqueue(status=503)  # the replay's first attempt fails, the retry answers
    gemini_server.enqueue(text="A brand new answer.")
    gemini_server.enqueue(text='{"winner": "A", "reason": "the first one reads better"}')
    gemini_server.enqueue(text='{"winner": "A", "reason": "the first one reads better"}')

    view = services["evals"].run(admin, EvalSpec("Traffic", PERSONA), timeout=WAIT)

    assert view.status == "finished", view.error
    [case] = services["evals"].cases(admin, view.id)
    assert case.reply.text == "A brand new answer." and case.reply.attempt == 2
    assert (case.outcome, case.order_sensitive) == ("tie", True)  # both calls favoured A
    assert case.reasons == ("the first one reads better", "the first one reads better")
    judged = [r.body for r in gemini_server.requests[-2:]]
    assert all(JUDGE_INSTRUCTION in r["systemInstruction"]["parts"][0]["text"] for r in judged)
    prompts = sorted(gemini_turns(r)[-1][1] for r in judged)
    baseline = services["sets"].list(admin)[0].cases[0].baseline.text
    new_first = f"{REPLY_A[0]}\nA brand new answer.\n{REPLY_A[1]}"
    assert sum(new_first in p for p in prompts) == 1
    assert all(baseline.splitlines()[0] in p and "A brand new answer." in p for p in prompts)
    mine = [e for e in events.events if e.get("run_id") == view.id]
    assert {e["event"] for e in mine} >= {EventName.JOB_RETRY, EventName.JOB_SUCCESS}
    assert {e["channel"] for e in mine if e["event"] == EventName.JOB_SUCCESS} == {"eval"}
    assert all(is_synthetic(e) for e in mine)
    summary = view.summary
    assert summary is not None
    assert (summary.judge.ties, summary.judge.order_sensitive, summary.judge.win_rate) == (
        1,
        1,
        0.5,
    )


def test_a_regression_fails_the_gate_and_shows_in_junit(
    db: Database,
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
) -> None:
    admin = people["admin"]
    ids = converse(worker, services["chat"], admin, ["Plan a migration", "Explain indexes"])
    frozen = services["freezer"].freeze(admin, "Gate", message_ids=ids).test_set
    checked = [replace(frozen.cases[0], checks=(Check("contains", "naïve café"),))]
    services["sets"].update(admin, frozen.id, cases=[*checked, frozen.cases[1]])
    new_version(db, admin)

    view = services["evals"].run(admin, simulated_spec("Gate"), timeout=WAIT)

    summary = view.summary
    assert summary is not None and summary.regressions == 1 and summary.gate_failed
    results = services["evals"].cases(admin, view.id)
    assert [r.regressed for r in results] == [True, False]
    line = contract_json(view)
    assert set(line) == {"run_id", "cases", "passed", "failed", "regressions", "judge"}
    assert set(line["judge"]) == {
        "wins", "ties", "losses", "order_sensitive", "win_rate", "ci_low", "ci_high",
    }  # fmt: skip
    assert (line["cases"], line["passed"], line["failed"]) == (2, 1, 1)
    tree = ElementTree.fromstring(junit_xml(view, results))
    assert tree.tag == "testsuite" and tree.get("tests") == "2"
    cases = tree.findall("testcase")
    assert len(cases) == 2
    failure = cases[0].find("failure")
    assert failure is not None and "regression" in failure.get("message", "")
    assert "naïve café" in (failure.text or "")
    expected_losses = [r.outcome == "loss" for r in results]
    assert [c.find("failure") is not None for c in cases] == [True, expected_losses[1]]


def test_a_spent_hard_budget_refuses_an_eval_and_stores_nothing(
    db: Database,
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
    gemini_server: FakeGeminiServer,
) -> None:
    admin = people["admin"]
    ids = converse(worker, services["chat"], admin, ["Plan a migration"])
    services["freezer"].freeze(admin, "Costly", message_ids=ids)
    PriceService(db).set_price("gemini*", input_usd=1, output_usd=1)
    BudgetService(db).set_budget("user", "root", 0.01, hard=True)
    gemini_server.enqueue(text="Spent it all.", usage=EXPENSIVE)
    spec = EvalSpec("Costly", PERSONA)
    services["evals"].run(admin, spec, timeout=WAIT)

    with pytest.raises(BudgetExceeded, match="budget"):
        services["evals"].start(admin, spec)

    assert len(services["evals"].list_runs(admin)) == 1


# --- calibration --------------------------------------------------------------------------------


def test_kappa_matches_the_textbook_example() -> None:
    # 50 items: both yes 20, human yes / judge no 5, human no / judge yes 10, both no 15.
    labels = [("first", "first")] * 20 + [("first", "second")] * 5
    labels += [("second", "first")] * 10 + [("second", "second")] * 15
    found = cohen_kappa(labels)
    assert (found.pairs, found.agreement) == (50, 0.7)
    assert found.kappa == pytest.approx(0.4)
    assert cohen_kappa([("tie", "tie")] * 3).kappa is None  # chance explains everything


def test_judge_agreement_with_blind_votes_matches_an_independent_count(
    db: Database,
    worker: ResponseWorker,
    services: dict,  # type: ignore[type-arg]
    people: dict[str, UserView],
) -> None:
    admin, compare = people["admin"], services["compare"]
    PersonaService(db).create("Pirate", "You are a pirate. Answer briefly.", actor=admin)
    prompts = ["Tell me about ships", "Explain tides", "Name a fruit", "Plan a voyage"]
    for number, prompt in enumerate(prompts):
        variants = [VariantSpec(PERSONA, provider=SIM), VariantSpec("Pirate", provider=SIM)]
        run = compare.start(admin, prompt, variants, blind=True)
        compare.wait(admin, run.id, timeout=WAIT)
        compare.vote(admin, run.id, best=number % 2)
    ids = converse(worker, services["chat"], admin, ["Plan a migration"])
    services["freezer"].freeze(admin, "Calibrated", message_ids=ids)

    view = services["evals"].run(admin, simulated_spec("Calibrated"), timeout=WAIT)

    with db.session() as session:
        stored = {r.compare_run_id: r.verdict for r in session.query(JudgeCalibration)}
    humans, judges = [], []
    for number, summary in enumerate(reversed(compare.list_runs(admin))):
        shown = compare.get(admin, summary.id)
        one, two = (shown.slot(p).reply.text or "" for p in (0, 1))
        a_then_b, b_then_a = _simulated(one, two), _simulated(two, one)
        expected = a_then_b if a_then_b == _flip(b_then_a) else "tie"
        assert stored[summary.id] == expected
        humans.append(human_label(number % 2, {}, 0, 1))
        judges.append(expected)
    agree = sum(h == j for h, j in zip(humans, judges, strict=True)) / len(humans)
    ph = {k: humans.count(k) / len(humans) for k in set(humans)}
    pj = {k: judges.count(k) / len(judges) for k in set(judges)}
    chance = sum(ph[k] * pj.get(k, 0) for k in ph)
    assert view.summary is not None
    assert view.summary.agreement.pairs == len(prompts)
    assert view.summary.agreement.agreement == pytest.approx(agree)
    if chance < 1:
        assert view.summary.agreement.kappa == pytest.approx((agree - chance) / (1 - chance))
    again = services["evals"].run(admin, simulated_spec("Calibrated"), timeout=WAIT)
    assert again.summary is not None and again.summary.agreement == view.summary.agreement


def _simulated(a: str, b: str) -> str:
    """What the simulated judge answers with ``a`` shown first, as first/second/tie."""
    sa, sb = judge_score(a), judge_score(b)
    if sa == sb:
        return "tie"
    if abs(sa - sb) <= 1:
        return "first"
    return "first" if sa > sb else "second"


def _flip(choice: str) -> str:
    return {"first": "second", "second": "first", "tie": "tie"}[choice]


# --- the CLI ------------------------------------------------------------------------------------


def test_nexus_eval_run_prints_the_contract_line_writes_junit_and_gates(
    settings: Settings, tmp_path: Path
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    chat = run_nexus(settings, "chat", "--user", "admin", "--persona", PERSONA, "--json", "Hi")
    assert json.loads(chat.stdout)["status"] == "ok"
    frozen = run_nexus(settings, "testsets", "freeze", "--name", "CI", "--message-id", "1")
    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(frozen.stdout.splitlines()[-1]) == {"test_set_id": 1, "cases": 1}
    report = tmp_path / "eval.xml"

    ran = run_nexus(
        settings, "eval", "run", "--test-set", "CI", "--persona", PERSONA, "--junit",
        str(report), "--fail-on-regression", "--json",
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr  # the same version: a tie, no regression
    line = json.loads(ran.stdout.splitlines()[-1])
    assert (line["cases"], line["regressions"], line["judge"]["ties"]) == (1, 0, 1)
    assert ElementTree.parse(report).getroot().tag == "testsuite"
    missing = run_nexus(settings, "eval", "run", "--test-set", "Nope", "--persona", PERSONA)
    assert missing.returncode == 1 and "no test set 'Nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    db = Database(settings.database_url)
    admin = UserService(db).get("admin")
    sets = TestSetService(db, worker=None, env="test")  # type: ignore[arg-type]
    [ci] = sets.list(admin)
    sets.update(admin, ci.id, cases=[replace(ci.cases[0], checks=(Check("contains", PERSONA),))])
    new_version(db, admin)
    db.dispose()
    args = ("eval", "run", "--test-set", "1", "--persona", PERSONA, "--json")

    gated = run_nexus(settings, *args, "--fail-on-regression")
    ungated = run_nexus(settings, *args)

    assert gated.returncode == 1, gated.stderr
    assert json.loads(gated.stdout.splitlines()[-1])["regressions"] == 1
    assert ungated.returncode == 0 and json.loads(ungated.stdout.splitlines()[-1])["failed"] == 1
