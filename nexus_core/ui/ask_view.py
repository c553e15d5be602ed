"""The Workbench's Ask box: a question in plain words becomes a draft SQL query, shown (and
editable) before anything runs; Run runs it in the workbench's sandbox; a failed run can be sent
back for a corrected draft; a draft joins the open notebook (or a new one) as a generated cell.

The draft on screen is in the URL (``links.ask_draft``: its audit event's id), so the link that
``/sql`` in chat gives reopens it. Its last run lives in this browser session only, like a cell's.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.ask.drafts import Draft, generated_cell_source
from nexus_core.ask.service import MAX_QUESTION_CHARS, AskService
from nexus_core.ask.templates import covered_summary
from nexus_core.errors import NexusError
from nexus_core.ui import links, notices, show
from nexus_core.ui.widgets.ask import generated_label
from nexus_core.ui.widgets.notebook import (
    OpenNotebook,
    change_cells,
    init_widget,
    result_table,
)
from nexus_core.ui.widgets.persona import provider_label
from nexus_core.users import UserView
from nexus_core.workbench.cells import MAX_TITLE_CHARS, Cell
from nexus_core.workbench.charts import build_chart
from nexus_core.workbench.results import QueryResult

FORM = "nexus_ask_form"
QUESTION = "nexus_ask_question"
SAMPLES = "nexus_ask_samples"
SQL_PREFIX = "nexus_ask_sql_"
RUN = "nexus_ask_run"
FIX = "nexus_ask_fix"
ADD = "nexus_ask_add"
SAVE_NEW = "nexus_ask_save_new"
OUTCOME = "nexus_ask_outcome"
NOTICE = "nexus_ask_notice"
BOX_LABEL = "💬 Ask in plain words"
PLACEHOLDER = "Replies by persona per day over the last 7 days"
SAMPLES_HELP = (
    "Send three rows of each view (values cut short) to the model with the schema. Off, the "
    "model sees only view and column names, types and descriptions."
)
SQL_HEIGHT = 200


@dataclass(frozen=True)
class AskOutcome:
    """The last run of a draft in this browser session: the SQL run and its result or error."""

    draft_id: int
    sql: str
    result: QueryResult | None = None
    error: str | None = None


def ask_box(ctx: AppContext, user: UserView, notebook: OpenNotebook | None) -> None:
    """The question form and, once there is one, the draft with Run, fix and add-to-notebook."""
    draft_id = links.ask_draft()
    with st.expander(BOX_LABEL, expanded=draft_id is not None or notebook is None):
        notices.show(NOTICE)
        service = notices.act(lambda: ctx.ask)
        if service is None:
            return
        drafted = _question_form(ctx, user, service)
        if drafted is not None:
            draft_id = drafted.id
        if draft_id is None:
            return
        draft = drafted or notices.act(lambda: service.recall(user, draft_id))
        if draft is not None:
            _draft(ctx, user, service, notebook, draft)


def _question_form(ctx: AppContext, user: UserView, service: AskService) -> Draft | None:
    with st.form(FORM, border=False):
        question = st.text_input(
            "Question", key=QUESTION, max_chars=MAX_QUESTION_CHARS, placeholder=PLACEHOLDER
        )
        samples = st.checkbox(
            "Allow sample rows", key=SAMPLES, help=SAMPLES_HELP, disabled=service.offline
        )
        submitted = st.form_submit_button("Draft SQL", icon=":material/auto_awesome:")
    if service.offline:
        show.caption(f"Model: {provider_label(ctx)} — answers from templates. {covered_summary()}")
    else:
        show.caption(
            f"Model: {provider_label(ctx)}. It sees the views' names, types and descriptions "
            "(rows only if you allow them); nothing runs until you press Run."
        )
    if not submitted:
        return None
    with st.spinner("Drafting…"):
        draft = notices.act(lambda: service.draft(user, question, allow_samples=samples))
    if draft is not None:
        links.show_ask_draft(draft.id)
        st.session_state.pop(OUTCOME, None)
    return draft


def _draft(
    ctx: AppContext,
    user: UserView,
    service: AskService,
    notebook: OpenNotebook | None,
    draft: Draft,
) -> None:
    generated_label(draft)
    key = f"{SQL_PREFIX}{draft.id}"
    init_widget(key, draft.sql)
    st.text_area("Draft SQL — nothing runs until you press Run", key=key, height=SQL_HEIGHT)
    sql = str(st.session_state[key])
    run, add, _ = st.columns([1, 2, 2])
    if run.button("Run", icon=":material/play_arrow:", key=RUN, type="primary"):
        with st.spinner("Running…"):
            st.session_state[OUTCOME] = _run(service, user, draft, sql)
    with add:
        _add_button(ctx, user, notebook, draft)
    outcome = st.session_state.get(OUTCOME)
    if isinstance(outcome, AskOutcome) and outcome.draft_id == draft.id:
        _show_outcome(service, user, draft, outcome)


def _run(service: AskService, user: UserView, draft: Draft, sql: str) -> AskOutcome:
    try:
        return AskOutcome(draft.id, sql, result=service.run(user, sql))
    except NexusError as exc:
        return AskOutcome(draft.id, sql, error=str(exc))


def _show_outcome(service: AskService, user: UserView, draft: Draft, outcome: AskOutcome) -> None:
    if outcome.error is not None:
        show.error(outcome.error, verbatim=True)  # DuckDB's message, carets aligned
        st.button(
            "Suggest a fix",
            icon=":material/build:",
            key=FIX,
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _fix(service, user, draft, outcome),),
        )
        return
    result = outcome.result
    assert result is not None
    result_table(
        result.display,
        row_count=result.row_count,
        elapsed_ms=result.elapsed_ms,
        truncated=result.truncated,
    )
    if draft.chart is not None and outcome.sql == draft.sql:
        try:
            show.chart(build_chart(result.display, draft.chart), width="stretch")
        except NexusError as exc:
            show.warning(exc)


def _fix(service: AskService, user: UserView, draft: Draft, outcome: AskOutcome) -> None:
    assert outcome.error is not None
    fixed = service.correct(user, draft.id, outcome.sql, outcome.error)
    links.show_ask_draft(fixed.id)
    st.session_state.pop(OUTCOME, None)


def _add_button(
    ctx: AppContext, user: UserView, notebook: OpenNotebook | None, draft: Draft
) -> None:
    if notebook is not None and notebook.editable:
        st.button(
            "Add to this notebook",
            icon=":material/add:",
            key=ADD,
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _add(ctx, user, notebook, _cell(draft)),),
        )
        return
    st.button(
        "Save as a new notebook",
        icon=":material/note_add:",
        key=SAVE_NEW,
        on_click=notices.act,
        kwargs={"key": NOTICE},
        args=(lambda: _save_new(ctx, user, draft, _cell(draft)),),
    )


def _cell(draft: Draft) -> Cell:
    """The draft as the user left it in the editor, as a SQL cell labelled as generated."""
    sql = str(st.session_state.get(f"{SQL_PREFIX}{draft.id}", draft.sql))
    return Cell(kind="sql", source=generated_cell_source(draft.question, sql), chart=draft.chart)


def _add(ctx: AppContext, user: UserView, notebook: OpenNotebook, cell: Cell) -> None:
    change_cells(ctx.notebooks, user, notebook, lambda cells: [*cells, cell])
    notices.leave(NOTICE, "Added to the end of this notebook as a generated cell.")


def _save_new(ctx: AppContext, user: UserView, draft: Draft, cell: Cell) -> None:
    title = f"Ask: {' '.join(draft.question.split())}"[:MAX_TITLE_CHARS].rstrip()
    notebook = ctx.notebooks.create(user, title, [cell])
    links.show_notebook(str(notebook.id))
    notices.leave(NOTICE, f"Saved as the notebook “{notebook.title}”.")
