"""A lease in the database: one holder at a time runs a periodic task across every process of a
deployment (several app replicas evaluate alerts, only the lease holder does it).

Taking the lease is one conditional UPDATE (ours already, or expired) and, when no row exists
yet, an INSERT that the primary key lets only one process win. Both run in one transaction, so
on PostgreSQL the row lock and on SQLite the write lock (BEGIN IMMEDIATE) decide a race. A holder
renews at every run; one that dies loses the lease when it expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError

from nexus_core.db.engine import Database
from nexus_core.db.models import SchedulerLease


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
        table = SchedulerLease.__table__
        until = now + self.ttl
        with self.db.transaction() as conn:
            renewed = conn.execute(
                update(table)
                .where(
                    table.c.name == self.name,
                    or_(table.c.holder == self.holder, table.c.expires_at <= now),
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
