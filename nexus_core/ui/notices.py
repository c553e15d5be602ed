"""The one way a page runs an action and reports what it did: ``act``.

An action is a service call. ``act`` runs it and shows its outcome — the success text, or a
``NexusError``'s message (meant for people, shown as plain text through ``show``) — either in
place, or, given a ``key``, as a notice that the next run shows once (for a widget callback, which
runs before the page is drawn, and before an ``st.rerun``). Anything other than a ``NexusError`` is
a bug and goes on to the error page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar, overload

import streamlit as st

from nexus_core.errors import NexusError
from nexus_core.ui.show import alert

T = TypeVar("T")
Kind = Literal["success", "error"]
Success = str | Callable[[T], str] | None


@overload
def act(
    action: Callable[[], None], *, success: Success[None] = None, key: str | None = None
) -> bool | None: ...


@overload
def act(
    action: Callable[[], T], *, success: Success[T] = None, key: str | None = None
) -> T | None: ...


def act(
    action: Callable[[], T], *, success: Success[T] = None, key: str | None = None
) -> T | bool | None:
    """Run ``action``; report ``success`` (a text, or a function of the result) or the
    ``NexusError`` it raised, in place or (with ``key``) as the next run's notice.

    Returns the action's result (``True`` for an action that returns nothing), or None when it
    raised a ``NexusError``.
    """
    try:
        result = action()
    except NexusError as exc:
        _report("error", str(exc), key)
        return None
    if success is not None:
        _report("success", success(result) if callable(success) else success, key)
    return True if result is None else result


def _report(kind: Kind, text: str, key: str | None) -> None:
    if key is None:
        alert(kind, text)
    else:
        leave(key, text, kind=kind)


def leave(key: str, text: str, *, kind: Kind = "success", secret: str | None = None) -> None:
    """Keep a notice under ``key`` for the next run (``secret``: shown once, as code to copy)."""
    st.session_state[key] = (kind, text, secret)


def show(key: str) -> None:
    """Show the notice left under ``key``, once."""
    notice = st.session_state.pop(key, None)
    if notice is None:
        return
    kind, text, secret = notice
    alert(kind, text)
    if secret:
        st.code(secret, language=None)
