"""A lease in the database: one holder at a time runs a periodic task across every process of a
deployment (several app replicas evaluate alerts, only the lease holder does it), and the thread
each process runs it on (``LeasedScheduler``).

Taking the lease is one conditional UPDATE (ours already, or expired) and, when no row exists
yet, an INSERT that the primary key lets only one process win. Both run in one transaction, so
on PostgreSQL the row lock and on SQLite the write lock (BEGIN IMMEDIATE) decide a race. A holder
renews at every run; one that dies loses the lease when it expires. ``claim`` never renews: taken
for a day, it lets one process of the deployment run a daily task once a day, however many
processes try and however often they restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError

from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import SchedulerLease

log = logging.getLogger("nexus.scheduler")

Report = TypeVar("Report")


def new_holder() -> str:
    """A name for this process that no other process shares: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease called ``name``, held by ``holder`` for ``ttl`` at a time."""

    def __init__(self, db: Database, name: str, ttl: timedelta, holder: str | None = None) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.holder = holder or new_holder()

    def acquire(self, now: datetime) -> bool:
        """Take or renew the lease until ``now + ttl``; False while another holder has it."""
        return self._take(now, renew=True)

    def claim(self, now: datetime) -> bool:
        """Take the lease until ``now + ttl`` only if it has expired (or never existed); False
        while anyone holds it, this holder included — so a daily lease is claimed once a day."""
        return self._take(now, renew=False)

    def _take(self, now: datetime, *, renew: bool) -> bool:
        table = SchedulerLease.__table__
        until = now + self.ttl
        free = table.c.expires_at <= now
        with self.db.transaction() as conn:
            renewed = conn.execute(
                update(table)
                .where(
                    table.c.name == self.name,
                    or_(table.c.holder == self.holder, free) if renew else free,
                )
                .values(holder=self.holder, expires_at=until)
            ).rowcount
            if renewed:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(table).values(name=self.name, holder=self.holder, expires_at=until)
                    )
            except IntegrityError:  # the row exists: another holder's lease is still running
                return False
            return True

    def release(self) -> None:
        """Give the lease up now (a stopping process), if this holder has it."""
        table = SchedulerLease.__table__
        with self.db.transaction() as conn:
            conn.execute(
                table.delete().where(table.c.name == self.name, table.c.holder == self.holder)
            )


class LeasedScheduler(Generic[Report]):
    """Calls ``tick`` every ``interval`` on a daemon thread of this process; ``tick`` decides
    with the lease whether this process works. Failures are logged, never raised: the next tick
    tries again."""

    name = "nexus-scheduler"
    release_on_stop = True  # hand the lease over at once (False: a daily claim stays claimed)

    def __init__(self, lease: Lease, interval: timedelta, clock: Clock = utc_now) -> None:
        self.lease = lease
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Report | None:
        """One turn of the task; None when another process holds the lease."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the background thread (once; never when ``interval`` is not positive)."""
        if self._thread is not None or self.interval <= timedelta(0):
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and (with ``release_on_stop``) give the lease up so another process
        takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval.total_seconds() + 1)
            self._thread = None
            if not self.release_on_stop:
                return
            try:
                self.lease.release()
            except Exception as exc:  # the database may already be gone at shutdown
                log.warning("%s lease not released (%s)", self.name, type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval.total_seconds()):
            try:
                self.tick()
            except Exception as exc:
                log.warning("%s failed (%s); trying again", self.name, type(exc).__name__)
