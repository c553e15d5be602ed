"""The one way a page follows work that goes on without it: a fragment that redraws itself.

``follow`` draws a part of the page; while the work it shows is running, that part is a fragment
that Streamlit reruns every few seconds on its own (the rest of the page and its widgets stay
put). When a redraw finds the work done, the whole page reruns once, so what waited on the work
(a vote form, a results table, buttons) appears. Nothing sleeps in the script: a page that
follows work answers clicks and leaves freely.

(The chat page's reply streamed in this process is the exception: it reads the worker's broker
as the tokens come, see ``chat_view.live_reply``.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.ui.auth import rerun_if_signed_out


def follow(
    ctx: AppContext, draw: Callable[[], bool], *, running: bool, every_seconds: float
) -> None:
    """Draw ``draw`` (which returns whether the work is still running); while ``running``, as a
    fragment redrawn every ``every_seconds`` until a redraw says the work is done."""
    if not running:
        draw()
        return
    part: Callable[[AppContext, Callable[[], bool]], None] = st.fragment(
        run_every=timedelta(seconds=every_seconds)
    )(_followed)
    part(ctx, draw)


def _followed(ctx: AppContext, draw: Callable[[], bool]) -> None:
    rerun_if_signed_out(ctx)  # a fragment's own reruns skip the frame's sign-in check
    if not draw():
        st.rerun(scope="app")
