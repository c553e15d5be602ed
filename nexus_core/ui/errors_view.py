"""The friendly 500: what a user sees when a page fails unexpectedly, and the report button.

``on_script_error`` runs on the script thread (it may draw) and returns True so Streamlit's own
exception box, which could show secret-bearing text, never appears. The report button uses
``on_click`` because the failing branch may not run again on the rerun.
"""

from __future__ import annotations

import logging

import streamlit as st

from nexus_core.errors import NexusError
from nexus_core.ui import links, show, state
from nexus_core.ui.show import plain

log = logging.getLogger("nexus.errors")

FRIENDLY_500 = (
    "Something went wrong on our side and this page could not be shown. "
    "Nothing you saved was lost. Reference: **{reference}** — quote it if you contact support."
)


def _report(reference: str, page: str | None, session_id: str | None, exc_type: str) -> None:
    from nexus_core.ui.guard import current_user
    from nexus_core.ui.resources import get_context

    ctx = get_context()
    user = current_user(ctx)
    if user is None:
        return
    item = ctx.incidents.report(
        user, reference=reference, page=page, chat_session_id=session_id, exception_type=exc_type
    )
    st.session_state[state.ERROR_REPORT_NOTICE] = (
        f"Thanks — your report of {reference} was filed as feedback #{item.id}; "
        "the team will look at it."
    )


def keep_submitted_draft(reason: str) -> None:
    """A chat message submitted in a run that failed is kept on screen for the next run."""
    draft = st.session_state.get(state.CHAT_INPUT)
    if isinstance(draft, str) and draft.strip():
        st.session_state[state.CHAT_REJECTED_DRAFT] = {"reason": reason, "text": draft}


def on_script_error(exc: Exception) -> bool:
    """Show a friendly 500 with a reference instead of a stack trace (or, for an expected
    ``NexusError`` no page caught, its message); a submitted chat message is kept."""
    from nexus_core.ui.guard import current_user
    from nexus_core.ui.resources import get_context

    if isinstance(exc, NexusError):  # expected (the database is down, …): say so, no incident
        log.warning("page stopped by %s", type(exc).__qualname__)
        keep_submitted_draft(str(exc))
        show.error(str(exc), icon="⚠️")
        return True
    keep_submitted_draft("The message was not sent: the page failed. Here it is to send again.")

    page = st.session_state.get(state.CURRENT_PAGE)
    session_id = links.chat_session()
    try:
        ctx = get_context()
        user = current_user(ctx)
        record = ctx.incidents.notify(
            exc, page=page, user_id=user.id if user else None, chat_session_id=session_id
        )
        reference = record.reference
    except Exception:  # the error path itself must never fail loudly
        log.exception("could not record an unexpected error")
        user, reference = None, "unavailable"
    st.error(FRIENDLY_500.format(reference=plain(reference)), icon="🛠️")
    if user is not None and reference != "unavailable":
        st.button(
            "Report this error",
            key=state.REPORT_ERROR_BUTTON,
            on_click=_report,
            args=(reference, page, session_id, type(exc).__qualname__),
        )
    return True


def show_report_notice() -> None:
    """Confirm a filed error report once, on the run after the button was pressed."""
    notice = st.session_state.pop(state.ERROR_REPORT_NOTICE, None)
    if notice:
        st.success(plain(notice), icon="✅")
