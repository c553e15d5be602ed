"""How a page reports what an action did: the error in place, or a notice shown once on the next
run (after a widget callback or an ``st.rerun``). A ``NexusError``'s message is meant for people;
anything else is a bug and goes to the error page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import streamlit as st

from nexus_core.errors import NexusError
from nexus_core.ui.show import alert

T = TypeVar("T")
Kind = Literal["success", "error"]


def or_error(action: Callable[[], T]) -> T | None:
    """Run a service call; show a NexusError's message where it happened and return None."""
    try:
        return action()
    except NexusError as exc:
        alert("error", exc)
        return None


def succeeded(action: Callable[[], object]) -> bool:
    """Run a service call for its effect; show a NexusError's message in place; did it work?"""
    try:
        action()
    except NexusError as exc:
        alert("error", exc)
        return False
    return True


def leave(key: str, text: str, *, kind: Kind = "success", secret: str | None = None) -> None:
    """Keep a notice under ``key`` for the next run (``secret``: shown once, as code to copy)."""
    st.session_state[key] = (kind, text, secret)


def or_notice(key: str, action: Callable[[], object]) -> bool:
    """Run a change from a widget callback; a NexusError becomes the next run's error notice."""
    try:
        action()
    except NexusError as exc:
        leave(key, str(exc), kind="error")
        return False
    return True


def show(key: str) -> None:
    """Show the notice left under ``key``, once."""
    notice = st.session_state.pop(key, None)
    if notice is None:
        return
    kind, text, secret = notice
    alert(kind, text)
    if secret:
        st.code(secret, language=None)
