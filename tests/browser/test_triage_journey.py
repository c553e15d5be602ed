"""The triage journey in a real browser: an analyst filters the feedback, opens an item with its
conversation, moves it to resolved, and the change is in the audit trail (and on the Audit page)."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.feedback import FeedbackService
from nexus_core.users import UserService
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    MEMBER,
    LiveApp,
    NewPage,
    open_from_sidebar,
    pick,
    sign_in,
)

pytestmark = pytest.mark.browser

ANALYST = ("ana", "analyst-password-1")
MEMBER_USERNAME = MEMBER[0]
QUESTION = "How fast are replies today?"


def database(app: LiveApp) -> Database:
    return Database(f"sqlite:///{app.data_dir / 'nexus.db'}")


def seed_feedback(app: LiveApp) -> int:
    """A chat of the member's (through the CLI) and three feedback items; the slow one's id."""
    username, password = ANALYST
    app.nexus("users", "add", username, "--role", "analyst", "--password-stdin", stdin=password)
    reply = app.nexus(
        "chat", "--user", MEMBER_USERNAME, "--persona", "Nexus Assistant", "--json", QUESTION
    )
    session_id = json.loads(reply.stdout.strip().splitlines()[-1])["session_id"]
    db = database(app)
    try:
        mia = UserService(db).get(MEMBER_USERNAME)
        feedback = FeedbackService(db)
        slow = feedback.submit(
            mia,
            category="performance",
            priority="high",
            description="Replies are slow in the morning",
            session_public_id=session_id,
        )
        feedback.submit(mia, category="ux", priority="low", description="Make the sidebar wider")
        feedback.submit(mia, category="bug", priority="medium", description="Export is slow too")
    finally:
        db.dispose()
    return slow.id


def test_an_analyst_filters_opens_and_resolves_an_item_and_the_audit_shows_it(
    live_app: LiveApp, new_page: NewPage
) -> None:
    item = seed_feedback(live_app)
    page = new_page()
    sign_in(page, live_app.url, *ANALYST)
    open_from_sidebar(page, "Feedback explorer", "Feedback explorer")
    expect(page.get_by_text("3 items · select rows")).to_be_visible()

    # Filter: slow things that are about performance.
    page.get_by_label("Search descriptions").fill("SLOW")
    page.keyboard.press("Enter")
    expect(page.get_by_text("2 items · select rows")).to_be_visible()
    page.get_by_label("Category").click()
    page.get_by_role("option", name="performance").click()
    page.keyboard.press("Escape")
    expect(page.get_by_text("1 item · select rows")).to_be_visible()

    # Open it: the fields, the linked conversation (read-only) and the history.
    pick(page, "Open an item", re.compile(rf"^#{item} · performance"))
    expect(page.get_by_role("heading", name=f"Feedback #{item}")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"item={item}"))
    history = page.get_by_test_id("stDataFrame").filter(has_text="Submitted: performance")
    expect(history).to_have_count(1)
    page.get_by_text("Conversation:").click()
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text(QUESTION)
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2)
    assert page.get_by_test_id("stChatInput").count() == 0  # read-only

    # Move it to resolved.
    pick(page, "Move to", "resolved")
    page.get_by_role("button", name="Update status").click()
    expect(page.get_by_text(f"Feedback #{item} is now resolved.")).to_be_visible()

    db = database(live_app)
    try:
        events = audit.for_target(db, "feedback", str(item))
    finally:
        db.dispose()
    changes = [
        (e.actor_name, e.details) for e in events if e.action == audit.FEEDBACK_STATUS_CHANGED
    ]
    assert changes == [("ana", {"from": "open", "to": "resolved"})]

    # The Audit page (admins) lists the change for that item.
    admin = new_page()
    sign_in(admin, live_app.url, "admin", ADMIN_PASSWORD)
    open_from_sidebar(admin, "Audit", "Audit")
    pick(admin, "Target type", "feedback")
    admin.get_by_label("Target id").fill(str(item))
    admin.keyboard.press("Enter")
    pick(admin, "Kind", "Feedback")
    expect(admin.get_by_text("Page 1 of 1 · 2 events")).to_be_visible()
    # The grid draws on a canvas; its cells are also in the DOM as an accessible table.
    grid = admin.get_by_test_id("stDataFrame")
    expect(grid.get_by_text(audit.FEEDBACK_STATUS_CHANGED, exact=True)).to_be_attached()
    expect(grid.get_by_text('{"from": "open", "to": "resolved"}', exact=True)).to_be_attached()
