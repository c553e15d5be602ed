"""Prompt comparison in a real browser: a member with the prompt_compare feature compares two
personas in blind mode, sees both replies side by side without their names, votes, sees the
names revealed, and finds the winner on the leaderboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    LiveApp,
    NewPage,
    open_from_sidebar,
    pick,
    sign_in,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

TESTER = ("tess", "tester-password-1")
PERSONAS = ("Code Reviewer", "Technical Writer")
PROMPT = "Explain exponential backoff in one sentence."
COMPARE = re.compile(r"(^|\s)Compare$")


def test_a_blind_comparison_is_judged_and_the_leaderboard_moves(
    live_app: LiveApp, new_page: NewPage
) -> None:
    username, password = TESTER
    live_app.nexus("users", "add", username, "--password-stdin", stdin=password)
    live_app.nexus("users", "feature", username, "prompt_compare", "on")
    page = new_page()
    sign_in(page, live_app.url, username, password)
    open_from_sidebar(page, "Compare", "Compare")

    wait_until_idle(page)
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_test_id("stCheckbox").get_by_text("Blind mode", exact=True).click()
    expect(page.get_by_role("switch", name="Blind mode")).to_be_checked()
    for letter, persona in zip("AB", PERSONAS, strict=True):
        column = page.get_by_test_id("stColumn").filter(
            has=page.get_by_text(f"Variant {letter}", exact=True)
        )
        pick(page, "Persona", persona, within=column)
    page.get_by_role("button", name=COMPARE).click()

    # Both replies side by side, with their timings, but no persona names while blind.
    expect(page).to_have_url(re.compile(r"run="))
    expect(page.get_by_role("heading", name="A", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="B", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^[\d,]+ ms · first token"))).to_have_count(2)
    main = page.get_by_test_id("stMain")
    for persona in PERSONAS:
        expect(main.get_by_text(re.compile(rf"^{persona} v\d"))).to_have_count(0)

    # Vote A best: the names appear.
    page.get_by_test_id("stRadio").get_by_text("A", exact=True).click()
    page.get_by_role("button", name="Submit vote").click()
    expect(page.get_by_text("Your vote is in: A is best.")).to_be_visible()
    for persona in PERSONAS:
        expect(main.get_by_text(re.compile(rf"^{persona} v\d"))).to_have_count(1)
    winner = (
        main.locator("[data-testid='stColumn']")
        .first.get_by_text(re.compile(r" v\d+ · "))
        .inner_text()
    )

    # The leaderboard: the winner has one win in one comparison.
    page.get_by_role("radio", name="Leaderboard").or_(
        page.get_by_role("button", name="Leaderboard")
    ).first.click()
    expect(page).to_have_url(re.compile(r"view=leaderboard"))
    grid = page.get_by_test_id("stDataFrame")
    expect(grid.get_by_text(winner, exact=True)).to_be_attached()
    # The grid draws on a canvas; its accessible table holds the raw values of each row:
    # comparisons 1, wins 1, win rate 100 (%), then the interval 20.65… to 100.
    row = grid.locator("tr").filter(has_text=winner)
    expect(row).to_have_text(re.compile(rf"^{re.escape(winner)}\s*1\s*1\s*100\s*20\.65\d*\s*100$"))
