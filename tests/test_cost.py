"""Cost and usage: full token counts on every reply, the versioned price table, costs at the price
in effect when a reply ran, usage reports over the event log, and budgets (soft and hard) — with a
real database, real HTTP to the fake Gemini on loopback and the real event log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.openai_compat import OpenAICompatibleClient
from nexus_core.analytics.log_store import EventStore
from nexus_core.chat import ChatService
from nexus_core.cost.budgets import BudgetService, month_start, next_month
from nexus_core.cost.prices import PriceService, PriceView, TokenCounts, cost_usd, price_in_effect
from nexus_core.cost.usage import parse_keys, usage_report, usage_reports
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from nexus_core.errors import BudgetExceeded, ValidationError
from nexus_core.ops.events import ApiEventLogger, EventName, ListEventSink
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings
from nexus_core.users import UserService, UserView
from tests.fakes.gated_provider import GatedProvider
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "gemini-cost-test"
USAGE = {
    "promptTokenCount": 1_000,
    "cachedContentTokenCount": 400,
    "candidatesTokenCount": 200,
    "thoughtsTokenCount": 300,
}


def independent_cost(usage: dict[str, int], inp: float, cached: float, out: float) -> float:
    """The issue's formula, written out again without the product's code."""
    uncached = usage["promptTokenCount"] - usage["cachedContentTokenCount"]
    billed_out = usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    return (uncached * inp + usage["cachedContentTokenCount"] * cached + billed_out * out) / 1e6


@pytest.fixture
def people(db: Database) -> tuple[UserView, UserView]:
    personas = PersonaService(db)
    personas.seed_defaults()
    personas.create("Costly", "You are a test persona.", model=MODEL, temperature=0.3)
    users = UserService(db)
    return users.create("mia", "correct-horse-1"), users.create("noah", "correct-horse-2")


@pytest.fixture
def gemini(gemini_server: FakeGeminiServer) -> Iterator[GeminiClient]:
    client = GeminiClient(
        api_key="AIzaSy-test-key-0123456789",
        model="gemini-flash-latest",
        api_base=gemini_server.base_url,
        timeout_seconds=5,
        http=httpx.Client(),
    )
    yield client
    client.close()


@pytest.fixture
def event_log(settings: Settings) -> Iterator[ApiEventLogger]:
    log = ApiEventLogger.from_settings(settings)
    yield log
    log.close()


@pytest.fixture
def worker(
    db: Database, gemini: GeminiClient, event_log: ApiEventLogger
) -> Iterator[ResponseWorker]:
    w = ResponseWorker(db, gemini, event_log, retry_base_seconds=0.01, sleep=lambda _s: None)
    yield w
    w.shutdown()


def send(db: Database, worker: ResponseWorker, user: UserView, text: str = "Hello") -> Message:
    chat = ChatService(db)
    session = chat.create_session(user, "Costly")
    _message, job_id = worker.ask(chat, session.public_id, user, text)
    job = worker.wait(job_id, timeout=30)
    assert job.status == "succeeded", job.last_error
    with db.session() as s:
        reply = s.get(Message, job.reply_message_id)
        s.expunge(reply)
        return reply


def set_price(db: Database, **kwargs: object) -> PriceView:
    values = {"input_usd": 1.25, "cached_input_usd": 0.3125, "output_usd": 10.0} | kwargs
    return PriceService(db).set_price(MODEL, **values)  # type: ignore[arg-type]


# --- the formula and the table --------------------------------------------------------------


def test_the_cost_formula_bills_cached_input_and_reasoning_as_the_issue_says() -> None:
    price = PriceView("m", 1.25, 0.3125, 10.0, date(2026, 1, 1))
    tokens = TokenCounts(1_000, 400, 200, 300)
    assert cost_usd(tokens, price) == pytest.approx(independent_cost(USAGE, 1.25, 0.3125, 10.0))
    # Without a cached price, cached input is charged the input price.
    plain = PriceView("m", 2.0, None, 8.0, date(2026, 1, 1))
    assert cost_usd(tokens, plain) == pytest.approx((1_000 * 2.0 + 500 * 8.0) / 1e6)
    assert cost_usd(tokens, None) is None
    assert cost_usd(TokenCounts(None, None, 5, None), price) is None


def test_the_exact_name_beats_a_prefix_and_the_latest_price_in_effect_wins() -> None:
    day = date(2026, 6, 1)
    prices = [
        PriceView("gemini-2.5-flash*", 1.0, None, 1.0, date(2026, 1, 1)),
        PriceView("gemini-2.5*", 9.0, None, 9.0, date(2026, 1, 1)),
        PriceView("gemini-2.5-flash-lite", 2.0, None, 2.0, date(2026, 1, 1)),
        PriceView("gemini-2.5-flash-lite", 3.0, None, 3.0, date(2026, 7, 1)),
    ]
    assert price_in_effect(prices, "gemini-2.5-flash-lite", day).input_usd == 2.0
    assert price_in_effect(prices, "gemini-2.5-flash-lite", date(2026, 7, 1)).input_usd == 3.0
    assert price_in_effect(prices, "gemini-2.5-flash-001", day).input_usd == 1.0
    assert price_in_effect(prices, "gemini-2.5-pro", day).input_usd == 9.0
    assert price_in_effect(prices, "gpt-4o", day) is None
    assert price_in_effect(prices, "gemini-2.5-pro", date(2025, 12, 31)) is None


@pytest.mark.parametrize(
    ("model", "prices", "message"),
    [
        ("", {}, "1–120 characters"),
        ("a model", {}, "no spaces"),
        ("gem*ini", {}, "ends in one `*`"),
        ("*", {}, "ends in one `*`"),
        ("ok", {"input_usd": -1.0}, "from 0"),
        ("ok", {"output_usd": float("nan")}, "from 0"),
    ],
)
def test_bad_prices_are_refused_with_a_clear_message(
    db: Database, model: str, prices: dict[str, float], message: str
) -> None:
    values = {"input_usd": 1.0, "output_usd": 1.0} | prices
    with pytest.raises(ValidationError, match=message):
        PriceService(db).set_price(model, **values)
    assert PriceService(db).list_prices() == []


def test_a_price_is_versioned_never_changed_in_place_and_audited(db: Database) -> None:
    prices = PriceService(db)
    prices.set_price(MODEL, input_usd=1.0, output_usd=2.0, effective_from=date(2026, 1, 1))
    with pytest.raises(ValidationError, match="never changed in place"):
        prices.set_price(MODEL, input_usd=5.0, output_usd=5.0, effective_from=date(2026, 1, 1))
    prices.set_price(MODEL, input_usd=3.0, output_usd=4.0, effective_from=date(2026, 2, 1))
    assert [(p.input_usd, p.effective_from.month) for p in prices.list_prices()] == [
        (3.0, 2),
        (1.0, 1),
    ]
    assert len(audit.search(db, audit.AuditQuery(actions=(audit.PRICE_SET,)), limit=10)) == 2


# --- replies costed in the pipeline ----------------------------------------------------------


def test_a_reply_keeps_every_token_count_and_its_cost_in_the_row_and_the_event(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
    settings: Settings,
) -> None:
    set_price(db)
    gemini_server.enqueue(text="Priced.", usage=USAGE)
    reply = send(db, worker, people[0])

    expected = independent_cost(USAGE, 1.25, 0.3125, 10.0)
    assert (
        reply.tokens_in,
        reply.cached_input_tokens,
        reply.tokens_out,
        reply.reasoning_tokens,
    ) == (
        1_000,
        400,
        200,
        300,
    )
    assert reply.cost_usd == pytest.approx(expected)
    with EventStore.from_settings(settings) as store:
        report = usage_report(store, "60m", datetime.now(UTC) + timedelta(seconds=1), ["channel"])
    success = report["rows"][0]
    assert success["channel"] == "chat" and success["replies"] == 1
    assert success["cost_usd"] == pytest.approx(expected)
    assert (success["input_tokens"], success["cached_input_tokens"]) == (1_000, 400)
    assert (success["output_tokens"], success["reasoning_tokens"]) == (200, 300)


def test_an_openai_compatible_reply_is_costed_without_billing_reasoning_twice(
    db: Database,
    people: tuple[UserView, UserView],
    openai_server: FakeOpenAIServer,
    event_log: ApiEventLogger,
) -> None:
    """OpenAI's completion count includes the reasoning: 500 = 200 visible + 300 reasoning."""
    PriceService(db).set_price("gpt-x", input_usd=1.25, cached_input_usd=0.3125, output_usd=10.0)
    openai_server.enqueue(
        chunks=["Priced ", "too."],
        usage={
            "prompt_tokens": 1_000,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens": 500,
            "completion_tokens_details": {"reasoning_tokens": 300},
        },
    )
    with httpx.Client() as http:
        client = OpenAICompatibleClient(openai_server.base_url, "sk-test", "gpt-x", http=http)
        worker = ResponseWorker(db, client, event_log, sleep=lambda _s: None)
        try:
            reply = send(db, worker, people[0])
        finally:
            worker.shutdown()

    assert (
        reply.tokens_in,
        reply.cached_input_tokens,
        reply.tokens_out,
        reply.reasoning_tokens,
    ) == (
        1_000,
        400,
        200,
        300,
    )
    assert reply.model == openai_server.last_request.body["model"]
    assert reply.cost_usd == pytest.approx(independent_cost(USAGE, 1.25, 0.3125, 10.0))
    assert '"stream_options": {"include_usage": true}' in json.dumps(
        openai_server.last_request.body
    )


