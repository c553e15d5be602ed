"""Opening the app under Streamlit's AppTest as a signed-in user: the session state the
authenticator leaves after a sign-in (the form and the cookie themselves are browser-tested)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from streamlit.testing.v1 import AppTest

from nexus_core.rendering import HARD_BREAK, WORD_JOINER
from nexus_core.ui import state
from nexus_core.ui.nav import page_path

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60


def signed_in_app(
    username: str,
    *,
    page: str | None = None,
    query: Mapping[str, str] | None = None,
    session: Mapping[str, object] | None = None,
    timeout: float = TIMEOUT,
) -> AppTest:
    """The app run once as ``username`` with ``query`` in the URL and ``session`` state set,
    then switched to the page keyed ``page`` when one is given."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state[state.AUTH_STATUS] = True
    at.session_state[state.AUTH_USERNAME] = username
    for key, value in (session or {}).items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    return at if page is None else at.switch_page(page_path(page)).run()


ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def seen_text(markdown: str) -> str:
    """What a reader sees of text that ``show.plain`` made into Markdown (escapes, word joiners
    and hard line breaks taken out)."""
    return ESCAPED.sub(r"\1", markdown.replace(HARD_BREAK, "\n")).replace(WORD_JOINER, "")
