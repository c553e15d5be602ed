"""Workbench notebooks: owners keep, save, share, duplicate and delete them; shared ones are
readable but not editable by other analysts; private ones stay invisible — on SQLite and
PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import Notebook, User
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserService, UserView
from nexus_core.workbench.cells import MAX_CELLS, MAX_TITLE_CHARS, Cell, ChartSpec
from nexus_core.workbench.notebooks import NOT_FOUND, NotebookService


@dataclass
class World:
    notebooks: NotebookService
    ana: UserView
    bob: UserView
    admin: UserView
    mia: UserView


def _user(db: Database, username: str, role: str) -> UserView:
    # Straight into the table: these tests never sign in, and bcrypt would cost seconds each.
    with db.session() as session:
        session.add(
            User(username=username, display_name=username.title(), password_hash="-", role=role)
        )
    return UserService(db).get(username)


@pytest.fixture
def world(db: Database) -> World:
    return World(
        notebooks=NotebookService(db),
        ana=_user(db, "ana", "analyst"),
        bob=_user(db, "bob", "analyst"),
        admin=_user(db, "root", "admin"),
        mia=_user(db, "mia", "member"),
    )


def _cells() -> list[Cell]:
    return [
        Cell(kind="markdown", source="# Latency by persona"),
        Cell(
            kind="sql",
            source="SELECT persona, avg(latency_ms) AS ms FROM messages GROUP BY 1",
            chart=ChartSpec(kind="bar", x="persona", y="ms", aggregation="mean"),
        ),
        Cell(kind="sql", source="SELECT count(*) FROM feedback"),
    ]


def test_a_created_notebook_is_private_editable_and_reads_back_its_cells_in_order(
    world: World,
) -> None:
    cells = _cells()
    created = world.notebooks.create(world.ana, "  Latency  ", cells)
    assert (created.title, created.shared, created.editable) == ("Latency", False, True)
    assert (created.owner_id, created.owner_name) == (world.ana.id, "Ana")
    opened = world.notebooks.get(world.ana, created.id)
    assert opened.cells == cells
    assert opened.cells[1].chart == ChartSpec(kind="bar", x="persona", y="ms", aggregation="mean")


def test_a_private_notebook_is_not_found_for_other_analysts_and_admins(world: World) -> None:
    private = world.notebooks.create(world.ana, "Mine", _cells())
    for other in (world.bob, world.admin):
        assert world.notebooks.list_for(other) == []
        # The same words as for a notebook that never existed: privacy leaks nothing.
        with pytest.raises(NotFound) as hidden:
            world.notebooks.get(other, private.id)
        assert str(hidden.value) == NOT_FOUND.format(id=private.id)
        with pytest.raises(NotFound) as missing:
            world.notebooks.get(other, 999_999)
        assert str(missing.value) == NOT_FOUND.format(id=999_999)
        with pytest.raises(NotFound):
            world.notebooks.save(other, private.id, "Stolen", [])
        with pytest.raises(NotFound):
            world.notebooks.delete(other, private.id)
        with pytest.raises(NotFound):
            world.notebooks.duplicate(other, private.id)


def test_a_shared_notebook_is_readable_but_not_editable_by_other_analysts(world: World) -> None:
    notebook = world.notebooks.create(world.ana, "Team metrics", _cells())
    world.notebooks.set_shared(world.ana, notebook.id, True)
    seen = world.notebooks.get(world.bob, notebook.id)
    assert (seen.title, seen.shared, seen.editable, seen.owner_name) == (
        "Team metrics",
        True,
        False,
        "Ana",
    )
    assert [n.id for n in world.notebooks.list_for(world.admin)] == [notebook.id]
    with pytest.raises(PermissionDenied, match="duplicate it"):
        world.notebooks.save(world.bob, notebook.id, "Mine now", [])
    with pytest.raises(PermissionDenied):
        world.notebooks.delete(world.bob, notebook.id)
    with pytest.raises(PermissionDenied):
        world.notebooks.set_shared(world.bob, notebook.id, False)
    assert world.notebooks.get(world.ana, notebook.id).title == "Team metrics"


def test_unsharing_hides_the_notebook_again(world: World) -> None:
    notebook = world.notebooks.create(world.ana, "Briefly public", [])
    world.notebooks.set_shared(world.ana, notebook.id, True)
    world.notebooks.set_shared(world.ana, notebook.id, False)
    with pytest.raises(NotFound):
        world.notebooks.get(world.bob, notebook.id)


def test_members_may_not_use_notebooks_at_all(world: World) -> None:
    shared = world.notebooks.create(world.ana, "Shared", [])
    world.notebooks.set_shared(world.ana, shared.id, True)
    calls = (
        lambda: world.notebooks.list_for(world.mia),
        lambda: world.notebooks.get(world.mia, shared.id),
        lambda: world.notebooks.create(world.mia, "Mine", []),
        lambda: world.notebooks.duplicate(world.mia, shared.id),
        lambda: world.notebooks.duplicate_cells(world.mia, "Starter", _cells()),
    )
    for call in calls:
        with pytest.raises(PermissionDenied, match="analysts and admins"):
            call()


def test_the_list_holds_own_and_shared_notebooks_most_recently_updated_first(
    world: World,
) -> None:
    first = world.notebooks.create(world.ana, "First", [])
    bobs_private = world.notebooks.create(world.bob, "Bob private", [])
    bobs_shared = world.notebooks.create(world.bob, "Bob shared", [])
    world.notebooks.set_shared(world.bob, bobs_shared.id, True)
    second = world.notebooks.create(world.ana, "Second", [])
    world.notebooks.save(world.ana, first.id, "First, edited", _cells())
    listed = world.notebooks.list_for(world.ana)
    assert [n.id for n in listed] == [first.id, second.id, bobs_shared.id]
    assert [n.editable for n in listed] == [True, True, False]
    assert bobs_private.id not in [n.id for n in listed]


def test_saving_replaces_title_and_cells_and_moves_updated_at(world: World) -> None:
    notebook = world.notebooks.create(world.ana, "Draft", _cells())
    reordered = [*reversed(_cells()[1:]), Cell(kind="markdown", source="Done.")]
    saved = world.notebooks.save(world.ana, notebook.id, "Final", reordered)
    assert saved.updated_at > notebook.updated_at
    reopened = world.notebooks.get(world.ana, notebook.id)
    assert (reopened.title, reopened.cells) == ("Final", reordered)


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "title"), ("   ", "title"), ("x" * (MAX_TITLE_CHARS + 1), f"{MAX_TITLE_CHARS}")],
)
def test_empty_or_over_long_titles_are_refused(world: World, title: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        world.notebooks.create(world.ana, title, [])
    notebook = world.notebooks.create(world.ana, "Fine", [])
    with pytest.raises(ValidationError, match=message):
        world.notebooks.save(world.ana, notebook.id, title, [])
    assert world.notebooks.get(world.ana, notebook.id).title == "Fine"


def test_malformed_cells_are_refused_and_nothing_is_stored(world: World, db: Database) -> None:
    twins = [Cell(kind="sql", source="SELECT 1", id="same"), Cell(kind="markdown", id="same")]
    charted_markdown = [Cell(kind="markdown", source="hi", chart=ChartSpec(x="a"))]
    too_many = [Cell(kind="markdown") for _ in range(MAX_CELLS + 1)]
    for cells, message in (
        (twins, "share an id"),
        (charted_markdown, "Only SQL cells"),
        (too_many, f"at most {MAX_CELLS}"),
    ):
        with pytest.raises(ValidationError, match=message):
            world.notebooks.create(world.ana, "Broken", cells)
    with db.session() as session:
        assert session.scalars(select(Notebook)).all() == []


def test_duplicating_a_shared_notebook_gives_the_viewer_a_private_copy(world: World) -> None:
    original = world.notebooks.create(world.ana, "Weekly SLO", _cells())
    world.notebooks.set_shared(world.ana, original.id, True)
    copy = world.notebooks.duplicate(world.bob, original.id)
    assert copy.id != original.id
    assert (copy.title, copy.owner_id, copy.shared, copy.editable) == (
        "Copy of Weekly SLO",
        world.bob.id,
        False,
        True,
    )
    assert [(c.kind, c.source, c.chart) for c in copy.cells] == [
        (c.kind, c.source, c.chart) for c in original.cells
    ]
    world.notebooks.save(world.bob, copy.id, "Bob's SLO", [])
    assert world.notebooks.get(world.ana, original.id).cells == original.cells


def test_duplicating_starter_cells_creates_a_notebook_owned_by_the_viewer(world: World) -> None:
    starter = _cells()
    copy = world.notebooks.duplicate_cells(world.admin, "Feedback overview", starter)
    assert (copy.title, copy.owner_id, copy.editable) == (
        "Copy of Feedback overview",
        world.admin.id,
        True,
    )
    assert [c.source for c in copy.cells] == [c.source for c in starter]
    assert world.notebooks.get(world.admin, copy.id) == copy


def test_the_copy_title_is_shortened_to_fit(world: World) -> None:
    long_title = "y" * MAX_TITLE_CHARS
    copy = world.notebooks.duplicate_cells(world.ana, long_title, [])
    assert len(copy.title) == MAX_TITLE_CHARS
    assert copy.title.startswith("Copy of y")


def test_deleting_removes_the_notebook_for_everyone(world: World) -> None:
    notebook = world.notebooks.create(world.ana, "Old", [])
    world.notebooks.set_shared(world.ana, notebook.id, True)
    world.notebooks.delete(world.ana, notebook.id)
    for viewer in (world.ana, world.bob):
        assert world.notebooks.list_for(viewer) == []
        with pytest.raises(NotFound):
            world.notebooks.get(viewer, notebook.id)


def test_create_share_copy_and_delete_are_audited(world: World, db: Database) -> None:
    notebook = world.notebooks.create(world.ana, "Audited", [])
    world.notebooks.set_shared(world.ana, notebook.id, True)
    world.notebooks.set_shared(world.ana, notebook.id, True)  # no change, no event
    copy = world.notebooks.duplicate(world.bob, notebook.id)
    world.notebooks.save(world.ana, notebook.id, "Audited, renamed", [])
    world.notebooks.delete(world.ana, notebook.id)
    trail = [
        (e.action, e.actor_name, e.details)
        for e in audit.for_target(db, "notebook", str(notebook.id))
    ]
    assert trail == [
        (audit.NOTEBOOK_CREATED, "ana", {"title": "Audited"}),
        (audit.NOTEBOOK_SHARED, "ana", {"title": "Audited", "shared": True}),
        (audit.NOTEBOOK_DELETED, "ana", {"title": "Audited, renamed", "shared": True}),
    ]
    (copied,) = audit.for_target(db, "notebook", str(copy.id))
    assert (copied.action, copied.actor_name, copied.details) == (
        audit.NOTEBOOK_CREATED,
        "bob",
        {"title": "Copy of Audited", "copied_from": notebook.id},
    )


def test_deleting_a_user_deletes_their_notebooks(world: World, db: Database) -> None:
    world.notebooks.create(world.bob, "Bob's", [])
    with db.session() as session:
        session.delete(session.get(User, world.bob.id))
    with db.session() as session:
        assert session.scalars(select(Notebook)).all() == []
