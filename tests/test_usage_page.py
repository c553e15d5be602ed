"""The Usage page and budgets in the chat through AppTest: an admin adds a price and a hard
budget with the page's forms, a member over the budget is refused with the draft kept and a
notice, and My usage / the organisation's breakdown show the cost from the event log."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.db.models import ChatSession, Message
from nexus_core.ops.events import EventName
from nexus_core.ui import links, state, usage_view
from tests.apptest import seen_text, signed_in_app

PASSWORD = "correct-horse-1"


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, display_name="Mia Member")
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.create("ada", PASSWORD, role="admin")
    return ctx


def spend(ctx: AppContext, username: str, usd: float) -> str:
    """A priced reply of ``username`` stored this month, and its job_success in the event log."""
    user = ctx.users.get(username)
    session = ctx.chat.create_session(user, "Nexus Assistant")
    with ctx.db.session() as s:
        chat = s.scalar(select(ChatSession).where(ChatSession.public_id == session.public_id))
        s.add(Message(session_id=chat.id, role="user", content="Earlier question"))
        s.add(
            Message(
                session_id=chat.id,
                role="assistant",
                content="Earlier answer",
                model="gemini-2.5-flash",
                tokens_in=1_000,
                tokens_out=500,
                cost_usd=usd,
            )
        )
    ctx.events.emit(
        EventName.JOB_SUCCESS,
        chat_session_id=session.public_id,
        user_id=user.id,
        job_id="job-1",
        latency_ms=100.0,
        attempts=1,
        persona="Nexus Assistant",
        model="gemini-2.5-flash",
        channel="chat",
        input_tokens=1_000,
        cached_input_tokens=250,
        output_tokens=500,
        reasoning_tokens=0,
        cost_usd=usd,
    )
    return session.public_id


def all_text(at) -> str:  # type: ignore[no-untyped-def]
    parts = [
        seen_text(e.value)
        for e in [*at.markdown, *at.subheader, *at.warning, *at.caption, *at.error, *at.success]
    ]
    parts += [str(m.value) for m in at.metric]
    return "\n".join(parts)


def open_admin_settings(at):  # type: ignore[no-untyped-def]
    """Open the Prices and Budgets expanders (their forms are built only while open)."""
    at.session_state[usage_view.PRICES_OPEN] = True
    at.session_state[usage_view.BUDGETS_OPEN] = True
    return at.run()


def test_the_page_opens_without_the_chart_and_admin_forms_until_they_are_opened(
    app_ctx: AppContext,
) -> None:
    spend(app_ctx, "mia", 0.25)
    at = signed_in_app("ada", page="usage")
    assert not at.exception
    assert [t.label for t in at.tabs] == list(usage_view.ORG_TABS)
    assert [e.label for e in at.main.expander] == [
        usage_view.PRICES_LABEL,
        usage_view.BUDGETS_LABEL,
    ]
    assert not at.get("plotly_chart") and not at.main.text_input and not at.main.radio
    org = at.dataframe[-1].value
    assert list(zip(org["User"], org["Cost (USD)"], strict=True)) == [("mia", 0.25)]

    at.session_state[usage_view.ORG_TAB_PICK] = "Cost per day"
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    assert "$0.2500" in all_text(at)

    open_admin_settings(at)
    assert not at.exception
    assert [t.label for t in at.main.text_input] == ["Model, or a prefix ending in *"]
    assert [r.label for r in at.main.radio] == ["For"]


def test_an_admin_adds_a_price_and_a_hard_budget_with_the_forms(app_ctx: AppContext) -> None:
    at = open_admin_settings(signed_in_app("ada", page="usage"))
    assert not at.exception
    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Model, or a prefix ending in *"].set_value("gemini-2.5-flash*")
    numbers = {n.label: n for n in at.number_input}
    numbers["Input"].set_value(0.3)
    numbers["Output (and reasoning)"].set_value(2.5)
    at.button(key="FormSubmitter:price_form-Add price").click().run()
    assert not at.exception
    [price] = app_ctx.prices.list_prices()
    assert (price.model, price.input_usd, price.output_usd, price.created_by) == (
        "gemini-2.5-flash*",
        0.3,
        2.5,
        "ada",
    )
    assert "Price for gemini-2.5-flash* added." in all_text(at)

    [scope] = [r for r in at.radio if r.label == "For"]
    scope.set_value("user").run()
    [name] = [s for s in at.selectbox if s.label == "Name"]
    name.set_value("mia")
    [monthly] = [n for n in at.number_input if n.label == "Monthly budget (USD)"]
    monthly.set_value(5.0)
    [hard] = [c for c in at.checkbox if c.label.startswith("Hard")]
    hard.check()
    at.button(key="FormSubmitter:budget_form-Set budget").click().run()
    assert not at.exception
    [budget] = app_ctx.budgets.list_budgets()
    assert (budget.target_name, budget.monthly_usd, budget.hard) == ("mia", 5.0, True)
    assert audit.search(app_ctx.db, audit.AuditQuery(actions=(audit.BUDGET_SET,)), limit=5)


def test_a_bad_price_shows_its_message_and_adds_nothing(app_ctx: AppContext) -> None:
    at = open_admin_settings(signed_in_app("ada", page="usage"))
    [model] = [t for t in at.text_input if t.label.startswith("Model")]
    model.set_value("not a model")
    at.button(key="FormSubmitter:price_form-Add price").click().run()
    assert not at.exception
    assert "no spaces" in all_text(at)
    assert app_ctx.prices.list_prices() == []


def test_a_member_over_a_hard_budget_is_refused_with_the_draft_kept(app_ctx: AppContext) -> None:
    session_id = spend(app_ctx, "mia", 6.0)
    app_ctx.budgets.set_budget("user", "mia", 5.0, hard=True)
    at = signed_in_app("mia", query={links.SESSION_QUERY_PARAM: session_id})
    assert "monthly hard budget is 120 % used" in all_text(at)

    at.chat_input(key=state.CHAT_INPUT).set_value("Please keep this draft").run()

    assert not at.exception
    refusal = [seen_text(w.value) for w in at.warning if "Not sent" in w.value]
    assert refusal and "mia's hard monthly budget is spent ($6.00 of $5.00" in refusal[0]
    assert "resets on" in refusal[0]
    assert "Please keep this draft" in [c.value for c in at.code]
    with app_ctx.db.session() as s:
        contents = list(s.scalars(select(Message.content).order_by(Message.id)))
    assert contents == ["Earlier question", "Earlier answer"]


def test_my_usage_shows_my_cost_and_the_organisation_view_is_for_analysts(
    app_ctx: AppContext,
) -> None:
    spend(app_ctx, "mia", 0.25)
    spend(app_ctx, "ana", 1.5)

    mine = signed_in_app("mia", page="usage")
    assert not mine.exception
    text = all_text(mine)
    assert "$0.2500" in text and "$1.5000" not in text
    assert "Organisation" not in text and "Prices" not in text

    analyst = signed_in_app("ana", page="usage")
    org_text = all_text(analyst)
    assert "Organisation" in org_text and "$1.7500" in org_text
    assert "Prices (USD per million tokens)" not in org_text
    frames = [f.value for f in analyst.dataframe]
    org = frames[-1]
    assert sorted(zip(org["User"], org["Cost (USD)"], strict=True)) == [("ana", 1.5), ("mia", 0.25)]


def test_budgets_and_spend_show_on_the_users_and_personas_pages(app_ctx: AppContext) -> None:
    spend(app_ctx, "mia", 6.0)
    app_ctx.budgets.set_budget("user", "mia", 5.0, hard=True)
    app_ctx.budgets.set_budget("persona", "Nexus Assistant", 20.0)

    users = signed_in_app("ada", page="users")
    assert not users.exception
    table = users.dataframe[0].value
    budgets = dict(zip(table["Username"], table["Budget"], strict=True))
    assert budgets["mia"] == "$6.00 of $5.00 this month (120 %), hard"
    assert budgets["ana"] == "—"

    personas = signed_in_app("mia", page="personas")
    assert not personas.exception
    assert "Budget: $6.00 of $20.00 this month (30 %), soft" in all_text(personas)
