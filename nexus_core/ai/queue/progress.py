"""`RedisJobBroker`: the progress of jobs over Redis, so any app process can follow any worker.

Each job has a Redis stream, ``<namespace>:reply:<job id>``, of what `JobBroker` keeps in memory
for the thread backend: ``update`` entries (a `JobUpdate` as JSON), ``delta`` entries (a piece of
reply text) and ``restart`` entries (an attempt starts over: forget its text). A follower reads the
stream from its start, so one that arrives late — or a page that reruns — sees the whole reply so
far; then it blocks on new entries. State changes are also published on the session's channel,
``<namespace>:session:<public id>``, for ``subscribe``. Streams expire an hour after their last
entry.

Progress is a convenience, never the record: publishing swallows Redis errors (the job goes on and
stores its reply), and a follower that cannot read Redis stops, so the page falls back to the
stored row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import redis

from nexus_core.ai.progress import FINISHED_STATES, JobUpdate, Listener

log = logging.getLogger("nexus.queue.progress")

STREAM_TTL_SECONDS: Final = 3600
STREAM_MAX_ENTRIES: Final = 20_000  # a reply of 100 000 characters in 5-character pieces
READ_BLOCK_MS: Final = 250
SOCKET_TIMEOUT_SECONDS: Final = 5.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
LISTEN_SLEEP_SECONDS: Final = 0.1
UPDATE, DELTA, RESTART = "update", "delta", "restart"


@dataclass
class _Replay:
    """What a follower knows of a job's stream: the current attempt's text and the last update."""

    chunks: list[str] = field(default_factory=list)
    last: JobUpdate | None = None
    restarted: bool = False  # an attempt started over since the follower last looked

    def add(self, entry: dict[str, str]) -> str | JobUpdate | None:
        """Take one stream entry; returns what it brings to show (text or a state change)."""
        kind = entry.get("kind")
        if kind == DELTA:
            self.chunks.append(entry["text"])
            return entry["text"]
        if kind == RESTART:
            self.chunks, self.restarted = [], True
            return None
        if kind == UPDATE:
            self.last = JobUpdate(**json.loads(entry["data"]))
            return self.last
        return None

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.status in FINISHED_STATES


class RedisJobBroker:
    """Job progress published to and followed from Redis streams (the queue backend's)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    @classmethod
    def from_url(cls, url: str, namespace: str) -> RedisJobBroker:
        """A broker on the Redis at ``url`` with short socket timeouts."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        return cls(client, namespace)

    def stream_key(self, job_id: str) -> str:
        return f"{self.namespace}:reply:{job_id}"

    def session_channel(self, session_public_id: str) -> str:
        return f"{self.namespace}:session:{session_public_id}"

    # --- publishing (the worker) ----------------------------------------------------------------

    def update(self, update: JobUpdate) -> None:
        """Record a state change and tell the session's subscribers."""
        data = json.dumps(asdict(update))
        self._add(update.job_id, {"kind": UPDATE, "data": data}, (update.session_public_id, data))

    def delta(self, job_id: str, text: str) -> None:
        """Publish a piece of reply text."""
        self._add(job_id, {"kind": DELTA, "text": text})

    def restart(self, job_id: str) -> None:
        """Forget the partial text of a failed attempt."""
        self._add(job_id, {"kind": RESTART})

    def _add(
        self, job_id: str, entry: dict[str, Any], publish: tuple[str, str] | None = None
    ) -> None:
        key = self.stream_key(job_id)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(key, entry, maxlen=STREAM_MAX_ENTRIES, approximate=True)
            pipe.expire(key, STREAM_TTL_SECONDS)
            if publish is not None:
                pipe.publish(self.session_channel(publish[0]), publish[1])
            pipe.execute()
        except redis.RedisError as exc:  # progress is a convenience: the job goes on
            log.warning("job %s: progress not published (%s)", job_id, type(exc).__name__)

    # --- following (the app) --------------------------------------------------------------------

    def knows(self, job_id: str) -> bool:
        """Whether the job's progress can be followed here (its stream exists and Redis answers)."""
        try:
            return bool(self.client.exists(self.stream_key(job_id)))
        except redis.RedisError:
            return False

    def text(self, job_id: str) -> str:
        """The reply text of the current attempt so far ('' when Redis cannot say)."""
        replay = _Replay()
        try:
            for _id, entry in self.client.xrange(self.stream_key(job_id)):
                replay.add(entry)
        except redis.RedisError:
            return ""
        return "".join(replay.chunks)

    def watch(self, job_id: str, timeout: float = 300.0) -> Iterator[str | JobUpdate]:
        """Yield reply text (``str``) and state changes (``JobUpdate``) until the job ends.

        As `JobBroker.watch`: it starts with the last state change and the current attempt's text,
        and stops early when an attempt starts over after some text was shown (re-read the job and
        watch again). It also stops when Redis cannot be read.
        """
        deadline = time.monotonic() + timeout
        key, replay, last_id = self.stream_key(job_id), _Replay(), "0-0"
        try:
            for entry_id, entry in self.client.xrange(key):
                replay.add(entry)
                last_id = entry_id
        except redis.RedisError:
            return
        sent, replay.restarted = bool(replay.chunks), False
        yield from ([replay.last] if replay.last else []) + list(replay.chunks)
        while not replay.done and time.monotonic() < deadline:
            try:
                answer = self.client.xread({key: last_id}, block=READ_BLOCK_MS)
            except redis.RedisError:
                return
            for _key, entries in answer:
                for entry_id, entry in entries:
                    last_id = entry_id
                    shown = replay.add(entry)
                    if replay.restarted and sent:
                        return
                    replay.restarted = False
                    if shown is not None:
                        sent = sent or isinstance(shown, str)
                        yield shown

    def subscribe(self, session_public_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every state change of the session's jobs, from any process;
        returns an unsubscribe. Without Redis nothing is heard (the job still runs)."""

        def hear(message: dict[str, Any]) -> None:
            try:
                listener(JobUpdate(**json.loads(message["data"])))
            except Exception:  # a broken listener must not stop the others
                log.debug("a job listener failed", exc_info=True)

        try:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(**{self.session_channel(session_public_id): hear})
        except redis.RedisError:
            return lambda: None
        thread = pubsub.run_in_thread(sleep_time=LISTEN_SLEEP_SECONDS, daemon=True)

        def unsubscribe() -> None:
            thread.stop()
            pubsub.close()

        return unsubscribe

    def close(self) -> None:
        """Release the connections."""
        self.client.close()