def test_a_price_change_costs_new_replies_and_never_rewrites_old_ones(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
    settings: Settings,
) -> None:
    set_price(db, effective_from=date(2020, 1, 1))
    gemini_server.enqueue(text="Before.", usage=USAGE)
    before = send(db, worker, people[0])
    # The new price takes effect today: replies from now on cost the new price.
    set_price(db, input_usd=2.5, cached_input_usd=0.625, output_usd=20.0)
    gemini_server.enqueue(text="After.", usage=USAGE)
    after = send(db, worker, people[0])

    old, new = independent_cost(USAGE, 1.25, 0.3125, 10.0), independent_cost(USAGE, 2.5, 0.625, 20)
    with db.session() as s:
        assert s.get(Message, before.id).cost_usd == pytest.approx(old)
    assert after.cost_usd == pytest.approx(new)
    names = {people[0].id: "mia"}
    with EventStore.from_settings(settings) as store:
        report = usage_report(
            store, "60m", datetime.now(UTC) + timedelta(seconds=1), ["user"], user_names=names.get
        )
    assert report["total"]["cost_usd"] == pytest.approx(old + new)
    [row] = report["rows"]
    assert (row["user"], row["replies"], row["unpriced_replies"]) == ("mia", 2, 0)


def test_an_unpriced_model_is_unpriced_with_its_tokens_never_zero_dollars(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
    settings: Settings,
) -> None:
    gemini_server.enqueue(text="Free?", usage=USAGE)
    reply = send(db, worker, people[0])

    assert reply.cost_usd is None and reply.tokens_in == 1_000
    names = {people[0].id: "mia"}
    with EventStore.from_settings(settings) as store:
        report = usage_report(
            store, "60m", datetime.now(UTC) + timedelta(seconds=1), ["model"], user_names=names.get
        )
    assert report["total"]["unpriced_replies"] == 1 and report["total"]["cost_usd"] == 0
    assert report["rows"][0]["model"] == MODEL and report["rows"][0]["input_tokens"] == 1_000


