"""Widgets of the Feedback explorer: filters, the table with bulk status change, charts, exports
and the detail view of one item (its conversation, history and triage controls).

The item being viewed lives in the URL (``links.explorer_url``, the link the Audit page uses) so
a link reopens it; ``st.session_state`` only holds widget values and a one-shot notice.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import partial
from typing import Final, Literal

import streamlit as st

from nexus_core.analytics.feedback_charts import backlog_figure, category_figure, persona_figure
from nexus_core.app_context import AppContext
from nexus_core.feedback import CATEGORIES, PRIORITIES
from nexus_core.feedback.filters import NO_PERSONA, SORTS, FeedbackFilters, FeedbackRow
from nexus_core.feedback.triage import (
    EXPORT_MAX_ROWS,
    STATUS_LABELS,
    STATUSES,
    FeedbackDetail,
    TriageService,
)
from nexus_core.ui import links, notices, show
from nexus_core.ui.dates import day_range
from nexus_core.ui.paging import TablePage, current_page, pager
from nexus_core.users import UserView

# Widget and session keys of the explorer (per-item controls add the item id).
CATEGORY_FILTER = "nexus_explorer_categories"
PRIORITY_FILTER = "nexus_explorer_priorities"
STATUS_FILTER = "nexus_explorer_statuses"
PERSONA_FILTER = "nexus_explorer_personas"
DATES = "nexus_explorer_dates"
AUTHOR = "nexus_explorer_author"
SEARCH = "nexus_explorer_search"
SORT = "nexus_explorer_sort"
BUCKET = "nexus_explorer_bucket"
TABLE_PREFIX = "nexus_explorer_table_"
TABLE_PAGE = "nexus_explorer_page"
TABLE_PAGE_SIZE = 200
OPEN = "nexus_explorer_open"
CLOSE = "nexus_explorer_close"
BULK_STATUS = "nexus_explorer_bulk_status"
BULK_APPLY = "nexus_explorer_bulk_apply"
STATUS_PICK_PREFIX = "nexus_explorer_status_"
STATUS_APPLY_PREFIX = "nexus_explorer_status_apply_"
ASSIGNEE_PREFIX = "nexus_explorer_assignee_"
ASSIGN_PREFIX = "nexus_explorer_assign_"
NOTE_FORM_PREFIX = "nexus_explorer_note_"
NOTICE = "nexus_explorer_notice"
# The Items | Charts tabs: the charts are built and drawn only while their tab is open.
TABS = "nexus_explorer_tabs"

TIME_FORMAT = "%Y-%m-%d %H:%M"
NOBODY = "(nobody)"
DESCRIPTION_PREVIEW_CHARS = 120


def _status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def filters_sidebar(
    ctx: AppContext, triage: TriageService, user: UserView
) -> tuple[FeedbackFilters, str, Literal["day", "week"]]:
    """The filter, sort and chart widgets in the sidebar, read into filters."""
    with st.sidebar:
        st.subheader("Filters")
        categories = st.multiselect("Category", CATEGORIES, key=CATEGORY_FILTER)
        priorities = st.multiselect("Priority", PRIORITIES, key=PRIORITY_FILTER)
        statuses = st.multiselect("Status", STATUSES, format_func=_status_label, key=STATUS_FILTER)
        personas = st.multiselect(
            "Persona", [*triage.personas(user), NO_PERSONA], key=PERSONA_FILTER
        )
        created = day_range("Created (UTC days)", key=DATES)
        authors = [u.username for u in ctx.users.list()]
        author = st.selectbox("Author", authors, index=None, placeholder="Anyone", key=AUTHOR)
        text = st.text_input("Search descriptions", key=SEARCH, placeholder="Words in the text…")
        sort = st.selectbox("Sort", list(SORTS), format_func=SORTS.__getitem__, key=SORT)
        bucket = st.radio("Charts per", ("day", "week"), horizontal=True, key=BUCKET)
    filters = FeedbackFilters(
        categories=tuple(categories),
        priorities=tuple(priorities),
        statuses=tuple(statuses),
        personas=tuple(personas),
        date_from=created.first,
        date_to=created.last,
        author=author,
        text=text,
    )
    return filters, sort, "week" if bucket == "week" else "day"


def show_notice() -> None:
    """The outcome of the last change, once, on the run after it."""
    notices.show(NOTICE)


def _close_item() -> None:
    st.session_state[OPEN] = None  # a callback runs before the widget is drawn again
    links.show_explorer_item(None)


# --- the table ------------------------------------------------------------------------------


def _table_row(row: FeedbackRow) -> dict[str, object]:
    text = row.description
    if len(text) > DESCRIPTION_PREVIEW_CHARS:
        text = text[:DESCRIPTION_PREVIEW_CHARS] + "…"
    return {
        "#": row.id,
        "Created (UTC)": row.created_at.strftime(TIME_FORMAT),
        "Category": row.category,
        "Priority": row.priority,
        "Status": _status_label(row.status),
        "Persona": row.persona or "",
        "Author": row.author or "",
        "Assignee": row.assignee or "",
        "About": row.source,
        "Description": text,
    }


def _table_key(rows: list[FeedbackRow]) -> str:
    # A new set of rows gets a new table, so a selection never carries over to other items.
    digest = hashlib.sha1(",".join(str(r.id) for r in rows).encode(), usedforsecurity=False)
    return TABLE_PREFIX + digest.hexdigest()[:12]


def _open_single_selection(key: str, ids: list[int]) -> None:
    rows = st.session_state[key].selection.rows
    if len(rows) == 1:
        links.show_explorer_item(ids[rows[0]])


def table_page(filters: FeedbackFilters, sort: str, total: int) -> TablePage:
    """Which page of the matching items to show; other filters or another sort start at 1."""
    return current_page(TABLE_PAGE, (filters, sort), total, TABLE_PAGE_SIZE)


def feedback_table(rows: list[FeedbackRow], page: TablePage) -> list[int]:
    """One page of the matching items (sortable by any column); the ids of the selected rows."""
    shown = f"{len(rows):,} of {page.total:,}" if page.total > len(rows) else f"{page.total:,}"
    noun = "item" if page.total == 1 else "items"
    show.caption(f"{shown} {noun} · select rows to change their status together")
    if not rows:
        st.info("No feedback matches these filters.")
        return []
    if page.count > 1:
        pager(TABLE_PAGE, page, "item")
    key = _table_key(rows)
    ids = [r.id for r in rows]
    event = st.dataframe(
        [_table_row(r) for r in rows],
        key=key,
        hide_index=True,
        on_select=partial(_open_single_selection, key, ids),
        selection_mode="multi-row",
        column_config={"#": st.column_config.NumberColumn(width="small")},
    )
    choices = {r.id: f"#{r.id} · {r.category} · {r.description[:60]}" for r in rows}
    st.selectbox(
        "Open an item",
        list(choices),
        index=None,
        format_func=choices.__getitem__,
        placeholder="Pick an item, or select one row",
        key=OPEN,
        on_change=lambda: links.show_explorer_item(st.session_state[OPEN]),
    )
    return [ids[i] for i in event.selection.rows]


def bulk_actions(triage: TriageService, user: UserView, selected: list[int]) -> None:
    """Move every selected item to one status; say which ones could not move and why."""
    if not selected:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    status = left.selectbox(
        f"Set the status of {len(selected)} selected",
        STATUSES,
        format_func=_status_label,
        key=BULK_STATUS,
    )
    if not right.button("Apply", key=BULK_APPLY):
        return

    def summary(result: tuple[list[int], dict[int, str]]) -> str:
        changed, refused = result
        unchanged = len(selected) - len(changed) - len(refused)
        parts = [f"{len(changed)} moved to {_status_label(status)}"]
        if unchanged:
            parts.append(f"{unchanged} already were")
        parts += [f"#{fid} refused: {reason}" for fid, reason in refused.items()]
        return "; ".join(parts) + "."

    moved = notices.act(
        lambda: triage.bulk_set_status(selected, status, user), success=summary, key=NOTICE
    )
    if moved is not None:
        st.rerun()


FREEZE_FORM: Final = "nexus_explorer_freeze"


def freeze_selected(
    ctx: AppContext, user: UserView, rows: list[FeedbackRow], selected: list[int]
) -> None:
    """Turn the replies the selected items are about into test-set cases (admins may freeze
    anyone's; others only their own — the service says which it refused)."""
    message_ids = [r.message_id for r in rows if r.id in selected and r.message_id is not None]
    if not message_ids:
        return
    with st.form(FREEZE_FORM, clear_on_submit=True):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        name = left.text_input(
            f"Add the {len(message_ids)} replies they are about to a test set",
            value="Frozen from feedback",
            max_chars=120,
        )
        if right.form_submit_button("Add to test set"):
            notices.act(
                lambda: ctx.freezer.freeze(user, name, message_ids=message_ids),
                success=lambda done: f"Added {done.added} cases to {done.test_set.name}.",
            )


def downloads(triage: TriageService, user: UserView, filters: FeedbackFilters, total: int) -> None:
    """CSV and Parquet of every matching item, built only when clicked."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    too_many = total > EXPORT_MAX_ROWS
    left, right = st.columns(2)
    left.download_button(
        "Download CSV",
        data=lambda: triage.export_csv(filters, viewer=user),
        file_name=f"nexus-feedback-{stamp}.csv",
        mime="text/csv",
        icon="⬇️",
        on_click="ignore",
        disabled=too_many or total == 0,
    )
    right.download_button(
        "Download Parquet",
        data=lambda: triage.export_parquet(filters, viewer=user),
        file_name=f"nexus-feedback-{stamp}.parquet",
        mime="application/vnd.apache.parquet",
        icon="⬇️",
        on_click="ignore",
        disabled=too_many or total == 0,
    )
    if too_many:
        st.caption(f"Exports hold at most {EXPORT_MAX_ROWS:,} items; narrow the filters.")


def charts(
    triage: TriageService, user: UserView, filters: FeedbackFilters, bucket: Literal["day", "week"]
) -> None:
    """Count by category per day or week, by persona, and open vs resolved over time."""
    stats = notices.act(lambda: triage.stats(filters, viewer=user, bucket=bucket))
    if stats is None:
        return
    show.chart(category_figure(stats.by_category, bucket))
    left, right = st.columns(2)
    with left:
        show.chart(persona_figure(stats.by_persona))
    with right:
        show.chart(backlog_figure(stats.backlog, bucket))


# --- one item -------------------------------------------------------------------------------


def detail(triage: TriageService, user: UserView, feedback_id: int) -> None:
    """The item, its linked conversation (read-only), its history and the triage controls."""
    found = notices.act(lambda: triage.detail(feedback_id, user))
    if found is None:
        return
    item = found.item
    title, close = st.columns([5, 1], vertical_alignment="bottom")
    title.subheader(f"Feedback #{item.id:d}")
    close.button("Close", key=CLOSE, icon="✖️", on_click=_close_item)
    fields = st.columns(4)
    fields[0].metric("Status", show.plain(_status_label(item.status)))
    fields[1].metric("Priority", show.plain(item.priority))
    fields[2].metric("Category", show.plain(item.category))
    fields[3].metric("Assignee", show.plain(item.assignee or NOBODY))
    show.caption(
        f"From {item.author or 'a deleted user'} · {item.created_at.strftime(TIME_FORMAT)} UTC"
        f" · about {item.source}" + (f" · persona {item.persona}" if item.persona else "")
    )
    with st.container(border=True):
        # Text the author typed for the team: shown as typed, not as Markdown.
        show.text(item.description or "(no description)")
    _conversation(found)
    controls, history = st.columns([2, 3])
    with controls:
        _status_controls(triage, user, found)
        _assignee_controls(triage, user, found)
        _note_form(triage, user, item.id)
    with history:
        st.markdown("**History**")
        entries = notices.act(lambda: triage.history(feedback_id, user)) or []
        st.dataframe(
            [
                {"When (UTC)": e.at.strftime(TIME_FORMAT), "Who": e.actor or "", "What": e.summary}
                for e in entries
            ],
            hide_index=True,
            column_config={"What": st.column_config.TextColumn(width="large")},
        )


def _conversation(found: FeedbackDetail) -> None:
    if found.conversation_deleted:
        st.caption("The linked conversation was deleted by its owner.")
    if not found.conversation:
        return
    with st.expander(f"Conversation: {show.plain(found.session_title)}", icon="💬"):
        for message in found.conversation:
            role = "user" if message.role == "user" else "assistant"
            with st.chat_message(role):
                if message.role == "error":
                    show.error(message.content)
                else:
                    show.markdown(message.content)
                if message.id == found.item.message_id:
                    st.caption("⬆️ The reply this feedback is about")


def _status_controls(triage: TriageService, user: UserView, found: FeedbackDetail) -> None:
    item = found.item
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    new = left.selectbox(
        "Move to",
        found.next_statuses,
        format_func=_status_label,
        key=f"{STATUS_PICK_PREFIX}{item.id}",
    )
    if right.button("Update status", key=f"{STATUS_APPLY_PREFIX}{item.id}", type="primary"):
        changed = notices.act(
            lambda: triage.set_status(item.id, new, user),
            success=lambda changed: f"Feedback #{item.id} is now {_status_label(changed.status)}.",
            key=NOTICE,
        )
        if changed is not None:
            st.rerun()


def _assignee_controls(triage: TriageService, user: UserView, found: FeedbackDetail) -> None:
    item = found.item
    options = [NOBODY, *triage.triagers(user)]
    current = options.index(item.assignee) if item.assignee in options else 0
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    chosen = left.selectbox("Assignee", options, index=current, key=f"{ASSIGNEE_PREFIX}{item.id}")
    if right.button("Assign", key=f"{ASSIGN_PREFIX}{item.id}"):
        assignee = None if chosen == NOBODY else chosen
        saved = notices.act(
            lambda: triage.assign(item.id, assignee, user),
            success=lambda saved: f"Feedback #{item.id} is assigned to {saved.assignee or NOBODY}.",
            key=NOTICE,
        )
        if saved is not None:
            st.rerun()


def _note_form(triage: TriageService, user: UserView, feedback_id: int) -> None:
    with st.form(f"{NOTE_FORM_PREFIX}{feedback_id}", clear_on_submit=True):
        text = st.text_area("Internal note", placeholder="Only analysts and admins see notes.")
        if st.form_submit_button("Add note"):
            added = notices.act(
                lambda: triage.add_note(feedback_id, text, user),
                success=f"Note added to feedback #{feedback_id}.",
                key=NOTICE,
            )
            if added is not None:
                st.rerun()
