"""The queue backend of AI jobs (``NEXUS_JOB_BACKEND=queue``): Dramatiq on Redis.

The app stores the job row, as with the thread backend, and sends one Dramatiq message per job to
its lane's queue (`JobQueue`); ``nexus worker`` processes (`QueueWorker`) take the messages and run
the jobs with the same `ResponseWorker` code. The job row stays the source of truth: a message only
says "run job X", and running a job that has ended already does nothing.

Why Dramatiq: its Redis broker keeps a fetched message in the worker's unacknowledged set until
the job has run, and moves the unacknowledged messages of a worker whose heartbeat stopped back
onto the queue — so a job whose worker was killed is delivered again, with nothing written here.
A job that is delivered twice is answered once: `JobStore.claim` takes it over and only its owner
may store the reply (`nexus_core.ai.job_store`).

Progress travels over Redis too (`RedisJobBroker`): each job has a stream of its reply's text and
state changes that any app process can follow, so a reply streams from whichever worker runs it.
"""

from nexus_core.ai.queue.broker import ACTOR_NAME, JobQueue, QueueState, queue_state
from nexus_core.ai.queue.progress import RedisJobBroker
from nexus_core.ai.queue.worker import QueueWorker

__all__ = ["ACTOR_NAME", "JobQueue", "QueueState", "QueueWorker", "RedisJobBroker", "queue_state"]
