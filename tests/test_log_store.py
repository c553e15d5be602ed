"""The event store: compaction of rotated files, tailing of the live file, skipped lines, races."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nexus_core.analytics.log_store import EventStore
from nexus_core.ops.events import ApiEventLogger, log_files, read_events

START = datetime(2026, 11, 27, 9, 0, 0)
FAR_PAST = datetime(2000, 1, 1)
FAR_FUTURE = datetime(2100, 1, 1)
SMALL_LOG_BYTES = 3_000  # a rotation every dozen events or so


class StepClock:
    """A clock for the logger that moves forward by ``step`` on every call."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(seconds=7)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "api_events.log"


@pytest.fixture
def logger(log_path: Path) -> Iterator[ApiEventLogger]:
    with ApiEventLogger(log_path, max_bytes=SMALL_LOG_BYTES, clock=StepClock()) as event_logger:
        yield event_logger


@pytest.fixture
def store(log_path: Path, tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(log_path, tmp_path / "cache") as event_store:
        yield event_store


def emit_requests(logger: ApiEventLogger, count: int, offset: int = 0) -> None:
    for n in range(offset, offset + count):
        logger.emit("request_start", request_id=f"r{n}", attempt=1, model="m", provider="p")
        logger.emit("request_success", request_id=f"r{n}", attempt=1, latency_ms=100.0 + n)


def append_raw(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def stored_request_ids(store: EventStore) -> list[str]:
    frame = store.events_frame(FAR_PAST, FAR_FUTURE)
    return frame.filter(frame["event"] == "request_start")["request_id"].to_list()


def logged_request_ids(path: Path) -> list[str]:
    events, _ = read_events(path)
    return [e["request_id"] for e in events if e["event"] == "request_start"]


def test_events_of_rotated_and_live_files_come_back_oldest_first(
    logger: ApiEventLogger, log_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 40)
    assert len(log_files(log_path)) > 3

    frame = store.events_frame(FAR_PAST, FAR_FUTURE)

    events, _ = read_events(log_path)
    assert frame.height == len(events)
    assert frame["event"].to_list() == [e["event"] for e in events]
    assert frame["latency_ms"].drop_nulls().to_list() == [
        e["latency_ms"] for e in events if "latency_ms" in e
    ]
    assert frame["ts"].is_sorted()


def test_garbage_torn_and_non_object_lines_are_skipped_and_counted(
    logger: ApiEventLogger, log_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 10)
    rotated = log_files(log_path)[0]
    append_raw(rotated, b"not json\n[1, 2]\n")  # in a rotated file
    emit_requests(logger, 1, offset=10)
    append_raw(log_path, b'{"no_ts": true}\n\xff\xfe garbage\n{"ts":"2026-11-27T09:5')  # torn

    snapshot = store.refresh()

    events, skipped = read_events(log_path)
    assert skipped == 4
    # The object without ``ts`` is JSON to read_events but not an event here.
    assert snapshot.skipped_lines == skipped + 1
    assert snapshot.rows == len(events) - 1


def test_a_torn_last_line_counts_until_the_writer_ends_it_and_then_stays_counted(
    logger: ApiEventLogger, log_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 1)
    append_raw(log_path, b'{"ts":"2026-11-27T09:00:09.000Z","event":"request_st')
    assert store.refresh().skipped_lines == 1

    emit_requests(logger, 1, offset=1)  # the writer terminates the torn line first

    snapshot = store.refresh()
    assert snapshot.skipped_lines == 1
    assert stored_request_ids(store) == ["r0", "r1"]


def test_no_log_file_gives_an_empty_snapshot(store: EventStore) -> None:
    snapshot = store.refresh()

    assert (snapshot.rows, snapshot.skipped_lines, snapshot.pieces) == (0, 0, ())
    assert store.events_frame(FAR_PAST, FAR_FUTURE).height == 0


def test_an_empty_log_file_gives_an_empty_snapshot(log_path: Path, store: EventStore) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.touch()

    frame = store.events_frame(FAR_PAST, FAR_FUTURE)

    assert frame.height == 0
    assert "latency_ms" in frame.columns
    assert store.refresh().skipped_lines == 0


def test_window_includes_its_start_and_excludes_its_end(log_path: Path, store: EventStore) -> None:
    at = datetime(2026, 11, 27, 10, 0, 0)
    with ApiEventLogger(log_path, clock=lambda: at) as logger:
        logger.emit("job_start", job_id="edge")

    assert store.events_frame(at, at + timedelta(minutes=1))["job_id"].to_list() == ["edge"]
    assert store.events_frame(at - timedelta(minutes=1), at).height == 0


def test_rotated_files_are_compacted_once_and_renames_do_not_recompact(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 30)
    rotated = len(log_files(log_path)) - 1
    store.refresh()
    assert store.compactions == rotated

    store.refresh()
    emit_requests(logger, 8, offset=30)  # .1 -> .2 … and a new .1
    store.refresh()

    assert store.compactions == len(log_files(log_path)) - 1
    assert len(list((tmp_path / "cache").glob("events-*.parquet"))) == store.compactions
    assert stored_request_ids(store) == logged_request_ids(log_path)


def test_a_new_store_reuses_the_compacted_files(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    emit_requests(logger, 30)
    with EventStore(log_path, tmp_path / "cache") as first:
        expected = stored_request_ids(first)

    with EventStore(log_path, tmp_path / "cache") as second:
        assert stored_request_ids(second) == expected
        assert second.compactions == 0


def test_parts_compacted_before_run_id_existed_are_compacted_again_and_read_with_new_ones(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    logger.emit("job_start", job_id="j1", run_id="run-1")
    emit_requests(logger, 30)
    with EventStore(log_path, cache) as first:
        first.refresh()
        compacted = first.compactions
    # The cache as the previous version wrote it: Parquet parts without run_id, manifest 1.
    with duckdb.connect() as con:
        for part in cache.glob("events-*.parquet"):
            old = part.with_suffix(".old")
            con.execute(
                f"COPY (SELECT * EXCLUDE (run_id) FROM read_parquet('{part}')) "
                f"TO '{old}' (FORMAT parquet)"
            )
            old.replace(part)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    logger.emit("job_start", job_id="j2", run_id="run-2")  # a new live line

    with EventStore(log_path, cache) as second:
        snapshot = second.refresh()
        frame = snapshot.events_frame(FAR_PAST, FAR_FUTURE)
        assert second.compactions == compacted > 0

    starts = frame.filter(frame["event"] == "job_start")
    assert starts["run_id"].to_list() == ["run-1", "run-2"]
    assert stored_request_ids_of(frame) == logged_request_ids(log_path)
    files = ", ".join(f"'{p.source}'" for p in snapshot.pieces if p.parquet)
    with duckdb.connect() as con:  # read by column name, as the workbench does
        (tagged,) = con.execute(f"SELECT count(run_id) FROM read_parquet([{files}])").fetchone()
    assert tagged == 1


def stored_request_ids_of(frame: pl.DataFrame) -> list[str]:
    return frame.filter(frame["event"] == "request_start")["request_id"].to_list()


def test_manifest_keeps_each_parts_time_range_and_skipped_lines(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 12)
    append_raw(log_files(log_path)[0], b"garbage\n")

    store.refresh()

    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    by_source = {part["source"]: part for part in manifest["parts"]}
    oldest = by_source[log_files(log_path)[0].name]
    assert oldest["skipped"] == 1
    assert oldest["min_ts"] <= oldest["max_ts"]
    assert sum(p["rows"] for p in manifest["parts"]) + store.refresh().hot_rows <= 24


def test_new_live_lines_are_read_incrementally(
    logger: ApiEventLogger, log_path: Path, store: EventStore
) -> None:
    emit_requests(logger, 3)
    assert store.refresh().rows == 6

    emit_requests(logger, 2, offset=3)

    assert store.refresh().rows == 10
    assert stored_request_ids(store) == [f"r{n}" for n in range(5)]


def test_hot_rows_freeze_into_segments_that_queries_still_see(
    log_path: Path, tmp_path: Path
) -> None:
    with (
        ApiEventLogger(log_path, clock=StepClock()) as logger,
        EventStore(log_path, tmp_path / "cache", segment_rows=8) as store,
    ):
        for batch in range(4):
            emit_requests(logger, 5, offset=batch * 5)
            store.refresh()

        snapshot = store.refresh()
        assert len(snapshot.pieces) >= 4
        assert snapshot.rows == 40
        assert stored_request_ids(store) == [f"r{n}" for n in range(20)]


def test_rotation_between_refreshes_loses_and_duplicates_nothing(
    logger: ApiEventLogger, log_path: Path, store: EventStore
) -> None:
    for batch in range(6):
        emit_requests(logger, 4, offset=batch * 4)
        assert stored_request_ids(store) == logged_request_ids(log_path)


def test_rotation_after_listing_makes_the_refresh_start_again(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    emit_requests(logger, 10)
    calls = []

    def list_then_rotate(path: Path) -> list[Path]:
        listing = log_files(path)
        if not calls:
            emit_requests(logger, 10, offset=10)  # rotates after we listed
        calls.append(listing)
        return listing

    with EventStore(log_path, tmp_path / "cache", list_files=list_then_rotate) as store:
        snapshot = store.refresh()
        assert len(calls) == 2
        assert snapshot.vanished_files == 0
        assert stored_request_ids(store) == logged_request_ids(log_path)


def test_a_file_vanishing_once_between_listing_and_reading_is_retried(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    emit_requests(logger, 10)
    phantom = log_path.with_name(log_path.name + ".99")
    calls = []

    def stale_once(path: Path) -> list[Path]:
        calls.append(path)
        return [phantom, *log_files(path)] if len(calls) == 1 else log_files(path)

    with EventStore(log_path, tmp_path / "cache", list_files=stale_once) as store:
        assert store.refresh().vanished_files == 0
        assert len(calls) == 2


def test_a_file_that_keeps_vanishing_is_skipped_and_counted(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    emit_requests(logger, 10)
    phantom = log_path.with_name(log_path.name + ".99")

    with EventStore(
        log_path, tmp_path / "cache", list_files=lambda path: [phantom, *log_files(path)]
    ) as store:
        snapshot = store.refresh()

        assert snapshot.vanished_files == 1
        assert stored_request_ids(store) == logged_request_ids(log_path)


def test_parts_of_deleted_rotated_files_are_dropped_after_the_grace_period(
    logger: ApiEventLogger, log_path: Path, tmp_path: Path
) -> None:
    emit_requests(logger, 20)
    cache = tmp_path / "cache"
    with EventStore(log_path, cache, orphan_grace_seconds=0) as store:
        store.refresh()
        before = len(list(cache.glob("events-*.parquet")))
        log_files(log_path)[0].unlink()

        store.refresh()

        assert len(list(cache.glob("events-*.parquet"))) == before - 1
        assert len(json.loads((cache / "manifest.json").read_text())["parts"]) == before - 1
        assert stored_request_ids(store) == logged_request_ids(log_path)


def test_concurrent_refreshes_and_queries_while_writing_and_rotating(
    log_path: Path, tmp_path: Path
) -> None:
    errors: list[BaseException] = []
    writer_done = threading.Event()
    with (
        ApiEventLogger(log_path, max_bytes=SMALL_LOG_BYTES, clock=StepClock()) as logger,
        EventStore(log_path, tmp_path / "cache", segment_rows=16) as store,
    ):

        def write() -> None:
            emit_requests(logger, 150)
            writer_done.set()

        def read() -> None:
            try:
                while not writer_done.is_set():
                    store.events_frame(FAR_PAST, FAR_FUTURE)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [
            threading.Thread(target=write),
            *(threading.Thread(target=read) for _ in range(3)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert stored_request_ids(store) == logged_request_ids(log_path)


# --- the live file's parsed stretches, shared across processes -------------------------------


def live_stretch_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("live-*.parquet"))


def read_once_by_another_process(log_path: Path, cache: Path) -> Path:
    """Log 30 requests and read them with a store that then closes, leaving its stretches."""
    with ApiEventLogger(log_path, clock=StepClock()) as logger:
        emit_requests(logger, 30)
    with EventStore(log_path, cache, segment_rows=8) as first:
        first.refresh()
    return cache


def test_a_new_store_adopts_the_live_file_stretches_and_parses_only_the_rest(
    log_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with ApiEventLogger(log_path, clock=StepClock()) as logger:
        emit_requests(logger, 30)
        with EventStore(log_path, cache, segment_rows=8) as first:
            first.refresh()
            assert first.live_bytes_parsed == log_path.stat().st_size
        assert live_stretch_files(cache)  # frozen rows were written as Parquet
        emit_requests(logger, 3, offset=30)  # appended after the first store stopped

        with EventStore(log_path, cache, segment_rows=8) as second:
            assert stored_request_ids(second) == logged_request_ids(log_path)
            assert second.refresh().rows == 66
            # Only the bytes after the last stretch, not the whole file, were parsed again.
            assert 0 < second.live_bytes_parsed < log_path.stat().st_size / 2


def test_stretches_of_a_rewritten_file_are_not_adopted(log_path: Path, tmp_path: Path) -> None:
    cache = read_once_by_another_process(log_path, tmp_path / "cache")
    # The same inode, truncated and written again with other events at least as long.
    with ApiEventLogger(log_path, clock=StepClock(start=START + timedelta(days=1))) as logger:
        log_path.write_bytes(b"")
        emit_requests(logger, 31, offset=100)

    with EventStore(log_path, cache, segment_rows=8) as second:
        assert stored_request_ids(second) == [f"r{n}" for n in range(100, 131)]
        assert second.live_bytes_parsed == log_path.stat().st_size


def test_a_missing_or_unreadable_stretch_record_means_parsing_again(
    log_path: Path, tmp_path: Path
) -> None:
    cache = read_once_by_another_process(log_path, tmp_path / "cache")
    live_stretch_files(cache)[0].unlink()  # the first stretch: nothing can be adopted
    with EventStore(log_path, cache, segment_rows=8) as second:
        assert stored_request_ids(second) == logged_request_ids(log_path)
        assert second.live_bytes_parsed == log_path.stat().st_size

    (cache / "live.json").write_text("{not json")
    with EventStore(log_path, cache, segment_rows=8) as third:
        assert stored_request_ids(third) == logged_request_ids(log_path)
        assert third.live_bytes_parsed == log_path.stat().st_size


def test_a_rotated_file_is_compacted_from_its_stretches_which_are_then_deleted(
    log_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    logger = ApiEventLogger(log_path, max_bytes=6_000, clock=StepClock())
    with EventStore(log_path, cache, segment_rows=4, orphan_grace_seconds=0) as store:
        emit_requests(logger, 10)
        store.refresh()
        before_rotation = set(live_stretch_files(cache))
        assert before_rotation
        emit_requests(logger, 30, offset=10)  # rotates: the old live file becomes .1, ...
        assert len(log_files(log_path)) > 1
        assert stored_request_ids(store) == logged_request_ids(log_path)
        store.refresh()  # a second change of file: retired stretches past the grace go
        emit_requests(logger, 30, offset=40)
        assert stored_request_ids(store) == logged_request_ids(log_path)
    logger.close()
    assert not before_rotation & set(live_stretch_files(cache))
