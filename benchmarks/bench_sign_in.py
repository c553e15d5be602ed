"""How long a sign-in attempt takes on each path: does the answer time tell whether a username
exists, is disabled or is locked?

Run: ``python benchmarks/bench_sign_in.py [--rounds N]``. Uses a temporary SQLite database and the
real bcrypt cost, interleaves the paths round by round (so load on the machine hits them alike) and
prints a markdown table of ``SignInService.attempt`` times. For comparison it also times the
password check of the old flow (streamlit-authenticator 0.4.2's ``check_credentials``: no bcrypt
for an unknown user, a cost-4 "unmatchable" hash for a locked one), without its database work or
its fixed 0.7 s sleep.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexus_core.auth import LOCKOUT_THRESHOLD, SignInService
from nexus_core.db.engine import Database
from nexus_core.db.migrate import upgrade_to_head
from nexus_core.users import BCRYPT_ROUNDS, UserService

ROUNDS = 15
PASSWORD = "correct-horse-1"
OLD_LOCKED_HASH = bcrypt.hashpw(b"nobody-knows-this", bcrypt.gensalt(4))


def new_paths(sign_in: SignInService) -> dict[str, Callable[[], object]]:
    """Each path of a sign-in attempt, as the login form makes it."""
    return {
        "unknown user": lambda: sign_in.attempt("nobody-at-all", PASSWORD),
        "disabled user": lambda: sign_in.attempt("dora", PASSWORD),
        "locked user": lambda: sign_in.attempt("lena", PASSWORD),
        "wrong password": lambda: sign_in.attempt("gina", "not-the-password"),
        "right password": lambda: sign_in.attempt("rita", PASSWORD),
    }


def old_checks(real_hash: bytes) -> dict[str, Callable[[], object]]:
    """The password check alone of the old flow, per path."""
    return {
        "unknown user": lambda: None,  # "username not in credentials": no bcrypt at all
        "disabled user": lambda: None,  # left out of the credentials dict: the same
        "locked user": lambda: bcrypt.checkpw(PASSWORD.encode(), OLD_LOCKED_HASH),
        "wrong password": lambda: bcrypt.checkpw(b"not-the-password", real_hash),
        "right password": lambda: bcrypt.checkpw(PASSWORD.encode(), real_hash),
    }


def setup(db: Database) -> SignInService:
    users = UserService(db)
    for name in ("dora", "lena", "gina", "rita"):
        users.create(name, PASSWORD)
    users.set_disabled("dora", True)
    sign_in = SignInService(db, token_key="benchmark-key", lifetime=timedelta(days=7))
    for attempt in range(LOCKOUT_THRESHOLD):
        sign_in.attempt("lena", f"wrong-{attempt}")
    return sign_in


def measure(paths: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call of each path, ``rounds`` times, paths interleaved."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/nexus.db")
        upgrade_to_head(db.engine)
        sign_in = setup(db)
        real_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_ROUNDS))
        sign_in.attempt("nobody-at-all", PASSWORD)  # the dummy hash is made once per process
        now = measure(new_paths(sign_in), args.rounds)
        old = measure(old_checks(real_hash), args.rounds)
        db.dispose()
    print(f"bcrypt cost {BCRYPT_ROUNDS}, {args.rounds} rounds, milliseconds\n")
    print("| path | now: median | now: min–max | old check alone: median |")
    print("|---|---:|---:|---:|")
    for name in now:
        print(
            f"| {name} | {statistics.median(now[name]):.0f} | "
            f"{min(now[name]):.0f}–{max(now[name]):.0f} | {statistics.median(old[name]):.0f} |"
        )


if __name__ == "__main__":
    main()
