"""Dramatiq's Redis broker as Nexus sets it up, the sending side (`JobQueue`) and its state.

Every lane is a Dramatiq queue, ``<namespace>:<lane>``; a message is ``nexus_reply(job_id)``.
The broker runs without Dramatiq's middleware: the job's own code retries, times and records it
(retries, deadline, events), so Dramatiq only delivers. Its heartbeat timeout is
``NEXUS_QUEUE_REDELIVERY_SECONDS``: a worker silent that long counts as dead and the messages it
held go back on their queue. Dramatiq checks for dead workers on a share of its Redis calls; Nexus
has it check on every call (the check is one sorted-set range read), so a dead worker's job is
delivered again within the timeout plus a worker's poll.

``nexus worker`` processes also note themselves in ``<namespace>:__nexus_workers__`` (member
``host:pid|lane,lane``, scored by their last beat): `queue_state` reads it, with each lane's
waiting messages, for ``/health`` — the ``queue`` check of the whole deployment, and ``nexus health
--worker``, a worker container's own liveness probe (a live worker on this host).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import redis
from dramatiq import Message
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

from nexus_core.ai.lanes import CHAT_LANE
from nexus_core.errors import QueueUnavailable

ACTOR_NAME: Final = "nexus_reply"
SOCKET_TIMEOUT_SECONDS: Final = 5.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
QUEUE_UNAVAILABLE: Final = (
    "The reply could not be queued because the job queue (Redis) is not answering. Press Retry "
    "in a moment, and tell an admin if it lasts."
)


def workers_key(namespace: str) -> str:
    """The sorted set of live ``nexus worker`` processes."""
    return f"{namespace}:__nexus_workers__"


def worker_member(lanes: Collection[str]) -> str:
    """How this process names itself in `workers_key`: ``host:pid|lane,lane``."""
    return f"{socket.gethostname()}:{os.getpid()}|{','.join(lanes)}"


def new_broker(url: str, namespace: str, redelivery_seconds: float) -> RedisBroker:
    """A Dramatiq Redis broker: no middleware, dead workers looked for on every call."""
    client = redis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS
    )
    return RedisBroker(
        client=client,
        namespace=namespace,
        middleware=[],
        heartbeat_timeout=round(redelivery_seconds * 1000),
        maintenance_chance=MAINTENANCE_SCALE,
    )


class JobQueue:
    """Sends jobs to their lane's queue; a lane it does not know is sent to ``default``."""

    def __init__(self, broker: RedisBroker, lanes: Collection[str], default: str) -> None:
        self.broker = broker
        self.lanes = frozenset(lanes) | {default}
        self.default = default

    @classmethod
    def connect(
        cls,
        url: str,
        namespace: str,
        redelivery_seconds: float,
        lanes: Collection[str],
        default: str,
    ) -> JobQueue:
        """A queue on the broker at ``url`` (nothing is sent until a job is)."""
        return cls(new_broker(url, namespace, redelivery_seconds), lanes, default)

    def send(self, lane: str, job_id: str) -> None:
        """Queue a message that runs ``job_id``; `QueueUnavailable` when Redis does not answer."""
        queue = lane if lane in self.lanes else self.default
        message = Message(
            queue_name=queue, actor_name=ACTOR_NAME, args=(job_id,), kwargs={}, options={}
        )
        try:
            self.broker.enqueue(message)
        except redis.RedisError as exc:
            raise QueueUnavailable(QUEUE_UNAVAILABLE) from exc

    def close(self) -> None:
        """Release the broker's connections."""
        self.broker.client.close()


@dataclass(frozen=True)
class QueueState:
    """What Redis says of the queue: messages waiting per lane, and the live workers' lanes."""

    waiting: dict[str, int]
    workers: list[tuple[str, tuple[str, ...]]]  # (host:pid, its lanes), of the live ones

    def problems(self) -> list[str]:
        """What is wrong: no live worker, none on the chat lane (every chat reply would wait for
        one), or jobs waiting on a lane no live worker takes."""
        if not self.workers:
            return ["no `nexus worker` is alive: AI replies wait until one starts"]
        served = self.workers_per_lane()
        problems = []
        if CHAT_LANE in self.waiting and not served.get(CHAT_LANE):
            waiting = self.waiting[CHAT_LANE]
            problems.append(
                f"no live worker takes the {CHAT_LANE} lane ({waiting} waiting): chat replies wait"
            )
        problems += [
            f"no live worker takes the {lane} lane ({count} waiting)"
            for lane, count in self.waiting.items()
            if count and not served.get(lane) and lane != CHAT_LANE
        ]
        return problems

    def workers_per_lane(self) -> dict[str, int]:
        """How many live workers take each lane of ``waiting``."""
        return {lane: sum(lane in lanes for _name, lanes in self.workers) for lane in self.waiting}

    def on_host(self, host: str) -> list[tuple[str, tuple[str, ...]]]:
        """The live workers running on ``host``."""
        return [(name, lanes) for name, lanes in self.workers if name.split(":")[0] == host]

    def summary(self) -> str:
        """``2 workers; waiting: chat 0, compare 3; workers per lane: chat 1, compare 1``."""
        count = len(self.workers)
        waiting = ", ".join(f"{lane} {n}" for lane, n in self.waiting.items())
        per_lane = ", ".join(f"{lane} {n}" for lane, n in self.workers_per_lane().items())
        return (
            f"{count} worker{'s' if count != 1 else ''}; waiting: {waiting}; "
            f"workers per lane: {per_lane}"
        )


def queue_state(
    client: redis.Redis, namespace: str, lanes: Collection[str], redelivery_seconds: float
) -> QueueState:
    """Read the queue's state (Redis errors reach the caller)."""
    since_ms = (time.time() - redelivery_seconds) * 1000
    pipe = client.pipeline(transaction=False)
    for lane in lanes:
        pipe.llen(f"{namespace}:{lane}")
    pipe.zrangebyscore(workers_key(namespace), since_ms, "+inf")
    *lengths, members = pipe.execute()
    workers = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        name, _, served = text.partition("|")
        workers.append((name, tuple(lane for lane in served.split(",") if lane)))
    return QueueState(dict(zip(lanes, (int(n) for n in lengths), strict=True)), workers)
