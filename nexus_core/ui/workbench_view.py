"""Widgets of the Workbench: the notebook list, a notebook's cells (edit, run, chart) and results.

The open notebook lives in the URL (``links.workbench_url``: its id, or ``starter-<key>`` for a
starter) so a link reopens it, with the parameter values chosen. Every edit of one's own notebook
is saved at once, so there is no unsaved draft to lose; starter notebooks and notebooks others
share are read-only — run them, or duplicate one to edit it. Query results live in this browser
session only (they can be large and are cheap to compute again). A notebook is imported from and
exported to one Markdown file (``workbench.notebook_file``).
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from nexus_core.errors import NotFound, ValidationError
from nexus_core.ui import links, notices, show
from nexus_core.ui.show import plain
from nexus_core.ui.widgets.notebook import NOTICE, OpenNotebook, init_widget
from nexus_core.users import UserView
from nexus_core.workbench.cells import Cell
from nexus_core.workbench.data import view_schemas
from nexus_core.workbench.notebook_file import notebook_to_markdown
from nexus_core.workbench.notebooks import NotebookService, NotebookView
from nexus_core.workbench.results import DISPLAY_LIMIT
from nexus_core.workbench.starters import STARTER_NOTEBOOKS, StarterNotebook

# Widget and session keys (per-cell keys add notebook and cell).
STARTER_PREFIX = "starter-"
QUERY_KEY = "query"  # the read-only notebook of ``?sql=``
NEW_NOTEBOOK = "nexus_wb_new"
OPEN_PREFIX = "nexus_wb_open_"
TITLE_PREFIX = "nexus_wb_title_"
SHARE_PREFIX = "nexus_wb_share_"
RUN_ALL_PREFIX = "nexus_wb_run_all_"
DUPLICATE_PREFIX = "nexus_wb_duplicate_"
DELETE_PREFIX = "nexus_wb_delete_"
EXPORT_PREFIX = "nexus_wb_export_"
IMPORT_KEY = "nexus_wb_import"
IMPORT_OPEN = "nexus_wb_import_open"
SCHEMA_OPEN = "nexus_wb_schema_open"
IMPORT_LABEL = "Import a notebook"
SCHEMA_LABEL = "📚 Data you can query"
STARTER_PICK = "nexus_wb_starter_pick"
STARTER_PICK_LABEL = "Open a starter notebook"
IMPORT_TYPES = ("md", "markdown", "txt")

NEW_NOTEBOOK_TITLE = "Untitled notebook"
NEW_NOTEBOOK_SQL = (
    "SELECT event, count(*) AS events\nFROM events\nGROUP BY event\nORDER BY events DESC"
)


def show_notice() -> None:
    """The outcome of the last change, once, on the run after it."""
    notices.show(NOTICE)


def _open(key: str) -> None:
    links.show_notebook(key)


# --- the notebook list --------------------------------------------------------------------------


def sidebar(service: NotebookService, user: UserView) -> None:
    """Own notebooks, notebooks shared with the viewer, starters, and a button for a new one."""
    with st.sidebar:
        st.subheader("Notebooks")
        st.button(
            "New notebook",
            icon=":material/add:",
            key=NEW_NOTEBOOK,
            width="stretch",
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _create(service, user),),
        )
        listed = notices.act(lambda: service.list_for(user))
        if listed is None:
            return
        mine = [nb for nb in listed if nb.owner_id == user.id]
        others = [nb for nb in listed if nb.owner_id != user.id]
        _links("Mine", [(str(nb.id), nb.title) for nb in mine], "No notebooks yet.")
        _links(
            "Shared with me",
            [(str(nb.id), f"{nb.title} · {nb.owner_name}") for nb in others],
            "Nothing shared yet.",
        )
        _links("Starter notebooks", [(_starter_key(s), s.title) for s in STARTER_NOTEBOOKS], "")
        # Lazy: the uploader (and the browser's file-upload code) only while this is open.
        importing = st.expander(IMPORT_LABEL, key=IMPORT_OPEN, on_change="rerun")
        if importing.open:
            with importing:
                st.file_uploader(
                    "Import a notebook (.md)",
                    type=IMPORT_TYPES,
                    key=IMPORT_KEY,
                    help="A notebook file (README, “Notebooks”) becomes a new notebook of yours.",
                    on_change=notices.act,
                    kwargs={"key": NOTICE},
                    args=(lambda: _import(service, user),),
                )


def _import(service: NotebookService, user: UserView) -> None:
    upload = st.session_state.get(IMPORT_KEY)
    if upload is None:
        return
    try:
        text = upload.getvalue().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{upload.name} is not UTF-8 text; export it again.") from exc
    notebook = service.import_markdown(user, text, fallback_title=Path(upload.name).stem)
    _open(str(notebook.id))
    notices.leave(NOTICE, f"Imported “{notebook.title}” ({len(notebook.cells)} cells).")


def _links(heading: str, items: list[tuple[str, str]], empty: str) -> None:
    st.caption(plain(heading))
    if not items and empty:
        st.caption(f"_{plain(empty)}_")
    current = links.notebook()
    for key, label in items:
        st.button(
            plain(label),
            key=OPEN_PREFIX + key,
            type="primary" if key == current else "tertiary",
            on_click=_open,
            args=(key,),
        )


def _create(service: NotebookService, user: UserView) -> None:
    notebook = service.create(user, NEW_NOTEBOOK_TITLE, [Cell(kind="sql", source=NEW_NOTEBOOK_SQL)])
    _open(str(notebook.id))


def _starter_key(starter: StarterNotebook) -> str:
    return STARTER_PREFIX + starter.key


def opened(service: NotebookService, user: UserView) -> OpenNotebook | None:
    """The notebook the URL names, if the viewer may see it (else a note and None)."""
    query = links.workbench_sql()
    if query:
        return OpenNotebook(
            key=QUERY_KEY,
            title="Query from a link",
            cells=[Cell(kind="sql", source=query, id=f"{QUERY_KEY}-1")],
            editable=False,
            notebook_id=None,
            shared=True,
            owner_name="a link",
            description=(
                "A query written into the address you opened — alerts link their offending "
                "events this way, but anyone can write such a link: read it before you run it. "
                "It runs with your own access; duplicate it to edit."
            ),
        )
    key = links.notebook()
    if not key:
        return None
    for starter in STARTER_NOTEBOOKS:
        if key == _starter_key(starter):
            return OpenNotebook(
                key=key,
                title=starter.title,
                cells=list(starter.cells),
                editable=False,
                notebook_id=None,
                shared=True,
                owner_name="Nexus AI",
                description=starter.description,
                parameters=list(starter.parameters),
            )
    try:
        notebook = service.get(user, int(key))
    except (ValueError, NotFound):
        st.warning("That notebook does not exist or is not shared with you.")
        return None
    return _from_view(notebook)


def _from_view(notebook: NotebookView) -> OpenNotebook:
    return OpenNotebook(
        key=str(notebook.id),
        title=notebook.title,
        cells=list(notebook.cells),
        editable=notebook.editable,
        notebook_id=notebook.id,
        shared=notebook.shared,
        owner_name=notebook.owner_name,
        parameters=list(notebook.parameters),
    )


def schema_panel(user: UserView) -> None:
    """The views a query can read, with their columns and types (what this viewer may see);
    lazy, like the import: its text is built and drawn only while it is open."""
    panel = st.expander(SCHEMA_LABEL, key=SCHEMA_OPEN, on_change="rerun")
    if not panel.open:
        return
    with panel:
        st.caption(
            "Read-only views of the event log and the database, as of each run. Times are UTC. "
            "One SELECT (or WITH … SELECT) per cell; results over "
            f"{DISPLAY_LIMIT:,} rows are cut for display."
        )
        schemas = view_schemas(include_message_content=user.is_admin)
        for name, columns in schemas.items():
            listed = ", ".join(f"`{column}` {kind.lower()}" for column, kind in columns.items())
            st.markdown(f"**{name}** — {listed}")


def empty_state() -> None:
    """What the page shows before a notebook is opened: the starters described in one list and
    opened from one row of pills (two elements, not a row of columns and a button per starter)."""
    st.info(
        "Open a notebook from the sidebar, start a new one, or begin with a starter notebook. "
        "Cells are read-only SQL (DuckDB) over the views listed under "
        f"“{SCHEMA_LABEL}”, or markdown notes."
    )
    st.markdown("\n".join(_starter_line(starter) for starter in STARTER_NOTEBOOKS))
    st.pills(
        STARTER_PICK_LABEL,
        [starter.title for starter in STARTER_NOTEBOOKS],
        format_func=plain,
        key=STARTER_PICK,
        on_change=_open_picked,
    )


def _starter_line(starter: StarterNotebook) -> str:
    return f"- **{plain(starter.title)}** — {plain(starter.description)}"


def _open_picked() -> None:
    picked = st.session_state.get(STARTER_PICK)
    for starter in STARTER_NOTEBOOKS:
        if starter.title == picked:
            _open(_starter_key(starter))


# --- one notebook ------------------------------------------------------------------------------


def header(service: NotebookService, user: UserView, notebook: OpenNotebook) -> bool:
    """Title, sharing, duplicate and delete; returns whether "Run all" was pressed."""
    if notebook.editable:
        init_widget(TITLE_PREFIX + notebook.key, notebook.title)
        st.text_input(
            "Title",
            key=TITLE_PREFIX + notebook.key,
            on_change=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _save_title(service, user, notebook),),
        )
    else:
        show.subheader(notebook.title)
        what = "Starter notebook" if notebook.notebook_id is None else "Shared notebook"
        show.caption(f"{what} by {notebook.owner_name} · read-only; duplicate it to edit.")
        if notebook.description:
            show.caption(notebook.description)
    columns = st.columns(5)
    columns[4].download_button(
        "Export",
        icon=":material/download:",
        data=notebook_to_markdown(notebook.title, notebook.parameters, notebook.cells),
        file_name=_file_name(notebook.title),
        mime="text/markdown",
        key=EXPORT_PREFIX + notebook.key,
        help="The notebook as one Markdown file, to keep in version control or import again.",
    )
    run_all = columns[0].button(
        "Run all", icon=":material/play_arrow:", key=RUN_ALL_PREFIX + notebook.key, type="primary"
    )
    columns[1].button(
        "Duplicate",
        icon=":material/content_copy:",
        key=DUPLICATE_PREFIX + notebook.key,
        on_click=notices.act,
        kwargs={"key": NOTICE},
        args=(lambda: _duplicate(service, user, notebook),),
    )
    if notebook.editable and notebook.notebook_id is not None:
        notebook_id = notebook.notebook_id
        share_key = SHARE_PREFIX + notebook.key
        init_widget(share_key, notebook.shared)
        columns[2].toggle(
            "Shared (read-only)",
            key=share_key,
            help="Other analysts and admins can open and run it, not change it.",
            on_change=notices.act,
            kwargs={"key": NOTICE},
            args=(
                lambda: service.set_shared(user, notebook_id, bool(st.session_state[share_key])),
            ),
        )
        with columns[3].popover("Delete", icon=":material/delete:"):
            st.write("Delete this notebook for good?")
            st.button(
                "Delete notebook",
                key=DELETE_PREFIX + notebook.key,
                on_click=notices.act,
                kwargs={"key": NOTICE},
                args=(lambda: _delete(service, user, notebook_id),),
            )
    return run_all


def _file_name(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "notebook"
    return f"{slug[:60]}.md"


def _save_title(service: NotebookService, user: UserView, notebook: OpenNotebook) -> None:
    assert notebook.notebook_id is not None
    current = service.get(user, notebook.notebook_id)
    title = str(st.session_state[TITLE_PREFIX + notebook.key])
    service.save(user, notebook.notebook_id, title, current.cells)


def _duplicate(service: NotebookService, user: UserView, notebook: OpenNotebook) -> None:
    if notebook.notebook_id is None:
        copy = service.duplicate_cells(
            user, notebook.title, notebook.cells, parameters=notebook.parameters
        )
    else:
        copy = service.duplicate(user, notebook.notebook_id)
    _open(str(copy.id))
    notices.leave(NOTICE, f"Duplicated as “{copy.title}” — this copy is yours to edit.")


def _delete(service: NotebookService, user: UserView, notebook_id: int) -> None:
    service.delete(user, notebook_id)
    links.show_notebook(None)
    notices.leave(NOTICE, "Notebook deleted.")