def test_usage_keys_are_checked() -> None:
    assert parse_keys("user, model") == ("user", "model")
    for bad in ("", "user,user", "team"):
        with pytest.raises(ValidationError, match="Break usage down"):
            parse_keys(bad)


# --- budgets ---------------------------------------------------------------------------------


def test_a_spent_hard_budget_refuses_before_the_provider_and_stores_nothing(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
    settings: Settings,
) -> None:
    mia = people[0]
    set_price(db)
    BudgetService(db).set_budget("user", "mia", 0.001, hard=True)
    gemini_server.enqueue(text="Expensive.", usage=USAGE)
    send(db, worker, mia)  # $0.0059: over the $0.001 budget
    requests_before = len(gemini_server.requests)
    chat = ChatService(db)
    session = chat.create_session(mia, "Costly")

    with pytest.raises(BudgetExceeded) as refused:
        worker.ask(chat, session.public_id, mia, "One more, please")

    text = str(refused.value)
    assert "mia's hard monthly budget is spent" in text
    assert "$0.01 of $0.00" in text and f"{next_month(datetime.now(UTC)):%Y-%m-%d}" in text
    assert len(gemini_server.requests) == requests_before
    assert chat.messages(session.public_id, mia) == []
    # Someone else is not held by mia's budget.
    assert send(db, worker, people[1]).cost_usd is not None
    events = (settings.data_dir / "logs" / "api_events.log").read_text()
    assert '"event":"budget_refused"' in events.replace(" ", "")


