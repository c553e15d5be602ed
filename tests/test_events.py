"""The JSON-lines event log: record shape, torn lines, rotation and concurrent writers."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_core.ops.events import (
    ApiEventLogger,
    EventName,
    EventSink,
    ListEventSink,
    format_ts,
    log_files,
    read_events,
)
from nexus_core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TS_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FIXED_NOW = datetime(2026, 11, 27, 19, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))


def fixed_clock() -> datetime:
    return FIXED_NOW


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "api_events.log"


@pytest.fixture
def logger(log_path: Path):
    with ApiEventLogger(log_path, clock=fixed_clock) as event_logger:
        yield event_logger


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- timestamps -------------------------------------------------------------------------------


def test_timestamp_is_utc_rfc3339_with_milliseconds_and_z(logger: ApiEventLogger) -> None:
    logger.emit(EventName.JOB_START, job_id="j1")
    (event,), skipped = read_events(logger.path)
    assert skipped == 0
    assert TS_PATTERN.match(event["ts"])
    assert event["ts"] == "2026-11-27T17:30:00.123Z"


def test_format_ts_treats_naive_datetimes_as_utc() -> None:
    assert format_ts(datetime(2026, 1, 2, 3, 4, 5, 999_999)) == "2026-01-02T03:04:05.999Z"


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.timezones(),
        allow_imaginary=False,
    )
)
def test_format_ts_names_the_same_instant_to_the_millisecond(dt: datetime) -> None:
    text = format_ts(dt)
    assert TS_PATTERN.match(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert timedelta(0) <= dt - parsed < timedelta(milliseconds=1)


# --- record shape ---------------------------------------------------------------------------


def test_record_starts_with_ts_event_session_and_user_then_fields(
    logger: ApiEventLogger,
) -> None:
    session = uuid.uuid4()
    logger.emit(
        EventName.REQUEST_SUCCESS,
        chat_session_id=str(session),
        user_id=7,
        request_id="r1",
        attempt=1,
        latency_ms=812,
        status_code=200,
        tokens_in=12,
        tokens_out=40,
    )
    (line,) = raw_lines(logger.path)
    assert line.endswith(b"}\n") and b", " not in line and b'": ' not in line
    record = json.loads(line)
    assert list(record) == [
        "ts",
        "event",
        "chat_session_id",
        "user_id",
        "request_id",
        "attempt",
        "latency_ms",
        "status_code",
        "tokens_in",
        "tokens_out",
    ]
    assert record["chat_session_id"] == str(session)
    assert record["tokens_in"] == 12 and record["tokens_out"] == 40


def test_missing_session_and_user_are_written_as_null(logger: ApiEventLogger) -> None:
    logger.emit("sign_in")
    (event,), _ = read_events(logger.path)
    assert event["chat_session_id"] is None and event["user_id"] is None


def test_secret_looking_fields_are_dropped_but_token_counts_kept(logger: ApiEventLogger) -> None:
    sink = ListEventSink(clock=fixed_clock)
    fields = {
        "api_key": "AIza-secret",
        "GEMINI_API_KEY": "AIza-secret",
        "client_secret": "s3cr3t",
        "password": "hunter2",
        "access_token": "tok",
        "tokens_in": 3,
        "tokens_out": 5,
        "model": "gemini-flash-latest",
    }
    logger.emit(EventName.REQUEST_SUCCESS, **fields)
    sink.emit(EventName.REQUEST_SUCCESS, **fields)
    text = logger.path.read_text()
    for secret in ("AIza-secret", "s3cr3t", "hunter2", '"tok"'):
        assert secret not in text
    (written,), _ = read_events(logger.path)
    assert written == sink.events[0]
    assert {k: written[k] for k in ("tokens_in", "tokens_out", "model")} == {
        "tokens_in": 3,
        "tokens_out": 5,
        "model": "gemini-flash-latest",
    }


def test_fields_cannot_override_the_timestamp(logger: ApiEventLogger) -> None:
    logger.emit(EventName.ERROR, ts="1999-01-01T00:00:00.000Z", error_type="bug")
    (event,), _ = read_events(logger.path)
    assert event["ts"] == "2026-11-27T17:30:00.123Z" and event["error_type"] == "bug"


def test_values_json_cannot_encode_become_strings_and_datetimes_get_ts_format(
    logger: ApiEventLogger,
) -> None:
    job_id = uuid.uuid4()
    logger.emit(EventName.JOB_ENQUEUED, job_id=job_id, at=FIXED_NOW, where=Path("/x"))
    (event,), _ = read_events(logger.path)
    assert event["job_id"] == str(job_id)
    assert event["at"] == "2026-11-27T17:30:00.123Z"
    assert event["where"] == "/x"


@settings(max_examples=50, deadline=None)
@given(text=st.text())
def test_any_text_field_stays_on_one_line_and_round_trips(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "api_events.log"
        with ApiEventLogger(path) as event_logger:
            event_logger.emit(EventName.ERROR, message=text)
        assert len(raw_lines(path)) == 1
        (event,), skipped = read_events(path)
    assert skipped == 0 and event["message"] == text


# --- torn lines and the reader --------------------------------------------------------------


def test_torn_last_line_gets_a_newline_before_the_next_record_and_reader_skips_it(
    logger: ApiEventLogger,
) -> None:
    logger.emit(EventName.JOB_START, job_id="before")
    with logger.path.open("ab") as fh:  # a writer that crashed mid-line
        fh.write(b'{"ts":"2026-11-27T17:30:00.123Z","event":"job_su')
    logger.emit(EventName.JOB_SUCCESS, job_id="after")

    lines = raw_lines(logger.path)
    assert len(lines) == 3 and all(line.endswith(b"\n") for line in lines)
    events, skipped = read_events(logger.path)
    assert [e["job_id"] for e in events] == ["before", "after"]
    assert skipped == 1


def test_reader_skips_and_counts_lines_that_are_not_json_objects(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    good = b'{"ts":"2026-11-27T17:30:00.123Z","event":"job_start"}\n'
    log_path.write_bytes(good + b"garbage\n" + b"[1, 2]\n" + b"\n" + b"\xff\xfe{}\n" + good)
    events, skipped = read_events(log_path)
    assert len(events) == 2 and skipped == 4


def test_reader_of_a_missing_log_returns_nothing(log_path: Path) -> None:
    assert read_events(log_path) == ([], 0)
    assert log_files(log_path) == []


# --- rotation -------------------------------------------------------------------------------


def test_rotation_at_max_bytes_keeps_backups_and_reader_reads_in_order(log_path: Path) -> None:
    max_bytes = 400
    with ApiEventLogger(log_path, max_bytes=max_bytes, backups=3, clock=fixed_clock) as lg:
        for seq in range(40):
            lg.emit(EventName.JOB_START, job_id=f"job-{seq:03d}")

    files = log_files(log_path)
    assert [p.name for p in files] == [
        "api_events.log.3",
        "api_events.log.2",
        "api_events.log.1",
        "api_events.log",
    ]
    assert not log_path.with_name("api_events.log.4").exists()
    assert all(p.stat().st_size <= max_bytes for p in files)
    events, skipped = read_events(log_path)
    seqs = [int(e["job_id"].removeprefix("job-")) for e in events]
    assert skipped == 0
    assert seqs == list(range(40 - len(seqs), 40))  # oldest dropped, no gaps, in order


def test_rotation_removes_rotated_files_beyond_a_lowered_backups_count(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    for n in (1, 2, 5):
        log_path.with_name(f"api_events.log.{n}").write_text(f'{{"old":{n}}}\n')
    with ApiEventLogger(log_path, max_bytes=150, backups=2) as lg:
        lg.emit(EventName.JOB_START, job_id="a")
        lg.emit(EventName.JOB_START, job_id="b")  # rotates: .1 → .2, live → .1, .2 and .5 go
    assert [p.name for p in log_files(log_path)] == [
        "api_events.log.2",
        "api_events.log.1",
        "api_events.log",
    ]
    events, _ = read_events(log_path)
    assert events[0] == {"old": 1} and [e.get("job_id") for e in events[1:]] == ["a", "b"]


def test_zero_backups_keeps_only_the_live_file(log_path: Path) -> None:
    with ApiEventLogger(log_path, max_bytes=150, backups=0) as lg:
        for seq in range(3):
            lg.emit(EventName.JOB_START, job_id=str(seq))
    assert log_files(log_path) == [log_path]
    assert [e["job_id"] for e in read_events(log_path)[0]] == ["2"]


def test_log_files_lists_rotated_oldest_first_then_live_and_ignores_others(
    log_path: Path,
) -> None:
    log_path.parent.mkdir(parents=True)
    for name in ("api_events.log", "api_events.log.1", "api_events.log.10", "api_events.log.2"):
        (log_path.parent / name).write_text("")
    for name in ("api_events.log.lock", "api_events.log.bak", "other.log.1"):
        (log_path.parent / name).write_text("")
    assert [p.name for p in log_files(log_path)] == [
        "api_events.log.10",
        "api_events.log.2",
        "api_events.log.1",
        "api_events.log",
    ]


def test_writer_reopens_the_live_file_after_another_writer_rotated_it(log_path: Path) -> None:
    with (
        ApiEventLogger(log_path, max_bytes=300, clock=fixed_clock) as first,
        ApiEventLogger(log_path, max_bytes=300, clock=fixed_clock) as second,
    ):
        first.emit(EventName.JOB_START, job_id="first-1")
        for seq in range(5):  # enough to rotate the file ``first`` has open
            second.emit(EventName.JOB_START, job_id=f"second-{seq}")
        first.emit(EventName.JOB_START, job_id="first-2")

    *rotated, live = log_files(log_path)
    assert rotated, "the second writer should have rotated the file"
    assert [json.loads(line)["job_id"] for line in raw_lines(live)][-1] == "first-2"
    assert all(b"first-2" not in p.read_bytes() for p in rotated)
    all_ids = [e["job_id"] for e in read_events(log_path)[0]]
    assert all_ids == ["first-1", *(f"second-{i}" for i in range(5)), "first-2"]


def test_a_record_larger_than_max_bytes_is_still_written_whole(log_path: Path) -> None:
    with ApiEventLogger(log_path, max_bytes=100, backups=2) as lg:
        lg.emit(EventName.ERROR, message="x" * 500)
        lg.emit(EventName.ERROR, message="y" * 500)
    events, skipped = read_events(log_path)
    assert [len(e["message"]) for e in events] == [500, 500] and skipped == 0


# --- failures never reach the caller --------------------------------------------------------


def test_missing_log_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "data" / "logs" / "api_events.log"
    with ApiEventLogger(path) as lg:
        lg.emit(EventName.SIGN_IN, user_id=1)
    assert len(read_events(path)[0]) == 1


def test_unwritable_log_is_reported_once_without_contents_and_never_raises(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_path.mkdir(parents=True)  # the log path is a directory: every open fails
    caplog.set_level(logging.INFO, logger="nexus.events")
    with ApiEventLogger(log_path) as lg:
        for _ in range(3):
            lg.emit(EventName.ERROR, message="private user text")
        warnings = [r for r in caplog.records if r.name == "nexus.events"]
        assert len(warnings) == 1
        assert "private user text" not in caplog.text

        log_path.rmdir()  # the disk recovers: the next event is written and that is said once
        lg.emit(EventName.ERROR, message="back")
    assert [e["message"] for e in read_events(log_path)[0]] == ["back"]
    assert len([r for r in caplog.records if r.name == "nexus.events"]) == 2


def test_log_under_a_regular_file_does_not_raise(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    with ApiEventLogger(tmp_path / "data" / "logs" / "api_events.log") as lg:
        lg.emit(EventName.JOB_START, job_id="j")


def test_from_settings_uses_the_configured_path_and_rotation(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path, log_max_bytes=1234, log_backups=4)
    with ApiEventLogger.from_settings(config) as lg:
        assert lg.path == tmp_path / "logs" / "api_events.log"
        assert (lg.max_bytes, lg.backups) == (1234, 4)


def test_close_then_emit_reopens_the_log(logger: ApiEventLogger) -> None:
    logger.emit(EventName.JOB_START, job_id="a")
    logger.close()
    logger.emit(EventName.JOB_START, job_id="b")
    assert [e["job_id"] for e in read_events(logger.path)[0]] == ["a", "b"]


# --- the test sink --------------------------------------------------------------------------


def test_list_sink_records_the_same_shape_from_many_threads() -> None:
    sink: EventSink = ListEventSink(clock=fixed_clock)

    def work(thread: int) -> None:
        for seq in range(200):
            sink.emit(EventName.JOB_START, user_id=thread, job_id=f"{thread}-{seq}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(sink, ListEventSink)
    assert len(sink.named(EventName.JOB_START)) == 800
    first = sink.events[0]
    assert list(first)[:4] == ["ts", "event", "chat_session_id", "user_id"]
    assert first["ts"] == "2026-11-27T17:30:00.123Z"


# --- many processes × many threads ----------------------------------------------------------

PROCESSES = 4
THREADS = 4
RECORDS_PER_THREAD = 1000
BIG_PAYLOAD = 9000  # over 8 KiB: bigger than any atomic-append promise
CONCURRENT_MAX_BYTES = 512 * 1024

WRITER_SCRIPT = """
import random, sys, threading
from pathlib import Path
from nexus_core.ops.events import ApiEventLogger

