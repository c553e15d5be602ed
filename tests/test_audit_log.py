"""Reading the audit trail: filters, paging, the action list and a CSV no spreadsheet runs."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from nexus_core import audit
from nexus_core.audit import AuditQuery
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent
from nexus_core.errors import ValidationError

DAY = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def add(db: Database, action: str, *, actor: str | None = "ada", **kwargs: object) -> None:
    with db.session() as session:
        audit.record(session, action, actor_name=actor, **kwargs)  # type: ignore[arg-type]


def backdate(db: Database, action: str, when: datetime) -> None:
    with db.session() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.action == action).values(created_at=when)
        )


@pytest.fixture
def trail(db: Database) -> Database:
    add(db, audit.SIGN_IN, actor="mia")
    add(db, audit.SESSION_CREATED, actor="mia", target_type="session", target_id="abc-123")
    add(db, audit.SESSION_RENAMED, actor="mia", target_type="session", target_id="abc-123")
    add(db, audit.FEEDBACK_SUBMITTED, actor="mia", target_type="feedback", target_id=7)
    add(db, audit.USER_CREATED, target_type="user", target_id=2, details={"role": "member"})
    add(db, audit.PERSONA_EDITED, target_type="persona", target_id=1)
    return db


def actions_of(records: list[audit.AuditRecord]) -> list[str]:
    return [r.action for r in records]


def test_search_returns_newest_first_and_filters_combine(trail: Database) -> None:
    everything = audit.search(trail, AuditQuery(), limit=50)
    assert actions_of(everything)[0] == audit.PERSONA_EDITED
    assert actions_of(everything)[-1] == audit.SIGN_IN
    by_mia = AuditQuery(actor="mia", action_prefix="session.")
    assert actions_of(audit.search(trail, by_mia, limit=50)) == [
        audit.SESSION_RENAMED,
        audit.SESSION_CREATED,
    ]
    exact = AuditQuery(actions=(audit.SIGN_IN, audit.USER_CREATED))
    assert set(actions_of(audit.search(trail, exact, limit=50))) == {
        audit.SIGN_IN,
        audit.USER_CREATED,
    }
    one_target = AuditQuery(target_type="session", target_id="abc-123")
    assert audit.count(trail, one_target) == 2
    assert audit.count(trail, AuditQuery(target_type="feedback", target_id="7")) == 1
    assert audit.count(trail, AuditQuery(actor="nobody")) == 0


def test_time_range_includes_the_start_and_excludes_the_end(trail: Database) -> None:
    backdate(trail, audit.SIGN_IN, DAY - timedelta(days=1))
    backdate(trail, audit.USER_CREATED, DAY)
    backdate(trail, audit.PERSONA_EDITED, DAY + timedelta(days=1))
    window = AuditQuery(created_from=DAY, created_to=DAY + timedelta(days=1))
    assert actions_of(audit.search(trail, window, limit=50)) == [audit.USER_CREATED]
    since = AuditQuery(created_from=DAY + timedelta(hours=1))
    assert audit.SIGN_IN not in actions_of(audit.search(trail, since, limit=50))


def test_time_filters_must_be_aware_and_in_order() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        AuditQuery(created_from=datetime(2024, 5, 1))
    with pytest.raises(ValidationError, match="after its end"):
        AuditQuery(created_from=DAY, created_to=DAY - timedelta(seconds=1))


def test_pages_do_not_overlap_and_count_matches(db: Database) -> None:
    for n in range(7):
        add(db, audit.SIGN_IN, details={"n": n})
    query = AuditQuery(actions=(audit.SIGN_IN,))
    assert audit.count(db, query) == 7
    pages = [audit.search(db, query, limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [r.details["n"] for page in pages for r in page]
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_actions_and_actors_list_what_occurs(trail: Database) -> None:
    assert audit.actions(trail) == sorted(
        {
            audit.SIGN_IN,
            audit.SESSION_CREATED,
            audit.SESSION_RENAMED,
            audit.FEEDBACK_SUBMITTED,
            audit.USER_CREATED,
            audit.PERSONA_EDITED,
        }
    )
    assert audit.actors(trail) == ["ada", "mia"]


def test_csv_export_has_every_matching_row_and_neutralises_formulas(db: Database) -> None:
    add(db, audit.SIGN_IN_FAILED, actor='=HYPERLINK("http://evil")', details={"reason": "x"})
    add(db, audit.SIGN_IN_FAILED, actor="+1", details={})
    add(db, audit.SIGN_IN_FAILED, actor="-2")
    add(db, audit.SIGN_IN_FAILED, actor="@sum")
    add(db, audit.SIGN_IN_FAILED, actor="\tpadded")
    add(db, audit.SIGN_IN, actor="plain")
    data = audit.export_csv(db, AuditQuery(action_prefix="auth."))
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert list(rows[0]) == list(audit.CSV_COLUMNS)
    assert [r["actor_name"] for r in rows] == [
        "plain",
        "'\tpadded",
        "'@sum",
        "'-2",
        "'+1",
        '\'=HYPERLINK("http://evil")',
    ]
    assert rows[-1]["details"] == '{"reason": "x"}'
    assert rows[0]["action"] == audit.SIGN_IN
    only_failures = audit.export_csv(db, AuditQuery(actions=(audit.SIGN_IN_FAILED,)))
    assert len(list(csv.DictReader(io.StringIO(only_failures.decode("utf-8"))))) == 5


def test_the_reading_module_offers_no_way_to_change_the_trail() -> None:
    public = {name for name in dir(audit) if not name.startswith("_")}
    assert {"record", "search", "count", "export_csv"} <= public
    assert not {n for n in public if n.startswith(("update", "delete", "remove", "edit"))}
