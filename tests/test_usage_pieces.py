"""Usage over the hourly rows stored once per log piece equals the plain SQL over the events."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.log_store import EventStore
from nexus_core.cost import usage
from nexus_core.cost.usage import usage_reports
from nexus_core.cost.usage_pieces import usage_records
from nexus_core.ops.events import ApiEventLogger

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HISTORY = timedelta(days=3)
# Today's query before the stored rows, over every event of the window: the reference.
PLAIN_REPORT_SQL = """
SELECT {columns}, GROUPING({names}) AS grouping_id,
    count(*) AS replies,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    CAST(coalesce(sum(CAST(cost_usd AS DECIMAL(38, 12))), 0) AS DOUBLE) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies,
    count(DISTINCT chat_session_id) AS sessions
FROM events WHERE event = 'job_success' AND ts >= $start AND ts < $end {only_user}
GROUP BY GROUPING SETS ({sets}, ())
ORDER BY grouping_id, cost_usd DESC, replies DESC, {names} NULLS LAST
"""
PLAIN_KEYS = {**usage.KEY_COLUMNS, "day": "CAST(date_trunc('day', ts) AS DATE)"}
BREAKDOWNS = (("user",), ("persona", "day"), ("model", "channel"), ("day",))
KEYS = ("user", "persona", "day", "model", "channel")


def plain_sql(only_user: bool) -> str:
    return PLAIN_REPORT_SQL.format(
        columns=", ".join(f"{PLAIN_KEYS[k]} AS {k}" for k in KEYS),
        names=", ".join(KEYS),
        sets=", ".join(f"({', '.join(b)})" for b in BREAKDOWNS),
        only_user="AND user_id = $user_id" if only_user else "",
    )


def session_id(rng: random.Random, sessions: list[str]) -> str | None:
    """Canonical UUIDs mostly; the same UUID in capitals (a different id), plain names, none."""
    pick = rng.random()
    if pick < 0.05:
        return None
    if pick < 0.1:
        return rng.choice(sessions).upper()
    if pick < 0.2:
        return f"s-{rng.randint(1, 40)}"
    return rng.choice(sessions)


def write_replies(path: Path, seed: int = 18) -> None:
    """Replies (and other events) every ~50 s over ``HISTORY`` before ``NOW``: users, personas,
    models, user and synthetic channels, prompt runs, unpriced replies, missing token counts."""
    rng = random.Random(seed)
    sessions = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60)]
    at = {"now": NOW - HISTORY}
    with ApiEventLogger(path, max_bytes=300_000, clock=lambda: at["now"]) as log:
        while at["now"] < NOW + timedelta(minutes=20):
            at["now"] += timedelta(seconds=rng.randint(1, 100), microseconds=rng.randint(0, 999))
            session = session_id(rng, sessions)
            log.emit("request_success", chat_session_id=session, request_id="r", latency_ms=9.0)
            cost = None if rng.random() < 0.15 else round(rng.random() / 1000, 9)
            log.emit(
                "job_success",
                chat_session_id=session,
                user_id=rng.choice([1, 2, 3, 4, None]),
                job_id=f"j{rng.getrandbits(32)}",
                persona=rng.choice(["Coder", "Writer", None]),
                model=rng.choice(["m-flash", "m-pro"]),
                channel=rng.choice(["chat", "chat", "compare", "eval", "cli", None]),
                run_id=f"run-{rng.randint(1, 3)}" if rng.random() < 0.1 else None,
                input_tokens=rng.choice([None, rng.randint(1, 5000)]),
                cached_input_tokens=rng.randint(0, 100),
                output_tokens=rng.randint(1, 900),
                reasoning_tokens=rng.choice([None, 0, rng.randint(1, 50)]),
                cost_usd=cost,
            )


def stored_rows_files(cache: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.glob("rollup-*")}


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "api_events.log"
    write_replies(path)
    return path


def both_ways(
    snapshot: EventSnapshot, start: datetime, end: datetime, user_id: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    params = {} if user_id is None else {"user_id": user_id}
    new_sql = usage._report_sql(KEYS, BREAKDOWNS, user_id is not None)
    new = usage_records(snapshot, new_sql, start, end, params)
    plain = snapshot.records(plain_sql(user_id is not None), start, end, params)
    return new, plain


@pytest.mark.parametrize("traffic", ["all", "user", "synthetic"])
def test_usage_from_stored_hours_equals_the_plain_sql_at_any_window(
    log_path: Path, tmp_path: Path, traffic: str
) -> None:
    rng = random.Random(7)
    with EventStore(log_path, tmp_path / "cache", segment_rows=512) as store:
        snapshot = store.refresh().of_traffic(traffic)
        parquet = [p for p in snapshot.pieces if p.parquet]
        assert len(parquet) > 4 and snapshot.hot_rows > 0
        ends = [NOW + timedelta(minutes=25), NOW - timedelta(minutes=rng.randint(1, 59))]
        ends += [NOW - timedelta(hours=30, seconds=rng.randint(1, 3599), microseconds=1)]
        windows = [timedelta(days=30), timedelta(hours=2), timedelta(minutes=20)]
        windows += [timedelta(hours=rng.randint(3, 60), seconds=rng.randint(1, 3599))]
        checked = 0
        for end in ends:
            for window in windows:
                for user_id in (None, 2):
                    new, plain = both_ways(snapshot, end - window, end, user_id)
                    assert new == plain, (end, window, user_id)
                    checked += sum(r["replies"] for r in plain if r["grouping_id"] == 31)
        stored = stored_rows_files(tmp_path / "cache")
        assert len(stored) == len(parquet)  # every Parquet piece's rows were stored and read
    assert checked > 1000


def test_distinct_sessions_count_a_uuid_and_its_capitalised_spelling_apart(
    tmp_path: Path,
) -> None:
    session = "0c0ffee0-0000-4000-8000-000000000001"
    log_path = tmp_path / "logs" / "api_events.log"
    at = {"now": NOW - timedelta(hours=5)}
    with ApiEventLogger(log_path, max_bytes=400, clock=lambda: at["now"]) as log:
        for spelling in (session, session.upper(), session, "plain", None):
            at["now"] += timedelta(minutes=30)
            log.emit("job_success", chat_session_id=spelling, user_id=1, cost_usd=0.5)
    with EventStore(log_path, tmp_path / "cache") as store:
        (report,) = usage_reports(store, "1d", NOW, [["user"]])
        assert any(p.parquet for p in store.refresh().pieces)
    assert (report["total"]["sessions"], report["total"]["replies"]) == (3, 5)


def report_in_a_new_process(data: Path) -> str:
    code = (
        "import json, sys; from datetime import datetime; "
        "from nexus_core.analytics.log_store import EventStore; "
        "from nexus_core.cost.usage import usage_reports; "
        "store = EventStore(sys.argv[1], sys.argv[2], segment_rows=512); "
        "print(json.dumps(usage_reports(store, '2d', datetime.fromisoformat(sys.argv[3]), "
        "[['user'], ['persona', 'day']])))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(data / "logs" / "api_events.log"), str(data / "cache"), NOW.isoformat()]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_a_new_process_reads_the_stored_rows_without_writing_them_again(
    log_path: Path, tmp_path: Path
) -> None:
    with EventStore(log_path, tmp_path / "cache", segment_rows=512) as store:
        first = usage_reports(store, "2d", NOW, [["user"], ["persona", "day"]])
    stored = stored_rows_files(tmp_path / "cache")
    assert stored

    again = report_in_a_new_process(tmp_path)

    assert json.loads(again) == json.loads(json.dumps(first))
    assert stored_rows_files(tmp_path / "cache") == stored  # read, not written again


def test_stored_rows_of_a_deleted_piece_go_when_new_rows_are_written(
    log_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with EventStore(log_path, cache, segment_rows=512, orphan_grace_seconds=0) as store:
        usage_reports(store, "30d", NOW, [["user"]])
        sorted(log_path.parent.glob("api_events.log.*"))[-1].unlink()  # the oldest
        snapshot = store.refresh()  # its compacted piece is deleted at once (no grace)

        usage_reports(snapshot.of_traffic("user"), "30d", NOW, [["user"]])

    pieces = {Path(p.source).stem for p in snapshot.pieces if p.parquet}
    stems = {p.name.removeprefix("rollup-").rpartition("-")[0] for p in cache.glob("rollup-*")}
    assert stems == pieces
