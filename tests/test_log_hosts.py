"""Many hosts, one log: each host writes logs/<host>/api_events.log (NEXUS_LOG_HOST), and every
reader — the event store, retention, the workbench, `nexus metrics` — takes all hosts' files as
one log, counting every event exactly once. Real files and real processes throughout."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nexus_core.analytics.log_store import CACHE_DIR_NAME, EventStore
from nexus_core.app_context import AppContext
from nexus_core.errors import ConfigError
from nexus_core.ops.events import (
    ApiEventLogger,
    all_log_files,
    log_files,
    log_paths,
    read_events,
)
from nexus_core.settings import Settings
from nexus_core.workbench.sandbox import Workbench
from tests.test_cli import run_nexus
from tests.test_log_store import FAR_FUTURE, FAR_PAST, SMALL_LOG_BYTES, START, StepClock

HOSTS = ("host-a", "host-b")
SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters, like separate hosts


def host_log(root: Path, host: str) -> Path:
    return root.parent / host / root.name


def emit_requests(logger: ApiEventLogger, tag: str, count: int, offset: int = 0) -> None:
    for n in range(offset, offset + count):
        logger.emit("request_start", request_id=f"{tag}-{n}", attempt=1, model="m", provider="p")
        logger.emit("request_success", request_id=f"{tag}-{n}", attempt=1, latency_ms=100.0 + n)


def write_as_process(path: str, tag: str, count: int, max_bytes: int) -> None:
    """A writer process of one host (run in a fresh interpreter)."""
    with ApiEventLogger(Path(path), max_bytes=max_bytes) as logger:
        emit_requests(logger, tag, count)


def refresh_as_process(log: str, cache: str) -> tuple[int, int, list[str]]:
    """Another replica's first refresh: (events, compactions, request ids)."""
    with EventStore(Path(log), Path(cache)) as store:
        frame = store.events_frame(FAR_PAST, FAR_FUTURE)
        ids = frame.filter(frame["event"] == "request_start")["request_id"].to_list()
        return frame.height, store.compactions, ids


def run_processes(target: object, argument_lists: list[tuple[object, ...]]) -> None:
    processes = [SPAWN.Process(target=target, args=args) for args in argument_lists]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0


def stored_request_ids(store: EventStore) -> list[str]:
    frame = store.events_frame(FAR_PAST, FAR_FUTURE)
    return frame.filter(frame["event"] == "request_start")["request_id"].to_list()


