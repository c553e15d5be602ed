"""Saved workbench notebooks: who may read them, who may change them.

A notebook belongs to the analyst or admin who created it and is private until its owner shares
it. A shared notebook is readable by every analyst and admin, but only its owner may save, share
or delete it; others duplicate it to make a copy of their own. A notebook the viewer may not read
is reported as missing, so private notebooks do not reveal that they exist. Deleting is final
(the row goes; the audit trail keeps the title).

A notebook also travels as one Markdown file (``notebook_file``): imported as a new notebook of
its importer, exported by anyone who may read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import Notebook, User
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserView
from nexus_core.workbench.cells import MAX_TITLE_CHARS, Cell, cells_from_json, cells_to_json
from nexus_core.workbench.notebook_file import notebook_from_markdown, notebook_to_markdown
from nexus_core.workbench.parameters import (
    Parameter,
    parameters_from_json,
    parameters_to_json,
    validate_parameters,
)

NOTEBOOK_ROLES: Final = ("analyst", "admin")
COPY_PREFIX: Final = "Copy of "
NOT_FOUND: Final = "Notebook #{id} does not exist or is not shared with you."
TARGET_TYPE: Final = "notebook"


@dataclass(frozen=True)
class NotebookView:
    """A notebook as plain data, with whether the viewer may change it."""

    id: int
    owner_id: int
    owner_name: str
    title: str
    cells: list[Cell]
    shared: bool
    updated_at: datetime
    editable: bool
    parameters: list[Parameter] = field(default_factory=list)

    def to_markdown(self) -> str:
        """The notebook as a Markdown file (``notebook_file``)."""
        return notebook_to_markdown(self.title, self.parameters, self.cells)


def can_use_notebooks(user: UserView) -> bool:
    """Whether ``user`` may keep and read workbench notebooks."""
    return user.role in NOTEBOOK_ROLES and not user.disabled


def validate_title(title: str) -> str:
    """The title without surrounding spaces; refuses an empty or over-long one."""
    title = title.strip()
    if not title:
        raise ValidationError("Give the notebook a title.")
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationError(f"A notebook title has at most {MAX_TITLE_CHARS} characters.")
    return title


def validate_cells(cells: list[Cell]) -> list[Cell]:
    """The cells as they will be stored; refuses what ``cells_from_json`` would not read back."""
    return cells_from_json(cells_to_json(list(cells)))


def copy_title(title: str) -> str:
    """The title of a duplicate: "Copy of …", shortened to fit."""
    return (COPY_PREFIX + title.strip())[:MAX_TITLE_CHARS].rstrip()


def _require_notebook_user(viewer: UserView) -> None:
    if not can_use_notebooks(viewer):
        raise PermissionDenied("Only analysts and admins may use workbench notebooks.")


def _view(notebook: Notebook, owner: User, viewer: UserView | None) -> NotebookView:
    return NotebookView(
        id=notebook.id,
        owner_id=notebook.owner_id,
        owner_name=owner.display_name,
        title=notebook.title,
        cells=cells_from_json(notebook.cells),
        shared=notebook.shared,
        updated_at=notebook.updated_at,
        editable=viewer is not None and notebook.owner_id == viewer.id,
        parameters=parameters_from_json(notebook.parameters or []),
    )


class NotebookService:
    """Create, list, open, save, share, duplicate and delete workbench notebooks."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _visible(self, session: Session, viewer: UserView, notebook_id: int) -> Notebook:
        notebook = session.get(Notebook, notebook_id)
        if notebook is None or not (notebook.shared or notebook.owner_id == viewer.id):
            raise NotFound(NOT_FOUND.format(id=notebook_id))
        return notebook

    def _owned(self, session: Session, viewer: UserView, notebook_id: int) -> Notebook:
        notebook = self._visible(session, viewer, notebook_id)
        if notebook.owner_id != viewer.id:
            raise PermissionDenied(
                f"Only the owner can change {notebook.title!r}; duplicate it to edit a copy."
            )
        return notebook

    def _audit(
        self, session: Session, action: str, viewer: UserView, notebook: Notebook, **details: object
    ) -> None:
        audit.record(
            session,
            action,
            actor_id=viewer.id,
            actor_name=viewer.username,
            target_type=TARGET_TYPE,
            target_id=notebook.id,
            details={"title": notebook.title, **details},
        )

    def list_for(self, viewer: UserView) -> list[NotebookView]:
        """The viewer's notebooks and those others shared, most recently updated first."""
        _require_notebook_user(viewer)
        query = (
            select(Notebook, User)
            .join(User, User.id == Notebook.owner_id)
            .where(or_(Notebook.owner_id == viewer.id, Notebook.shared))
            .order_by(Notebook.updated_at.desc(), Notebook.id.desc())
        )
        with self.db.session() as session:
            return [_view(notebook, owner, viewer) for notebook, owner in session.execute(query)]

    def get(self, viewer: UserView, notebook_id: int) -> NotebookView:
        """One notebook the viewer owns or that was shared; ``NotFound`` otherwise."""
        _require_notebook_user(viewer)
        with self.db.session() as session:
            notebook = self._visible(session, viewer, notebook_id)
            return _view(notebook, notebook.owner, viewer)

    def create(
        self,
        viewer: UserView,
        title: str,
        cells: list[Cell],
        *,
        parameters: list[Parameter] | None = None,
        copied_from: int | None = None,
        imported: bool = False,
    ) -> NotebookView:
        """A new private notebook owned by the viewer."""
        _require_notebook_user(viewer)
        title, stored = validate_title(title), cells_to_json(validate_cells(cells))
        inputs = parameters_to_json(validate_parameters(parameters or []))
        with self.db.session() as session:
            notebook = Notebook(
                owner_id=viewer.id, title=title, cells=stored, parameters=inputs, shared=False
            )
            session.add(notebook)
            session.flush()
            source = {} if copied_from is None else {"copied_from": copied_from}
            if imported:
                source["imported"] = True
            self._audit(session, audit.NOTEBOOK_CREATED, viewer, notebook, **source)
            return _view(notebook, notebook.owner, viewer)

    def save(
        self,
        viewer: UserView,
        notebook_id: int,
        title: str,
        cells: list[Cell],
        parameters: list[Parameter] | None = None,
    ) -> NotebookView:
        """Replace the title and cells (and, given, the parameters) of a notebook the viewer
        owns."""
        _require_notebook_user(viewer)
        title, stored = validate_title(title), cells_to_json(validate_cells(cells))
        inputs = None if parameters is None else parameters_to_json(validate_parameters(parameters))
        with self.db.session() as session:
            notebook = self._owned(session, viewer, notebook_id)
            notebook.title, notebook.cells = title, stored
            if inputs is not None:
                notebook.parameters = inputs
            session.flush()
            return _view(notebook, notebook.owner, viewer)

    def import_markdown(
        self, viewer: UserView, text: str, *, fallback_title: str = "Imported notebook"
    ) -> NotebookView:
        """A new private notebook of the viewer's from a Markdown file (``notebook_file``)."""
        _require_notebook_user(viewer)
        read = notebook_from_markdown(text, fallback_title=fallback_title)
        return self.create(
            viewer, read.title, read.cells, parameters=read.parameters, imported=True
        )

    def export_markdown(self, viewer: UserView, notebook_id: int) -> str:
        """A notebook the viewer can read, as a Markdown file."""
        return self.get(viewer, notebook_id).to_markdown()

    def get_any(self, notebook_id: int) -> NotebookView:
        """Any notebook, whoever owns it, read-only: for the server's operator (``nexus
        notebooks export|run``), who can read the database anyway."""
        with self.db.session() as session:
            notebook = session.get(Notebook, notebook_id)
            if notebook is None:
                raise NotFound(f"Notebook #{notebook_id} does not exist.")
            return _view(notebook, notebook.owner, None)

    def set_shared(self, viewer: UserView, notebook_id: int, shared: bool) -> NotebookView:
        """Share a notebook the viewer owns with every analyst and admin, or make it private."""
        _require_notebook_user(viewer)
        with self.db.session() as session:
            notebook = self._owned(session, viewer, notebook_id)
            if notebook.shared != shared:
                notebook.shared = shared
                session.flush()
                self._audit(session, audit.NOTEBOOK_SHARED, viewer, notebook, shared=shared)
            return _view(notebook, notebook.owner, viewer)

    def duplicate(self, viewer: UserView, notebook_id: int) -> NotebookView:
        """A private copy, owned by the viewer, of any notebook the viewer can read."""
        original = self.get(viewer, notebook_id)
        return self.duplicate_cells(
            viewer,
            original.title,
            original.cells,
            parameters=original.parameters,
            copied_from=original.id,
        )

    def duplicate_cells(
        self,
        viewer: UserView,
        title: str,
        cells: list[Cell],
        *,
        parameters: list[Parameter] | None = None,
        copied_from: int | None = None,
    ) -> NotebookView:
        """A new notebook titled "Copy of <title>" from cells not stored yet (a starter)."""
        copies = [cell.duplicate() for cell in cells]
        return self.create(
            viewer, copy_title(title), copies, parameters=parameters, copied_from=copied_from
        )

    def delete(self, viewer: UserView, notebook_id: int) -> None:
        """Delete a notebook the viewer owns, for good."""
        _require_notebook_user(viewer)
        with self.db.session() as session:
            notebook = self._owned(session, viewer, notebook_id)
            self._audit(session, audit.NOTEBOOK_DELETED, viewer, notebook, shared=notebook.shared)
            session.delete(notebook)
