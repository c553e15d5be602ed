"""`nexus worker`: run AI jobs from the queue backend until SIGTERM (or Ctrl-C), then drain."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Final

from nexus_core.ai.lanes import OVERDUE_GRACE_SECONDS
from nexus_core.errors import ConfigError

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOT_QUEUED: Final = (
    "`nexus worker` runs the queue backend's jobs; set NEXUS_JOB_BACKEND=queue and REDIS_URL "
    "(here the app runs its jobs itself)."
)


def cmd_worker(ctx: AppContext, args: argparse.Namespace) -> int:
    settings = ctx.settings
    if settings.job_backend != "queue" or not settings.broker_url:
        raise ConfigError(NOT_QUEUED)
    from nexus_core.ai.queue import QueueWorker

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    threads = args.threads or settings.worker_threads
    runner = QueueWorker(
        settings.broker_url,
        settings.queue_namespace,
        settings.queue_redelivery_seconds,
        args.lanes,
        threads,
        ctx.worker.run_delivered,
    )
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in STOP_SIGNALS}
    try:
        runner.start()
        print(
            f"nexus worker: lanes {','.join(args.lanes)}, {threads} threads each; "
            "SIGTERM drains and stops",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(1.0):
            pass
        print("nexus worker: draining", file=sys.stderr, flush=True)
        runner.stop(settings.job_deadline_seconds + OVERDUE_GRACE_SECONDS)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print("nexus worker: stopped", file=sys.stderr, flush=True)
    return 0
