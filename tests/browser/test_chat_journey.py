"""The chat journey in a real browser: sign in, start a chat, watch the reply stream in, export
it, and leave feedback on it."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import Feedback, Message
from tests.browser.conftest import MEMBER, LiveApp, NewPage, open_until_visible, sign_in

pytestmark = pytest.mark.browser

USERNAME, _, PASSWORD = MEMBER
BUBBLE = '[data-testid="stChatMessage"]'
SAMPLE_SECONDS = 0.1
SAMPLES = 60


def database(app: LiveApp) -> Database:
    return Database(f"sqlite:///{app.data_dir / 'nexus.db'}")


def test_a_member_chats_sees_the_reply_stream_exports_and_leaves_feedback(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, live_app.url, USERNAME, PASSWORD)
    expect(page.get_by_label("Search chats")).to_be_visible()
    dialog = page.get_by_role("dialog")
    open_until_visible(page, page.get_by_role("button", name="New chat"), dialog)
    expect(dialog.get_by_text("Technical Writer")).to_be_visible()
    card = (
        dialog.get_by_test_id("stVerticalBlock")
        .filter(has_text="Technical Writer")
        .filter(has=page.get_by_role("button", name="Chat"))
        .last
    )
    card.get_by_role("button", name="Chat").click()
    expect(page.get_by_text("Model: Simulated model (offline)")).to_be_visible()
    expect(page).to_have_url(re.compile(r"session=[0-9a-f-]{36}"))
    page.get_by_placeholder("Message").fill("Draft release notes for the new SLO dashboard")
    page.keyboard.press("Enter")

    # The reply grows on screen before it is finished (streamed, not shown all at once); once
    # stored it has its thumbs, and it says from its first line that it is demo text.
    reply = page.locator(BUBBLE).nth(1)
    thumbs_down = reply.get_by_role("radio", name="Thumbs down")
    lengths: list[int] = []
    for _ in range(SAMPLES):
        if page.locator(BUBBLE).count() >= 2:
            lengths.append(len(reply.inner_text()))
        if thumbs_down.count():
            break
        time.sleep(SAMPLE_SECONDS)  # sampling what is on screen, not waiting for it
    expect(thumbs_down).to_be_visible()
    expect(reply.get_by_text("[Simulated reply — offline demo model]")).to_be_visible()
    partial = [n for n in lengths if n > 0]
    assert len(set(partial)) >= 2, f"the reply did not grow while streaming: {lengths}"

    db = database(live_app)
    with db.session() as session:
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        assert [m.role for m in rows] == ["user", "assistant"]
        reply_id = rows[1].id
        session_id = page.url.split("session=")[1].split("&")[0]

    # Export: the JSON download holds the conversation, and the export is audited.
    page.get_by_role("button", name="Session").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export JSON").click()
    document = json.loads(download_info.value.path().read_text())
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["persona"]["name"] == "Technical Writer"
    page.keyboard.press("Escape")
    actions = [a.action for a in audit.for_target(db, "session", session_id)]
    assert "session.exported" in actions

    # Feedback: thumbs down, then a report with a category, priority and description.
    thumbs_down.click()
    expect(thumbs_down).to_have_attribute("aria-checked", "true")
    page.get_by_role("button", name="Report").click()
    page.get_by_label("What happened?").fill("Missing the migration notes")
    page.get_by_role("button", name="Send feedback").click()
    expect(page.get_by_text("your feedback was saved")).to_be_visible()
    with db.session() as session:
        feedback = session.scalars(select(Feedback)).all()
        saved = [(f.message_id, f.rating, f.description) for f in feedback]
    db.dispose()
    assert saved == [(reply_id, 0, "Missing the migration notes")]
