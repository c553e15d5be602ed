"""Avatars in a real Chromium: the default 🤖 is drawn from the colour emoji font, on a persona's
card and beside its replies, not as the small monochrome glyph that Streamlit's text font (Source
Sans) has for it. Needs the colour emoji font (Debian's fonts-noto-color-emoji), as CI installs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    REQUIRE_BROWSER_ENV,
    LiveApp,
    NewPage,
    sign_in,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

COLOUR_EMOJI_FONT = "Noto Color Emoji"
PROBE_ATTRIBUTE = "data-nexus-font-probe"
FONT_LIST_TIMEOUT_SECONDS = 30


@pytest.fixture(scope="module")
def colour_emoji_font() -> None:
    """The colour emoji font Chromium falls back to; CI must have it, a developer may skip."""
    fc_list = shutil.which("fc-list")
    if fc_list:
        listed = subprocess.run(
            [fc_list, f":family={COLOUR_EMOJI_FONT}", "family"],
            capture_output=True,
            text=True,
            timeout=FONT_LIST_TIMEOUT_SECONDS,
            check=False,
        )
        if COLOUR_EMOJI_FONT in listed.stdout:
            return
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(
            f"{COLOUR_EMOJI_FONT} is required in CI (apt-get install fonts-noto-color-emoji)"
        )
    pytest.skip(f"no {COLOUR_EMOJI_FONT} font (apt-get install fonts-noto-color-emoji); skipped")


def fonts_drawing(page: Page, element: Locator) -> dict[str, int]:
    """The fonts Chromium drew ``element``'s text with, and how many glyphs each drew."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        element.evaluate("(e, name) => e.setAttribute(name, '')", PROBE_ATTRIBUTE)
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": f"[{PROBE_ATTRIBUTE}]"})
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        return {font["familyName"]: font["glyphCount"] for font in fonts}
    finally:
        element.evaluate("(e, name) => e.removeAttribute(name)", PROBE_ATTRIBUTE)
        cdp.detach()


@pytest.mark.usefixtures("colour_emoji_font")
def test_the_default_robot_avatar_is_drawn_in_colour_on_cards_and_beside_replies(
    live_app: LiveApp, new_page: NewPage
) -> None:
    chat = live_app.nexus(
        "chat", "--user", "admin", "--persona", "Nexus Assistant", "--json", "Hello"
    )
    session_id = json.loads(chat.stdout.strip().splitlines()[-1])["session_id"]
    page = new_page()
    url = f"{live_app.url}/chat?session={session_id}"
    sign_in(page, url, "admin", ADMIN_PASSWORD, lands_on="Hello")  # the chat is titled so
    reply = page.get_by_test_id("stChatMessage").filter(
        has=page.get_by_label("Chat message from assistant")
    )
    expect(reply).to_have_count(1)
    wait_until_idle(page)

    # The persona's bar above the chat (the same widget as the cards on the Personas page).
    bar = page.get_by_text(re.compile(r"Nexus Assistant · v1$"))
    expect(bar).to_have_count(1)
    drawn = fonts_drawing(page, bar)
    assert drawn.get(COLOUR_EMOJI_FONT) == 1, drawn
    # Beside the reply: Streamlit draws an emoji avatar as text in the message's first box.
    assert fonts_drawing(page, reply.locator(":scope > div").first) == {COLOUR_EMOJI_FONT: 1}
