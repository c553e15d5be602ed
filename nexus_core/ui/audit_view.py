"""Widgets of the Audit page: the filters, one page of events with links, and the CSV download."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import streamlit as st

from nexus_core import audit, audit_chain
from nexus_core.app_context import AppContext
from nexus_core.audit import AuditQuery, AuditRecord
from nexus_core.audit_chain import ChainReport
from nexus_core.ui import links, notices, show
from nexus_core.ui.dates import day_range
from nexus_core.ui.paging import current_page, pager

# Widget and session keys of the Audit page.
ACTOR = "nexus_audit_actor"
KIND = "nexus_audit_kind"
ACTIONS = "nexus_audit_actions"
TARGET_TYPE = "nexus_audit_target_type"
TARGET_ID = "nexus_audit_target_id"
DATES = "nexus_audit_dates"
PAGE = "nexus_audit_page"
PREVIOUS = f"{PAGE}_previous"
NEXT = f"{PAGE}_next"
VERIFY = "nexus_audit_verify"

PAGE_SIZE = 50
KINDS = {
    "auth.": "Sign-in and sign-out",
    "session.": "Chat sessions",
    "feedback.": "Feedback",
    "user.": "Users",
    "persona.": "Personas",
    "error.": "Error reports",
    "ask.": "Generated SQL (Ask)",
}
TARGET_TYPES = ("session", "feedback", "user", "persona")


def audit_filters(ctx: AppContext) -> AuditQuery:
    """The filter widgets, read into an ``AuditQuery``."""
    first, second, third = st.columns(3)
    actor = first.selectbox(
        "Actor", audit.actors(ctx.db), index=None, placeholder="Anyone", key=ACTOR
    )
    kind = second.selectbox(
        "Kind",
        list(KINDS),
        index=None,
        format_func=KINDS.__getitem__,
        placeholder="Everything",
        key=KIND,
    )
    actions = third.multiselect(
        "Actions", audit.actions(ctx.db), placeholder="Any action", key=ACTIONS
    )
    first, second, third = st.columns(3)
    target_type = first.selectbox(
        "Target type", TARGET_TYPES, index=None, placeholder="Any", key=TARGET_TYPE
    )
    target_id = second.text_input("Target id", key=TARGET_ID, placeholder="Session id, user id…")
    days = day_range("Days (UTC)", key=DATES, where=third)
    return AuditQuery(
        actor=actor,
        actions=tuple(actions),
        action_prefix=kind,
        target_type=target_type,
        target_id=target_id.strip() or None,
        created_from=days.start,
        created_to=days.end,
    )


def target_link(event: AuditRecord) -> str | None:
    """Where the app shows the target of ``event``: the chat session or the feedback item."""
    if not event.target_id:
        return None
    if event.target_type == "session":
        return links.chat_url(event.target_id)
    if event.target_type == "feedback":
        return links.explorer_url(event.target_id)
    return None


def _row(event: AuditRecord) -> dict[str, object]:
    target = f"{event.target_type} {event.target_id}" if event.target_type else ""
    return {
        "Time (UTC)": event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "Actor": event.actor_name or "",
        "Action": event.action,
        "Target": target.strip(),
        "Details": json.dumps(event.details, ensure_ascii=False, sort_keys=True)
        if event.details
        else "",
        "Open": target_link(event) or "",
    }


def audit_table(ctx: AppContext, query: AuditQuery) -> None:
    """One page of matching events, newest first, with previous/next and a CSV of all of them."""
    total = audit.count(ctx.db, query)
    page = current_page(PAGE, query, total, PAGE_SIZE)
    events = audit.search(ctx.db, query, limit=PAGE_SIZE, offset=page.offset)
    if not events:
        st.info("No audit events match these filters.")
    else:
        st.dataframe(
            [_row(e) for e in events],
            hide_index=True,
            width="stretch",
            column_config={"Open": st.column_config.LinkColumn("Open", display_text="Open ↗")},
        )
    pager(PAGE, page, "event")
    st.download_button(
        "Download CSV",
        data=lambda: audit.export_csv(ctx.db, query),
        file_name=f"nexus-audit-{datetime.now(UTC):%Y%m%d-%H%M}.csv",
        mime="text/csv",
        icon="⬇️",
        on_click="ignore",
        disabled=total == 0,
    )


def chain_check(ctx: AppContext) -> None:
    """Walk the hash chain on request and say whether it is intact or which event is bad."""
    if st.button("Verify the hash chain", key=VERIFY, icon="🔗", help=CHAIN_HELP):
        report = notices.act(lambda: audit_chain.verify(ctx.db))
        if report is not None:
            (show.success if report.intact else show.error)(chain_message(report))


CHAIN_HELP = (
    "Every event stores the SHA-256 of its content and of the event before it; walking the "
    "chain shows an event changed, deleted or inserted in the database directly."
)


def chain_message(report: ChainReport) -> str:
    """What a verification found, in one sentence."""
    if report.intact:
        return (
            f"No event of the hash chain was changed, deleted or slipped in: {report.events:,} "
            f"events up to head {report.head_hash[:16]}…. Compare that head with your last saved "
            "copy to rule out a cut-off end."
        )
    return f"The hash chain is broken: {report.problem}."
