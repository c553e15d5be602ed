"""`QueueWorker`: the running part of ``nexus worker`` — Dramatiq workers, one per lane.

Each lane gets a Dramatiq `Worker` of its own, on a broker connection of its own, with ``threads``
threads: a lane's threads only ever take that lane's messages, as the thread backend's pools do, so
a test set's hundreds of jobs never hold a thread a chat reply is waiting for. A worker fetches at
most as many messages as it has threads, so a job waits for a free thread, not behind a busy one.

While it runs, a beat thread refreshes the worker's Dramatiq heartbeat every
``redelivery_seconds / 4`` (Dramatiq itself beats only when it fetches, which a worker whose
threads are all busy does not do) and notes the worker in the live-worker set `/health` reads.

`QueueWorker.stop` drains: the threads finish the job they run (each is bounded by the job
deadline), the messages fetched but not started go back on their queue at once, and a job still
running when ``drain_seconds`` pass is delivered again after ``redelivery_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

import dramatiq
import redis

from nexus_core.ai.queue.broker import (
    ACTOR_NAME,
    new_broker,
    worker_member,
    workers_key,
)
from nexus_core.errors import QueueUnavailable

log = logging.getLogger("nexus.queue.worker")

BEATS_PER_TIMEOUT: Final = 4
POLL_MS: Final = 250  # how often an idle lane asks Redis for messages (at most)


class QueueWorker:
    """Runs ``run(job_id)`` for every message on ``lanes``, ``threads`` at a time per lane."""

    def __init__(
        self,
        url: str,
        namespace: str,
        redelivery_seconds: float,
        lanes: Sequence[str],
        threads: int,
        run: Callable[[str], object],
    ) -> None:
        self.lanes = tuple(lanes)
        self.threads = threads
        self.beat_seconds = redelivery_seconds / BEATS_PER_TIMEOUT
        self._key, self._member = workers_key(namespace), worker_member(self.lanes)

        def deliver(job_id: str) -> None:
            run(job_id)

        self._brokers = {lane: new_broker(url, namespace, redelivery_seconds) for lane in lanes}
        self._workers: dict[str, dramatiq.Worker] = {}
        for lane, broker in self._brokers.items():
            dramatiq.Actor(
                deliver,
                broker=broker,
                actor_name=ACTOR_NAME,
                queue_name=lane,
                priority=0,
                options={},
            )
            worker = dramatiq.Worker(
                broker, queues={lane}, worker_threads=threads, worker_timeout=POLL_MS
            )
            worker.queue_prefetch = threads  # Dramatiq's default hoards twice the threads
            self._workers[lane] = worker
        self._stopping = threading.Event()
        self._beater = threading.Thread(target=self._beat_until_stopped, name="nexus-beat")

    def start(self) -> None:
        """Beat once (`QueueUnavailable` when Redis does not answer), then take messages."""
        try:
            self.beat()
        except redis.RedisError as exc:
            raise QueueUnavailable(
                f"The job queue's Redis does not answer ({type(exc).__name__}); "
                "check REDIS_URL (or NEXUS_BROKER_URL)."
            ) from exc
        for worker in self._workers.values():
            worker.start()
        self._beater.start()

    def beat(self) -> None:
        """Refresh every lane's Dramatiq heartbeat and this worker's place in the live set."""
        for lane, broker in self._brokers.items():
            broker.do_qsize(lane)  # every broker call beats, and looks for dead workers' jobs
        client = next(iter(self._brokers.values())).client
        client.zadd(self._key, {self._member: time.time() * 1000})

    def _beat_until_stopped(self) -> None:
        while not self._stopping.wait(self.beat_seconds):
            try:
                self.beat()
            except redis.RedisError as exc:  # a blip: Dramatiq's consumers reconnect on their own
                log.warning("heartbeat not sent (%s)", type(exc).__name__)

    def stop(self, drain_seconds: float) -> None:
        """Finish the running jobs (up to ``drain_seconds``), hand back the rest, then stop."""
        stoppers = [
            threading.Thread(target=worker.stop, kwargs={"timeout": round(drain_seconds * 1000)})
            for worker in self._workers.values()
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self._stopping.set()  # beat until here: a draining worker is alive
        if self._beater.is_alive():
            self._beater.join()
        with contextlib.suppress(redis.RedisError):  # else the entry ages out of the live set
            next(iter(self._brokers.values())).client.zrem(self._key, self._member)
        for broker in self._brokers.values():
            broker.client.close()
