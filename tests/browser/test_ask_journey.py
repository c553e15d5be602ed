"""Ask in a real browser, offline: an analyst asks a question in plain words on the Workbench,
sees the draft SQL labelled as generated before anything runs, runs it and sees the table; the
draft is in the URL, so the address reopens it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveApp, NewPage, analyst_on_workbench, wait_until_idle

pytestmark = pytest.mark.browser

ANALYST = ("quinn", "analyst-password-3")
QUESTION = "Replies by persona per day over the last 7 days"
RESULT_CAPTION = re.compile(r"^\d[\d,]* rows · \d[\d,]* ms")
DRAFT_SQL = re.compile(r"Draft SQL")
RUN = re.compile(r"(^|\s)Run$")
GENERATED_BADGE = re.compile(r"(^|\s)generated$")  # after the badge's icon ligature


def test_an_analyst_asks_offline_sees_the_draft_runs_it_and_sees_the_table(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = analyst_on_workbench(live_app, new_page, *ANALYST)

    # Ask: the draft is shown, labelled as generated, and nothing has run.
    box = page.get_by_test_id("stForm")
    wait_until_idle(page)
    box.get_by_label("Question", exact=True).fill(QUESTION)
    box.get_by_role("button", name=DRAFT_SQL).click()
    expect(page).to_have_url(re.compile(r"ask=\d+"))
    editor = page.get_by_label(re.compile("^Draft SQL — nothing runs"))
    expect(editor).to_have_value(re.compile(r"^SELECT\n    e\.persona AS persona,"))
    expect(page.get_by_text(GENERATED_BADGE)).to_be_visible()
    expect(page.get_by_text(f"asked: “{QUESTION}”", exact=False)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)

    # Run it: the table, in the same sandbox as every cell.
    page.get_by_role("button", name=RUN).click()
    expect(page.get_by_text(RESULT_CAPTION)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(1)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)

    # The address reopens the draft.
    draft_url = page.url
    page.goto(draft_url)
    expect(page.get_by_label(re.compile("^Draft SQL — nothing runs"))).to_have_value(
        re.compile(r"e\.persona AS persona")
    )
