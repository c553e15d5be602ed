"""The app's alert evaluator: every ``interval`` a daemon thread takes the database lease and, if
it holds it, evaluates every rule (``AlertService.check``). Every process of a deployment runs
one; the lease makes only one of them evaluate and send. Its failures are logged, never raised:
the next tick tries again.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Final

from nexus_core.alerts.lease import Lease
from nexus_core.alerts.service import AlertService, CheckReport
from nexus_core.db.columns import Clock, utc_now

log = logging.getLogger("nexus.alerts")

LEASE_NAME: Final = "alerts"
# The lease outlives a tick long enough that a slow evaluation keeps it, short enough that a
# dead holder is replaced within a few ticks.
LEASE_TICKS: Final = 3


class AlertScheduler:
    """Runs ``service.check`` every ``interval`` in this process, when it holds the lease."""

    def __init__(
        self,
        service: AlertService,
        lease: Lease,
        interval: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self.service = service
        self.lease = lease
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_service(cls, service: AlertService, interval: timedelta) -> AlertScheduler:
        """A scheduler whose lease lasts ``LEASE_TICKS`` intervals."""
        return cls(service, Lease(service.db, LEASE_NAME, interval * LEASE_TICKS), interval)

    def tick(self) -> CheckReport | None:
        """One evaluation if this process holds (or takes) the lease; None when another does."""
        now = self.clock()
        if not self.lease.acquire(now):
            return None
        return self.service.check(now)

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is not None or self.interval <= timedelta(0):
            return
        self._thread = threading.Thread(target=self._run, name="nexus-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and give the lease up so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval.total_seconds() + 1)
            self._thread = None
            try:
                self.lease.release()
            except Exception as exc:  # the database may already be gone at shutdown
                log.warning("alert lease not released (%s)", type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval.total_seconds()):
            try:
                self.tick()
            except Exception as exc:
                log.warning("alert evaluation failed (%s); trying again", type(exc).__name__)
