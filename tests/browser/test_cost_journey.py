"""Cost and budgets in a real browser: an admin adds a price and a hard budget on the Usage page,
a member's priced reply (through `nexus chat` against the fake Gemini) spends it, the member is
refused with the draft kept, and the Usage pages show the member's cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    CLI_TIMEOUT_SECONDS,
    MEMBER,
    REPO_ROOT,
    LiveApp,
    NewPage,
    fill_form,
    open_expander,
    open_from_sidebar,
    pick,
    sign_in,
    wait_until_idle,
)
from tests.fakes.gemini_server import FakeGeminiServer

pytestmark = pytest.mark.browser

USERNAME, _, PASSWORD = MEMBER
USAGE = {
    "promptTokenCount": 2_000,
    "cachedContentTokenCount": 1_000,
    "candidatesTokenCount": 100,
    "thoughtsTokenCount": 900,
}
# $1 per million input tokens (cached too: no cached price) and $4 per million output+reasoning.
COST = f"${(2_000 * 1 + 1_000 * 4) / 1e6:,.4f}"
DRAFT = "Please keep this draft about the Q3 roadmap"


def priced_reply(app: LiveApp) -> str:
    """A reply to mia through `nexus chat` against the fake Gemini; returns its session id."""
    gemini = FakeGeminiServer().start()
    try:
        gemini.enqueue(text="Here is the summary.", usage=USAGE)
        env = {
            **app.env,
            "NEXUS_AI_PROVIDER": "gemini",
            "GEMINI_API_KEY": "AIza-cost-journey-test-key",
            "GEMINI_API_BASE": gemini.base_url,
        }
        args = ["chat", "--user", USERNAME, "--persona", "Nexus Assistant", "--json", "Sum up"]
        result = subprocess.run(
            [sys.executable, "-m", "nexus_core.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        gemini.stop()
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == "ok", result.stderr
    return str(answer["session_id"])


def add_price(page: Page) -> None:
    open_expander(page, "Prices (USD per million tokens)", "Add price")
    model = page.get_by_label("Model, or a prefix ending in *")
    prices = {"Input": "1", "Output (and reasoning)": "4"}

    def fill() -> None:
        model.fill("gemini-flash*")
        for label, usd in prices.items():
            page.get_by_label(label, exact=True).fill(usd)

    def filled() -> bool:
        return model.input_value() == "gemini-flash*" and all(
            float(page.get_by_label(label, exact=True).input_value()) == float(usd)
            for label, usd in prices.items()
        )

    fill_form(page, fill, filled)
    page.get_by_role("button", name="Add price").click()
    expect(page.get_by_text("Price for gemini-flash* added.")).to_be_visible()
    wait_until_idle(page)


def set_hard_budget(page: Page, username: str, usd: str) -> None:
    open_expander(page, "Budgets", "Set budget")
    name = page.get_by_label("Name", exact=True)
    hard = page.get_by_role("checkbox", name=re.compile("^Hard: refuse new messages"))

    def fill() -> None:
        pick(page, "Name", username)
        page.get_by_label("Monthly budget (USD)").fill(usd)
        if not hard.is_checked():
            page.get_by_text("Hard: refuse new messages once spent").click()

    fill_form(page, fill, lambda: name.input_value() == username and hard.is_checked())
    page.get_by_role("button", name="Set budget").click()
    expect(page.get_by_text(f"Budget for {username} set.")).to_be_visible()
    wait_until_idle(page)


def test_an_admin_prices_and_budgets_a_member_is_refused_and_usage_shows_the_cost(
    live_app: LiveApp, new_page: NewPage
) -> None:
    admin = new_page()
    sign_in(admin, live_app.url, "admin", ADMIN_PASSWORD)
    open_from_sidebar(admin, "Usage", "💰 Usage")
    add_price(admin)

    session_id = priced_reply(live_app)

    set_hard_budget(admin, USERNAME, "0.001")
    admin.reload()
    expect(admin.get_by_role("heading", name="Organisation")).to_be_visible()
    expect(admin.get_by_text(COST).first).to_be_visible()

    member = new_page()
    sign_in(member, live_app.url, USERNAME, PASSWORD)
    member.goto(f"{live_app.url}/?session={session_id}")
    expect(member.get_by_text("Here is the summary.")).to_be_visible()
    expect(member.get_by_text("mia's monthly hard budget is")).to_be_visible()
    wait_until_idle(member)
    member.get_by_placeholder("Message").fill(DRAFT)
    member.keyboard.press("Enter")
    expect(member.get_by_text("Not sent: mia's hard monthly budget is spent")).to_be_visible()
    expect(member.get_by_text(DRAFT)).to_be_visible()  # the draft, kept to copy
    expect(member.locator('[data-testid="stChatMessage"]')).to_have_count(2)

    open_from_sidebar(member, "Usage", "💰 Usage")
    expect(member.get_by_role("heading", name="My usage")).to_be_visible()
    expect(member.get_by_text(COST).first).to_be_visible()
    expect(member.get_by_role("heading", name="Organisation")).to_have_count(0)