path, proc, threads, per_thread, big, max_bytes = sys.argv[1:7]
proc, threads, per_thread, big, max_bytes = map(int, (proc, threads, per_thread, big, max_bytes))
logger = ApiEventLogger(Path(path), max_bytes=max_bytes, backups=10_000)
start = threading.Barrier(threads)
ALPHABET = "abcé\\n\\"{}"  # multi-byte and JSON-escaped characters

def work(thread):
    rng = random.Random(proc * 100 + thread)
    start.wait()
    for seq in range(per_thread):
        size = big if rng.random() < 0.05 else rng.randrange(0, 1500)
        start_at = rng.randrange(len(ALPHABET))
        payload = (ALPHABET * (size // len(ALPHABET) + 2))[start_at : start_at + size]
        logger.emit("load", proc=proc, thread=thread, seq=seq, size=size, payload=payload)

workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
logger.close()
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_records_from_many_processes_and_threads_are_whole_and_none_lost(log_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = [str(log_path), "0", str(THREADS), str(RECORDS_PER_THREAD), str(BIG_PAYLOAD)]
    args.append(str(CONCURRENT_MAX_BYTES))
    procs = []
    for proc in range(PROCESSES):
        args[1] = str(proc)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER_SCRIPT, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=100)
        assert p.returncode == 0, err.decode()

    files = log_files(log_path)
    assert len(files) > 2, "rotation should have happened during the run"
    seen: set[tuple[int, int, int]] = set()
    for file in files:
        assert file.stat().st_size <= CONCURRENT_MAX_BYTES
        for line in raw_lines(file):
            assert line.endswith(b"\n")
            record = json.loads(line)  # every line is one whole object: no tearing, no mixing
            assert len(record["payload"]) == record["size"]
            key = (record["proc"], record["thread"], record["seq"])
            assert key not in seen
            seen.add(key)
    assert len(seen) == PROCESSES * THREADS * RECORDS_PER_THREAD
    events, skipped = read_events(log_path)
    assert skipped == 0 and len(events) == len(seen)