def logged_request_ids(root: Path) -> list[str]:
    """The request ids in every host's files, read line by line (the reference)."""
    ids = []
    for live in log_paths(root):
        events, _ = read_events(live)
        ids += [e["request_id"] for e in events if e["event"] == "request_start"]
    return ids


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The top-level log file, where readers start."""
    return tmp_path / "logs" / "api_events.log"


@pytest.fixture
def hosts(root: Path) -> Iterator[dict[str, ApiEventLogger]]:
    """One logger per host, each rotating small files in its own directory."""
    loggers = {
        host: ApiEventLogger(host_log(root, host), max_bytes=SMALL_LOG_BYTES, clock=StepClock())
        for host in HOSTS
    }
    yield loggers
    for logger in loggers.values():
        logger.close()


# --- settings and layout ----------------------------------------------------------------------


def test_without_a_log_host_a_process_writes_the_single_host_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, env="test")

    assert settings.own_event_log_path == tmp_path / "logs" / "api_events.log"
    assert settings.own_event_log_path == settings.event_log_path
    assert ApiEventLogger.from_settings(settings).path == settings.event_log_path


def test_a_log_host_gets_a_directory_of_its_own_and_auto_is_the_host_name(
    tmp_path: Path,
) -> None:
    named = Settings(data_dir=tmp_path, env="test", log_host="web-1")
    auto = Settings(data_dir=tmp_path, env="test", log_host="auto")

    assert named.own_event_log_path == tmp_path / "logs" / "web-1" / "api_events.log"
    assert named.event_log_path == tmp_path / "logs" / "api_events.log"  # readers start here
    logger = ApiEventLogger.from_settings(named)
    assert logger.lock_path == tmp_path / "logs" / "web-1" / "api_events.log.lock"
    assert auto.own_event_log_path.parent.parent == tmp_path / "logs"
    assert auto.own_event_log_path.parent.name.startswith(socket.gethostname()[:1])


@pytest.mark.parametrize(
    ("value", "directory"),
    [
        ("web1-worker-compare,test_set,eval", "web1-worker-compare-test_set-eval"),  # systemd %I
        ("../elsewhere", "elsewhere"),
        ("a/b", "a-b"),
        (".hidden", "hidden"),
    ],
)
def test_a_log_host_becomes_one_plain_directory_directly_under_logs(
    tmp_path: Path, value: str, directory: str
) -> None:
    path = Settings(data_dir=tmp_path, env="test", log_host=value).own_event_log_path

    assert path == tmp_path / "logs" / directory / "api_events.log"


@pytest.mark.parametrize(
    "value", [".", "..", "/", " ", "api_events.log", "api_events.log.1", "api_events.log.lock"]
)
def test_a_log_host_without_letters_or_digits_or_named_like_the_logs_files_is_refused(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError, match="NEXUS_LOG_HOST"):
        Settings(data_dir=tmp_path, env="test", log_host=value)


def test_readers_find_the_top_level_log_and_every_host_directory_holding_one(
    root: Path, hosts: dict[str, ApiEventLogger]
) -> None:
    for logger in hosts.values():
        emit_requests(logger, "x", 1)
    (root.parent / "not-a-host").mkdir()  # a directory without a log is not a host
    (root.parent / "lonely" / "api_events.log.1").parent.mkdir()
    (root.parent / "lonely" / "api_events.log.1").write_bytes(b"")

    assert log_paths(root) == [
        root,
        host_log(root, "host-a"),
        host_log(root, "host-b"),
        host_log(root, "lonely"),
    ]
    assert host_log(root, "host-a") in all_log_files(root)


def test_a_linked_host_directory_is_read_once_and_a_link_back_to_logs_is_not_a_host(
    root: Path, tmp_path: Path
) -> None:
    """A host directory may link to a host's local disk: written through, so read through too,
    each real directory once."""
    local = tmp_path / "local-disk" / "web-3"
    local.mkdir(parents=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    (root.parent / "web-3").symlink_to(local, target_is_directory=True)
    (root.parent / "loop").symlink_to(root.parent, target_is_directory=True)
    written = Settings(data_dir=tmp_path, env="test", log_host="web-3")
    assert written.own_event_log_path == root.parent / "web-3" / "api_events.log"
    with ApiEventLogger.from_settings(written) as logger:
        emit_requests(logger, "linked", 4)
    with ApiEventLogger(root) as top:
        emit_requests(top, "top", 2)
    (root.parent / "web-3-again").symlink_to(local, target_is_directory=True)

    assert log_paths(root) == [root, host_log(root, "web-3")]
    with EventStore(root, tmp_path / "cache") as store:
        assert Counter(stored_request_ids(store)) == Counter(
            [f"linked-{n}" for n in range(4)] + ["top-0", "top-1"]
        )


# --- one log from many hosts ------------------------------------------------------------------


def test_processes_of_two_hosts_writing_at_once_are_read_as_one_log_counted_exactly_once(
    root: Path, tmp_path: Path
) -> None:
    # Two processes per host share that host's lock; the hosts share none.
    run_processes(
        write_as_process,
        [
            (str(host_log(root, host)), f"{host}-{writer}", 60, SMALL_LOG_BYTES)
            for host in HOSTS
            for writer in range(2)
        ],
    )
    for host in HOSTS:
        assert len(log_files(host_log(root, host))) > 3  # rotated on each host
        assert not root.exists()

    with EventStore(root, tmp_path / "cache") as store:
        ids = stored_request_ids(store)
        snapshot = store.refresh()

    expected = [f"{h}-{w}-{n}" for h in HOSTS for w in range(2) for n in range(60)]
    assert Counter(ids) == Counter(expected)
    assert sorted(logged_request_ids(root)) == sorted(expected)
    assert snapshot.rows == 2 * len(expected) and snapshot.skipped_lines == 0


def test_the_top_level_log_and_host_logs_are_read_together(
    root: Path, hosts: dict[str, ApiEventLogger], tmp_path: Path
) -> None:
    with ApiEventLogger(root, clock=StepClock()) as before_hosts:  # the single-host layout
        emit_requests(before_hosts, "old", 5)
    for host, logger in hosts.items():
        emit_requests(logger, host, 20)

    with EventStore(root, tmp_path / "cache") as store:
        assert Counter(stored_request_ids(store)) == Counter(logged_request_ids(root))
        assert len(stored_request_ids(store)) == 45


def test_refreshes_while_hosts_write_and_rotate_lose_and_duplicate_nothing(
    root: Path, hosts: dict[str, ApiEventLogger], tmp_path: Path
) -> None:
    with EventStore(root, tmp_path / "cache", segment_rows=8) as store:
        for batch in range(6):
            for host, logger in hosts.items():
                emit_requests(logger, host, 4 + batch, offset=batch * 100)
            ids = stored_request_ids(store)
            assert Counter(ids) == Counter(logged_request_ids(root))
            assert len(ids) == len(set(ids))


def test_a_new_process_adopts_each_hosts_stretches_and_counts_every_event_once(
    root: Path, hosts: dict[str, ApiEventLogger], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    big = {host: ApiEventLogger(host_log(root, host), clock=StepClock()) for host in HOSTS}
    for host, logger in big.items():
        emit_requests(logger, host, 30)
    with EventStore(root, cache, segment_rows=8) as first:
        first.refresh()
    stretches = json.loads((cache / "live.json").read_text())["stretches"]
    assert {s["log"] for s in stretches} == {f"{h}/api_events.log" for h in HOSTS}
    for host, logger in big.items():
        emit_requests(logger, host, 3, offset=30)
        logger.close()

    with EventStore(root, cache, segment_rows=8) as second:
        ids = stored_request_ids(second)
        live_bytes = sum(host_log(root, h).stat().st_size for h in HOSTS)
        # Only the bytes after each host's last stretch were parsed again.
        assert 0 < second.live_bytes_parsed < live_bytes / 2

    assert Counter(ids) == Counter(f"{h}-{n}" for h in HOSTS for n in range(33))


def test_a_rotation_on_one_host_leaves_the_other_hosts_stretches_in_use(
    root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    a = ApiEventLogger(host_log(root, "host-a"), max_bytes=6_000, clock=StepClock())
    b = ApiEventLogger(host_log(root, "host-b"), clock=StepClock())
    with EventStore(root, cache, segment_rows=4, orphan_grace_seconds=0) as store:
        emit_requests(a, "a", 10)
        emit_requests(b, "b", 10)
        store.refresh()
        emit_requests(a, "a", 30, offset=10)  # host-a rotates, twice over refreshes
        store.refresh()
        emit_requests(a, "a", 30, offset=40)
        assert Counter(stored_request_ids(store)) == Counter(logged_request_ids(root))

    stretches = json.loads((cache / "live.json").read_text())["stretches"]
    of_b = [s for s in stretches if s["log"] == "host-b/api_events.log"]
    assert of_b and all(s["retired_at"] is None for s in of_b)
    assert all((cache / s["parquet"]).is_file() for s in of_b)
    with EventStore(root, cache, segment_rows=4) as later:  # host-b's stretches are adopted
        assert Counter(stored_request_ids(later)) == Counter(logged_request_ids(root))
    a.close()
    b.close()


def test_two_hosts_files_alike_in_size_mtime_and_first_bytes_are_two_parts(
    root: Path, tmp_path: Path
) -> None:
    head = b"".join(
        f'{{"ts":"2026-11-27T09:00:{n:02d}.000Z","event":"job_start","job_id":"same-{n}"}}\n'.encode()
        for n in range(60)
    )
    assert len(head) > 4096
    for host in HOSTS:
        rotated = host_log(root, host).with_name("api_events.log.1")
        rotated.parent.mkdir(parents=True)
        tail = f'{{"ts":"2026-11-27T10:00:00.000Z","event":"job_start","job_id":"{host}"}}\n'
        rotated.write_bytes(head + tail.encode())
        os.utime(rotated, ns=(1_800_000_000_000_000_000, 1_800_000_000_000_000_000))

    with EventStore(root, tmp_path / "cache") as store:
        frame = store.events_frame(FAR_PAST, FAR_FUTURE)
        assert store.compactions == 2

    job_ids = Counter(frame["job_id"].to_list())
    assert job_ids["host-a"] == job_ids["host-b"] == 1
    assert job_ids["same-0"] == 2  # each host logged it: two events


# --- replicas sharing one cache ---------------------------------------------------------------


def test_two_replicas_compacting_at_once_share_one_cache_and_agree(
    root: Path, hosts: dict[str, ApiEventLogger], tmp_path: Path
) -> None:
    for host, logger in hosts.items():
        emit_requests(logger, host, 50)
    cache = tmp_path / "cache"
    rotated = [f for live in log_paths(root) for f in log_files(live) if f.name != live.name]

    with SPAWN.Pool(2) as pool:
        results = pool.starmap(refresh_as_process, [(str(root), str(cache))] * 2)

    expected = Counter(logged_request_ids(root))
    for rows, _compactions, ids in results:
        assert rows == 2 * sum(expected.values()) and Counter(ids) == expected
    # Each file compacted at most once per replica, and the manifest keeps one part for each.
    assert all(compactions <= len(rotated) for _, compactions, _ in results)
    parts = json.loads((cache / "manifest.json").read_text())["parts"]
    assert sorted(p["source"] for p in parts) == sorted(
        f.relative_to(root.parent).as_posix() for f in rotated
    )
    assert len(list(cache.glob("events-*.parquet"))) == len(rotated)
    assert not list(cache.glob(".*.tmp"))
    with EventStore(root, cache) as third:  # a later replica compacts nothing again
        assert Counter(stored_request_ids(third)) == expected
        assert third.compactions == 0


# --- retention per host -----------------------------------------------------------------------


def test_retention_deletes_old_rotated_files_of_every_host_and_never_a_live_file(
    root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    old, recent = datetime(2026, 1, 1), datetime(2026, 11, 1)
    loggers = {}
    for host in HOSTS:
        clock = StepClock(start=old, step=timedelta(minutes=1))
        loggers[host] = ApiEventLogger(host_log(root, host), max_bytes=SMALL_LOG_BYTES, clock=clock)
        emit_requests(loggers[host], f"{host}-old", 20)
        clock.now = recent
        emit_requests(loggers[host], f"{host}-new", 20)
    with EventStore(root, cache) as replica:  # another replica, holding a snapshot
        snapshot = replica.refresh()
        held = snapshot.rows

        with EventStore(root, cache) as store:
            expired = store.expire(datetime(2026, 6, 1))
            remaining = stored_request_ids(store)

        # The other replica's snapshot still reads the deleted files' copies (orphan grace).
        assert snapshot.events_frame(FAR_PAST, FAR_FUTURE).height == held

    names = {gone.name.split("/")[0] for gone in expired}
    assert names == set(HOSTS)
    assert all(gone.newest is not None and gone.newest < datetime(2026, 6, 1) for gone in expired)
    for host in HOSTS:
        assert host_log(root, host).is_file()  # the live files stay
    assert Counter(remaining) == Counter(logged_request_ids(root))
    assert set(remaining) >= {f"{h}-new-{n}" for h in HOSTS for n in range(20)}
    assert sum(gone.events for gone in expired) == 2 * (40 * 2 - len(remaining))
    for logger in loggers.values():
        logger.close()


def test_retention_rotates_and_deletes_the_live_file_of_a_host_that_stopped_writing(
    root: Path, tmp_path: Path
) -> None:
    """A host that stopped writing (a removed replica, a quiet worker) never rotates its live
    file; retention rotates it once it was last written before the cutoff, then deletes it."""
    cutoff = datetime(2026, 6, 1)
    idle = ApiEventLogger(host_log(root, "host-a"), clock=StepClock(datetime(2026, 1, 1)))
    busy = ApiEventLogger(host_log(root, "host-b"), clock=StepClock(datetime(2026, 1, 1)))
    emit_requests(idle, "idle-old", 10)
    emit_requests(busy, "busy-old", 10)  # old events, but the file is written to now
    last_write = datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    os.utime(host_log(root, "host-a"), (last_write, last_write))

    with EventStore(root, tmp_path / "cache") as store:
        expired = store.expire(cutoff)
        assert [(gone.name, gone.events) for gone in expired] == [("host-a/api_events.log.1", 20)]
        assert not host_log(root, "host-a").exists()
        assert host_log(root, "host-b").is_file()  # written lately: never cut
        emit_requests(idle, "idle-back", 3)  # the old writer opens a new live file
        assert Counter(stored_request_ids(store)) == Counter(logged_request_ids(root))
        assert {i for i in stored_request_ids(store) if i.startswith("idle")} == {
            f"idle-back-{n}" for n in range(3)
        }
    idle.close()
    busy.close()


# --- the workbench and `nexus metrics` --------------------------------------------------------


def test_the_workbench_events_relation_holds_every_hosts_events(ctx: AppContext) -> None:
    ctx.init()
    root = ctx.settings.event_log_path
    for host in HOSTS:
        with ApiEventLogger(
            host_log(root, host), max_bytes=SMALL_LOG_BYTES, clock=StepClock()
        ) as logger:
            emit_requests(logger, host, 25)
    cache = ctx.settings.data_dir / CACHE_DIR_NAME
    with (
        EventStore(root, cache, segment_rows=8) as store,
        Workbench(ctx.settings, ctx.db, events=store).open(include_message_content=False) as wb,
    ):
        late = ApiEventLogger(host_log(root, "host-b"), clock=StepClock(START + timedelta(days=1)))
        late.emit("job_start", job_id="late")  # a hot row on one host
        late.close()
        result = wb.run(
            "SELECT split_part(request_id, '-', 2) AS host, count(*) AS n FROM events "
            "WHERE event = 'request_start' GROUP BY host ORDER BY host"
        )
        assert result.frame.rows() == [("a", 25), ("b", 25)]


def test_nexus_metrics_counts_every_hosts_events_once(settings: Settings) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    root = settings.event_log_path
    at = StepClock(start=now - timedelta(minutes=50), step=timedelta(seconds=5))
    with ApiEventLogger(root, clock=at) as top:  # written before the hosts had their own
        top.emit("job_success", job_id="top", latency_ms=500.0, attempts=1)
    for number, host in enumerate(HOSTS):
        with ApiEventLogger(host_log(root, host), max_bytes=SMALL_LOG_BYTES, clock=at) as logger:
            emit_requests(logger, host, 20)
            for n in range(10 + number):
                logger.emit("job_success", job_id=f"{host}-{n}", latency_ms=1000.0, attempts=1)
            logger.emit(
                "request_failure",
                request_id=f"{host}-f",
                attempt=1,
                latency_ms=5.0,
                status_code=503,
                error_type="http_503",
                retryable=True,
            )
        assert len(log_files(host_log(root, host))) > 1

    result = run_nexus(
        settings, "metrics", "--window", "60m", "--now", "2026-11-27T12:00:00Z", "--json"
    )

    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    assert numbers["requests"] == 40
    assert (numbers["successes"], numbers["failures"]) == (40, 2)
    assert numbers["jobs_succeeded"] == 1 + 10 + 11
    assert numbers["top_errors"] == [{"error_type": "http_503", "count": 2}]
    assert numbers["skipped_lines"] == 0


def test_stretches_recorded_by_a_replica_that_numbers_the_device_otherwise_are_adopted(
    root: Path, tmp_path: Path
) -> None:
    # Clients of one network filesystem may give it different device numbers: a stretch is the
    # file's by its log, inode and first bytes, so another replica's is used, never retired.
    cache = tmp_path / "cache"
    with ApiEventLogger(host_log(root, "host-a"), clock=StepClock()) as logger:
        emit_requests(logger, "a", 30)
    with EventStore(root, cache, segment_rows=8) as first:
        first.refresh()
    manifest = json.loads((cache / "live.json").read_text())
    for stretch in manifest["stretches"]:
        stretch["dev"] += 1
    (cache / "live.json").write_text(json.dumps(manifest))

    with EventStore(root, cache, segment_rows=8) as other:
        assert Counter(stored_request_ids(other)) == Counter(f"a-{n}" for n in range(30))
        assert other.live_bytes_parsed < host_log(root, "host-a").stat().st_size / 2

    after = json.loads((cache / "live.json").read_text())["stretches"]
    assert after and all(s["retired_at"] is None for s in after)
