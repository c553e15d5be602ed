"""Boards in a real browser: an analyst runs a starter notebook, pins a cell's chart to a new
board, and — signed out, in a fresh browser — opens the board by its link, signs in, and lands on
the board with the pinned chart drawn and its "as of" time."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from nexus_core.ui import boards_view, notebook_view
from nexus_core.ui.widgets.pin import NEW_BOARD_TITLE, PIN_LABEL
from tests.browser.conftest import (
    LiveApp,
    NewPage,
    analyst_on_workbench,
    open_until_visible,
    sign_in,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

ANALYST = ("petra", "analyst-password-4")
STARTER = "Persona comparison"
PIN_TITLE = STARTER  # a starter's cells have no names: the pin takes the notebook's title
RESULT_CAPTION = re.compile(r"^\d[\d,]* rows · \d[\d,]* ms")
RUN = re.compile(r"(^|\s)Run$")
PINNED = re.compile(r"Pinned “.*” — open the board at (/boards\?board=\d+)")
RUN_TIMEOUT_MS = 60_000  # a pin's first run takes a snapshot and starts a query process


def test_a_chart_pinned_to_a_new_board_opens_by_the_boards_link(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = analyst_on_workbench(live_app, new_page, *ANALYST)
    page.get_by_test_id("stSidebar").get_by_role("button", name=STARTER, exact=True).click()
    expect(page.get_by_text("read-only; duplicate it to edit")).to_be_visible()

    # The first SQL cell (a chart of failures by persona): run it, then pin it to a new board.
    cell = page.locator(f"[class*='st-key-{notebook_view.CELL_PREFIX}']").nth(1)
    cell.get_by_role("button", name=RUN).click()
    expect(cell.get_by_text(RESULT_CAPTION)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(cell.get_by_test_id("stPlotlyChart")).to_be_visible()
    popover = page.get_by_test_id("stPopoverBody")
    open_until_visible(page, cell.get_by_role("button", name=PIN_LABEL), popover)
    expect(popover.get_by_label("New board's title")).to_have_value(NEW_BOARD_TITLE)
    wait_until_idle(page)
    popover.get_by_role("button", name="Pin", exact=True).click()
    notice = page.get_by_test_id("stAlertContentSuccess").filter(has_text=PINNED)
    expect(notice).to_be_visible()
    match = PINNED.search(notice.inner_text())
    assert match is not None
    link = live_app.url + match[1]

    # A fresh browser, signed out: the board's link survives the sign-in and shows the chart.
    fresh = new_page()
    sign_in(fresh, link, *ANALYST, lands_on="Boards")
    expect(fresh).to_have_url(re.compile(re.escape(match[1]) + "$"))
    expect(fresh.get_by_role("heading", name=NEW_BOARD_TITLE)).to_be_visible()
    pin = fresh.locator(f"[class*='st-key-{boards_view.PIN_PREFIX}']")
    expect(pin.get_by_role("heading", name=PIN_TITLE)).to_be_visible()
    expect(pin.get_by_test_id("stPlotlyChart")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(pin.get_by_text(re.compile(r"^as of \d{4}-\d\d-\d\d \d\d:\d\d UTC"))).to_be_visible()
    expect(fresh.get_by_test_id("stAlertContentError")).to_have_count(0)
