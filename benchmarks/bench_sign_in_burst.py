"""Many people signing in at the same moment on one SQLite file: does any of them get
``DatabaseUnavailable``, and how long does each call wait for the database?

Run: ``python benchmarks/bench_sign_in_burst.py [--users 40] [--processes 1] [--busy 1]
[--renderers 4] [--rounds 2] [--page-runs 3] [--database-url URL]``.

Without browsers: each user is a thread making the calls the sign-in page and the pages after it
make, through the real services — ``SignInService.attempt`` (the bcrypt check of the real cost,
then the decision, the audit event and its link in the hash chain, the new session row),
``claim_cookie`` (the cookie hand-off request), then, ``--page-runs`` times, ``check_session``, the
chat list and the audit trail, as a signed-in person's next runs do. ``--processes`` splits the
users over that many processes on the same file (other replicas or a queue worker writing at
once); ``--renderers`` threads in each process keep the GIL busy, as Streamlit drawing pages does;
``--busy`` processes keep cores busy. Every round all users sign in again. At the end the check of
``nexus audit verify`` walks the hash chain. Prints per call: successes, failures (with the
database's own reason) and times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexus_core import audit, audit_chain
from nexus_core.auth import SignInService
from nexus_core.chat import ChatService
from nexus_core.db.engine import Database
from nexus_core.db.migrate import upgrade_to_head
from nexus_core.users import UserService

PASSWORD = "burst-password-1"
TOKEN_KEY = "benchmark-key"
CALLS = ("attempt", "claim_cookie", "check_session", "list_sessions", "audit_search")


@dataclass(frozen=True)
class Call:
    """One service call: its name, how long it took and, if it failed, why."""

    name: str
    seconds: float
    error: str | None = None


def spin(stop: Any) -> None:
    """Keep a core (as a process) or the GIL (as a thread) busy until ``stop`` is set."""
    while not stop.is_set():
        sum(range(10_000))


def timed(out: list[Call], name: str, call: Callable[[], Any]) -> Any:
    """Run ``call``, recording it in ``out``; None when it failed."""
    started = time.perf_counter()
    try:
        result = call()
    except Exception as exc:  # recorded, not raised: the burst goes on
        cause = getattr(exc.__cause__, "orig", None) or exc.__cause__ or exc
        out.append(Call(name, time.perf_counter() - started, f"{type(exc).__name__} ({cause})"))
        return None
    out.append(Call(name, time.perf_counter() - started))
    return result


def one_user(db: Database, name: str, page_runs: int, start: threading.Barrier) -> list[Call]:
    """Sign in, claim the cookie, then run ``page_runs`` pages as signed in."""
    sign_in = SignInService(db, token_key=TOKEN_KEY, lifetime=timedelta(days=1))
    chats = ChatService(db)
    out: list[Call] = []
    start.wait()
    grant = timed(out, "attempt", lambda: sign_in.attempt(name, PASSWORD))
    if grant is None:
        return out
    timed(out, "claim_cookie", lambda: sign_in.claim_cookie(grant.handoff_code))
    for _ in range(page_runs):
        check = timed(out, "check_session", lambda: sign_in.check_session(grant.session_id))
        user = check.user if check is not None else None
        if user is None:
            return out
        timed(out, "list_sessions", lambda: chats.list_sessions(user))  # noqa: B023 - called now
        timed(out, "audit_search", lambda: audit.search(db, audit.AuditQuery(), limit=50))
    return out


def one_round(db: Database, names: list[str], page_runs: int) -> list[Call]:
    """Every user of ``names`` signs in at the same moment, each on a thread (as the app serves
    each browser on a thread)."""
    start = threading.Barrier(len(names))
    out: list[Call] = []
    threads = [
        threading.Thread(target=lambda n=name: out.extend(one_user(db, n, page_runs, start)))
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def run_process(
    url: str, names: list[str], page_runs: int, rounds: int, renderers: int, queue: Any
) -> None:
    """One process's users as threads, ``rounds`` times, beside ``renderers`` GIL-busy threads;
    every call goes to ``queue``."""
    db = Database(url)
    drawing = threading.Event()
    for _ in range(renderers):
        threading.Thread(target=spin, args=(drawing,), daemon=True).start()
    out: list[Call] = []
    for _ in range(rounds):
        out.extend(one_round(db, names, page_runs))
    drawing.set()
    db.dispose()
    queue.put(out)


def burst(url: str, args: argparse.Namespace) -> tuple[list[Call], float]:
    """Every user signs in at once (``args.rounds`` times), under the load asked for."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    spinners = [ctx.Process(target=spin, args=(stop,)) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    names = [f"burst{i:03d}" for i in range(args.users)]
    queue = ctx.Queue()
    share = args.page_runs, args.rounds, args.renderers, queue
    workers = [
        ctx.Process(target=run_process, args=(url, names[p :: args.processes], *share))
        for p in range(args.processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    calls = [call for _ in workers for call in queue.get()]
    wall = time.perf_counter() - started
    for worker in workers:
        worker.join()
    stop.set()
    for spinner in spinners:
        spinner.join()
    return calls, wall


def print_calls(calls: list[Call]) -> None:
    for name in CALLS:
        times = sorted(c.seconds for c in calls if c.name == name and c.error is None)
        failed = sorted(c.seconds for c in calls if c.name == name and c.error)
        line = f"  {name:14} ok {len(times):4}  failed {len(failed):3}"
        if times:
            p95 = times[int(0.95 * (len(times) - 1))]
            line += (
                f"  median {statistics.median(times) * 1000:6.0f} ms  p95 {p95 * 1000:6.0f} ms"
                f"  max {times[-1] * 1000:6.0f} ms"
            )
        if failed:
            line += f"  (the failed took {failed[0]:.1f}–{failed[-1]:.1f} s)"
        print(line)
    for error, count in Counter(f"{c.name}: {c.error}" for c in calls if c.error).most_common():
        print(f"  FAILED x{count}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--busy", type=int, default=1, help="cores kept busy meanwhile")
    parser.add_argument("--renderers", type=int, default=4, help="GIL-busy threads a process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--page-runs", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'nexus.db'}"
        db = Database(url)
        upgrade_to_head(db.engine)
        users = UserService(db)
        for i in range(args.users):
            users.create(f"burst{i:03d}", PASSWORD)
        calls, wall = burst(url, args)
        report = audit_chain.verify(db)
        db.dispose()
    print(
        f"{args.users} users in {args.processes} process(es), {args.rounds} round(s), "
        f"{args.busy} busy core(s), {args.renderers} GIL-busy thread(s) a process, "
        f"{db.dialect}: {wall:.1f} s"
    )
    print_calls(calls)
    print(f"  audit chain: {'intact' if report.intact else report.problem}, {report.events} events")


if __name__ == "__main__":
    main()