def test_a_persona_budget_holds_everyone_who_talks_to_it(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
) -> None:
    set_price(db)
    BudgetService(db).set_budget("persona", "Costly", 0.001, hard=True)
    gemini_server.enqueue(text="Expensive.", usage=USAGE)
    send(db, worker, people[0])
    chat = ChatService(db)
    session = chat.create_session(people[1], "Costly")
    with pytest.raises(BudgetExceeded, match="the Costly persona's hard monthly budget"):
        worker.ask(chat, session.public_id, people[1], "Hi")


def test_a_soft_budget_warns_at_80_and_100_percent_once_each_with_an_audit_event(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
) -> None:
    mia = people[0]
    set_price(db)
    one = independent_cost(USAGE, 1.25, 0.3125, 10.0)
    budgets = BudgetService(db)
    budgets.set_budget("user", "mia", one * 2.4)  # 1 reply: 42 %, 2: 83 %, 3: 125 %
    for _ in range(4):
        gemini_server.enqueue(text="Reply.", usage=USAGE)
    send(db, worker, mia)
    assert budgets.notices(mia.id, None) == []
    send(db, worker, mia)
    [notice] = budgets.notices(mia.id, None)
    assert "Heads up" in notice and "83 %" in notice
    send(db, worker, mia)
    send(db, worker, mia)  # a fourth reply: still no new crossing to tell
    crossings = audit.search(db, audit.AuditQuery(actions=(audit.BUDGET_THRESHOLD,)), limit=10)
    assert sorted(c.details["percent"] for c in crossings) == [80, 100]
    assert all(c.target_id == "mia" for c in crossings)


def test_concurrent_messages_overshoot_a_hard_budget_by_at_most_one(
    db: Database, people: tuple[UserView, UserView]
) -> None:
    """Gated replies hold jobs in flight while more messages arrive at once."""
    mia = people[0]
    # 3 input tokens at $10,000 per million: $0.03 a reply; the budget is $0.10.
    PriceService(db).set_price("gated-1", input_usd=10_000, output_usd=0.0)
    budgets = BudgetService(db)
    budgets.set_budget("user", "mia", 0.10, hard=True)
    provider = GatedProvider()
    worker = ResponseWorker(db, provider, ListEventSink(), max_workers=8)
    chat = ChatService(db)
    try:
        provider.open()
        for _ in range(2):  # spend $0.06 and learn the reply cost
            session = chat.create_session(mia, "Costly")
            worker.wait(worker.ask(chat, session.public_id, mia, "warm up")[1], timeout=30)
        provider.gate.clear()
        admitted, refused = [], []
        barrier = threading.Barrier(6)

        def one() -> None:
            session = chat.create_session(mia, "Costly")
            barrier.wait()
            try:
                admitted.append(worker.ask(chat, session.public_id, mia, "now")[1])
            except BudgetExceeded:
                refused.append(1)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        provider.open()
        for job_id in admitted:
            worker.wait(job_id, timeout=30)
        # Nothing in flight and $0.09 < $0.10: one more is let through (the one overshoot) …
        session = chat.create_session(mia, "Costly")
        worker.wait(worker.ask(chat, session.public_id, mia, "last")[1], timeout=30)
        # … and after it the budget is spent.
        with pytest.raises(BudgetExceeded, match="is spent"):
            worker.ask(chat, chat.create_session(mia, "Costly").public_id, mia, "too much")
    finally:
        worker.shutdown()
    spent = budgets.list_budgets()[0].spent_usd
    # $0.06 + one reply in flight reserved at $0.03 fits under $0.10; a second would not.
    assert len(admitted) == 1 and len(refused) == 5
    assert spent == pytest.approx(0.12)  # over by one reply at most
    with db.session() as s:
        assert s.scalar(select(AiJob).where(AiJob.status != "succeeded")) is None


