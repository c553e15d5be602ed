"""Opening the app under Streamlit's AppTest as a signed-in user: a real sign-in session in the
database, held by the AppTest's session state as a browser session holds it after a sign-in (the
form, the cookie and the hand-off frame themselves are tested in a browser)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from streamlit.testing.v1 import AppTest

from nexus_core.markdown.safe import HARD_BREAK, WORD_JOINER
from nexus_core.ui import state
from nexus_core.ui.nav import page_path
from nexus_core.ui.resources import get_context
from tests.constants import ROOT

APP = str(ROOT / "app.py")
TIMEOUT = 60


def open_sign_in_session(username: str) -> int:
    """A new sign-in session for ``username`` (through the app's own context), as a sign-in
    through the form would make; its id goes in ``state.AUTH_SESSION``."""
    ctx = get_context()
    return ctx.sign_in.open_session(ctx.users.get(username).id).session_id


def signed_in_app(
    username: str,
    *,
    page: str | None = None,
    query: Mapping[str, str] | None = None,
    session: Mapping[str, object] | None = None,
    timeout: float = TIMEOUT,
) -> AppTest:
    """The app run once as ``username`` with ``query`` in the URL and ``session`` state set,
    then switched to the page keyed ``page`` when one is given. ``session`` may carry an
    existing ``state.AUTH_SESSION``; otherwise a new sign-in session is opened."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    session = dict(session or {})
    if state.AUTH_SESSION not in session:
        at.session_state[state.AUTH_SESSION] = open_sign_in_session(username)
    for key, value in session.items():
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
