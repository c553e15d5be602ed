"""The app's alert evaluator: every ``interval`` a daemon thread takes the database lease and, if
it holds it, evaluates every rule (``AlertService.check``). Every process of a deployment runs
one; the lease makes only one of them evaluate and send. Its failures are logged, never raised:
the next tick tries again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from nexus_core.alerts.service import AlertService, CheckReport
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.lease import Lease, LeasedScheduler

LEASE_NAME: Final = "alerts"
# The lease outlives a tick long enough that a slow evaluation keeps it, short enough that a
# dead holder is replaced within a few ticks.
LEASE_TICKS: Final = 3


class AlertScheduler(LeasedScheduler[CheckReport]):
    """Runs ``service.check`` every ``interval`` in this process, when it holds the lease."""

    name = "nexus-alerts"

    def __init__(
        self,
        service: AlertService,
        lease: Lease,
        interval: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(lease, interval, clock)
        self.service = service

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