def test_budgets_are_checked_and_listed_with_their_spend(
    db: Database, people: tuple[UserView, UserView]
) -> None:
    budgets = BudgetService(db)
    for bad in (0, -5, float("inf")):
        with pytest.raises(ValidationError, match="more than \\$0"):
            budgets.set_budget("user", "mia", bad)
    with pytest.raises(Exception, match="no user named 'nobody'"):
        budgets.set_budget("user", "nobody", 5)
    budgets.set_budget("user", "mia", 5)
    budgets.set_budget("user", "mia", 7, hard=True)  # replaces
    budgets.set_budget("persona", "Costly", 3)
    listed = budgets.list_budgets()
    assert [(b.scope, b.target_name, b.monthly_usd, b.hard, b.spent_usd) for b in listed] == [
        ("user", "mia", 7.0, True, 0.0),
        ("persona", "Costly", 3.0, False, 0.0),
    ]
    assert listed[0].resets_at == next_month(datetime.now(UTC))
    assert month_start(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == datetime(
        2026, 12, 1, tzinfo=UTC
    )
    assert next_month(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_retry_under_a_spent_hard_budget_is_refused_and_logged(
    db: Database,
    worker: ResponseWorker,
    people: tuple[UserView, UserView],
    gemini_server: FakeGeminiServer,
    settings: Settings,
) -> None:
    mia = people[0]
    set_price(db)
    chat = ChatService(db)
    session = chat.create_session(mia, "Costly")
    gemini_server.enqueue(status=400, error_message="bad request")  # permanent: no retries
    failed = worker.wait(worker.ask(chat, session.public_id, mia, "Fails")[1], timeout=30)
    assert failed.status == "failed"
    gemini_server.enqueue(text="Costly.", usage=USAGE)
    send(db, worker, mia)
    BudgetService(db).set_budget("user", "mia", 0.001, hard=True)
    asked = len(gemini_server.requests)

    with pytest.raises(BudgetExceeded, match="is spent"):
        worker.retry(failed.id, mia)

    assert len(gemini_server.requests) == asked
    events = (settings.data_dir / "logs" / "api_events.log").read_text()
    assert events.count('"budget_refused"') == 1


def test_several_breakdowns_in_one_pass_match_a_report_each(tmp_path: Path) -> None:
    # The Usage page reads the organisation's breakdown and its cost per day in one pass.
    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
    replies = [  # (days ago, user id, persona, cost or None for unpriced, session)
        (0, 1, "Coder", 0.004, "s1"),
        (0, 2, "Writer", None, "s2"),
        (1, 1, "Writer", 0.002, "s1"),
        (1, 3, None, 0.003, "s3"),
        (3, 2, "Coder", 0.001, "s4"),
        (40, 1, "Coder", 9.0, "s5"),  # outside the 30 days
    ]
    clock = {"at": now}
    log_path = tmp_path / "logs" / "api_events.log"
    with ApiEventLogger(log_path, clock=lambda: clock["at"]) as log:
        for days, user_id, persona, cost, session in replies:
            clock["at"] = now - timedelta(days=days, hours=1)
            fields = {"persona": persona, "model": MODEL, "channel": "chat"}
            log.emit(
                EventName.JOB_SUCCESS,
                chat_session_id=session,
                user_id=user_id,
                job_id=f"job-{days}-{user_id}",
                input_tokens=100,
                cached_input_tokens=10,
                output_tokens=20,
                reasoning_tokens=0,
                cost_usd=cost,
                **fields,
            )
    names = {1: "mia", 2: "ana"}.get
    breakdowns = [["user"], ["day"], ["persona", "day"], ["user"]]
    with EventStore(log_path, tmp_path / "cache") as store:
        together = usage_reports(store, "30d", now, breakdowns, user_names=names)
        apart = [usage_report(store, "30d", now, b, user_names=names) for b in breakdowns]
        mine = usage_reports(store, "30d", now, [["day"], ["persona"]], user_id=1)
    assert together == apart
    by_user, by_day, by_persona_day, again = together
    assert again == by_user
    assert [(r["user"], r["replies"], r["cost_usd"]) for r in by_user["rows"]] == [
        ("mia", 2, 0.006),
        ("#3", 1, 0.003),
        ("ana", 2, 0.001),
    ]
    assert [(r["day"], r["replies"]) for r in by_day["rows"]] == [
        ("2026-05-19", 2),
        ("2026-05-20", 2),
        ("2026-05-17", 1),
    ]
    assert set(by_persona_day["rows"][0]) >= {"persona", "day"}
    assert "user" not in by_persona_day["rows"][0]
    assert by_user["total"] == by_day["total"]
    assert (by_user["total"]["replies"], by_user["total"]["unpriced_replies"]) == (5, 1)
    assert [(r["persona"], r["replies"]) for r in mine[1]["rows"]] == [("Coder", 1), ("Writer", 1)]
    assert mine[0]["total"]["replies"] == 2
