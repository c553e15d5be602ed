"""The SQL of the reply pipeline, built once at import with bound parameters.

Every message runs these statements, so they are constants: SQLAlchemy compiles each one once and
finds it in its cache by a key computed once, and ``JobStore`` runs them on a plain Core connection
(``Database.transaction``), without the ORM's unit of work. Building them per call, or loading ORM
objects, cost more than SQLite's own work.

``UPDATE_JOB`` and ``UPDATE_SESSION`` set the columns named by the parameters they are given (one
compiled form per set of names); the row is picked by ``job_id`` / ``chat_id``.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from nexus_core.db.models import AiJob, ChatSession, Message, Persona, PersonaVersion

# The columns a version of a persona overrides; the version's own are labelled ``version_*``.
PERSONA_FIELDS = ("description", "system_instruction", "avatar", "color", "model", "temperature")

ACTIVE_STATES = ("queued", "running", "retrying")

# In the order of ``JobView``'s fields.
JOB_COLUMNS = (
    AiJob.id,
    AiJob.session_id,
    AiJob.user_message_id,
    AiJob.status,
    AiJob.attempt,
    AiJob.max_attempts,
    AiJob.next_retry_at,
    AiJob.last_error,
    AiJob.error_type,
    AiJob.reply_message_id,
    AiJob.created_at,
    AiJob.finished_at,
)

JOB_BY_ID = select(*JOB_COLUMNS).where(AiJob.id == bindparam("job_id"))

JOBS_OF_SESSION = (
    select(*JOB_COLUMNS).where(AiJob.session_id == bindparam("chat_id")).order_by(AiJob.created_at)
)

JOB_TO_RETRY = select(AiJob.status, AiJob.user_message_id, AiJob.channel).where(
    AiJob.id == bindparam("job_id")
)

# The user message a new job answers, with its session (None when the session row is gone) and
# the session's run and provider override, if it is a hidden session of a prompt run.
MESSAGE_TO_ANSWER = (
    select(
        Message.role,
        ChatSession.id.label("chat_id"),
        ChatSession.public_id,
        ChatSession.user_id,
        ChatSession.persona_id,
        ChatSession.deleted_at,
        ChatSession.run_id,
        ChatSession.provider,
    )
    .outerjoin(ChatSession, ChatSession.id == Message.session_id)
    .where(Message.id == bindparam("message_id"))
)

_earlier = aliased(AiJob)

# Everything a job needs to start, in one row: the session (with its run and its overrides of
# provider, model, temperature and system instruction), the persona at the session's version
# (``version_id`` is None when that version is not stored: the persona's own columns hold it),
# when the user asked, and whether this job retries an earlier one for the same message.
JOB_TO_START = (
    select(
        AiJob.user_message_id,
        AiJob.user_id,
        AiJob.created_at,
        AiJob.channel,
        ChatSession.id.label("chat_id"),
        ChatSession.public_id,
        ChatSession.persona_version,
        ChatSession.run_id,
        ChatSession.provider.label("provider_override"),
        ChatSession.model.label("model_override"),
        ChatSession.temperature.label("temperature_override"),
        ChatSession.instruction.label("instruction_override"),
        Persona.id.label("persona_id"),
        Persona.name,
        Persona.active,
        *(getattr(Persona, name) for name in PERSONA_FIELDS),
        PersonaVersion.id.label("version_id"),
        *(getattr(PersonaVersion, name).label(f"version_{name}") for name in PERSONA_FIELDS),
        Message.created_at.label("asked_at"),
        exists()
        .where(_earlier.user_message_id == AiJob.user_message_id, _earlier.id != AiJob.id)
        .label("is_retry"),
    )
    .join(ChatSession, ChatSession.id == AiJob.session_id)
    .join(Persona, Persona.id == ChatSession.persona_id)
    .join(Message, Message.id == AiJob.user_message_id)
    .outerjoin(
        PersonaVersion,
        and_(
            PersonaVersion.persona_id == Persona.id,
            PersonaVersion.version == ChatSession.persona_version,
        ),
    )
    .where(AiJob.id == bindparam("job_id"))
)

# The same, for a job delivered by the queue backend: with its state and attempts so far, and the
# job's row locked until the transaction ends, so two deliveries of one job take turns.
JOB_TO_CLAIM = JOB_TO_START.add_columns(AiJob.status, AiJob.attempt).with_for_update(of=AiJob)

# One page of a session's messages, newest first, from ``upto_id`` down (keyset paging). The ids
# are picked first, so only ids get sorted, not contents (SQLite's session index covers the ids).
_newest_ids = (
    select(Message.id)
    .where(Message.session_id == bindparam("chat_id"), Message.id <= bindparam("upto_id"))
    .order_by(Message.id.desc())
    .limit(bindparam("rows"))
)
HISTORY_PAGE = (
    select(Message.id, Message.role, Message.content)
    .where(Message.id.in_(_newest_ids.scalar_subquery()))
    .order_by(Message.id.desc())
)

JOB_TO_FAIL = select(AiJob.session_id, AiJob.user_message_id).where(AiJob.id == bindparam("job_id"))

# Unfinished jobs (``states``) with the public id of their session, if it still exists.
UNFINISHED_JOBS = (
    select(
        AiJob.id,
        AiJob.owner,
        AiJob.attempt,
        AiJob.provider,
        AiJob.session_id,
        AiJob.user_message_id,
        AiJob.user_id,
        ChatSession.public_id,
        ChatSession.run_id,
    )
    .outerjoin(ChatSession, ChatSession.id == AiJob.session_id)
    .where(AiJob.status.in_(bindparam("states", expanding=True)))
)

# For health checks. The oldest chat reply still waiting for a worker (a prompt run's jobs wait
# in their own lanes by design), and how many jobs have run since before ``started_before``.
OLDEST_QUEUED_CHAT_JOB = (
    select(func.min(AiJob.created_at))
    .join(ChatSession, ChatSession.id == AiJob.session_id)
    .where(AiJob.status == "queued", ChatSession.run_id.is_(None))
)
OVERDUE_JOB_COUNT = (
    select(func.count())
    .select_from(AiJob)
    .where(
        AiJob.status.in_(("running", "retrying")),
        AiJob.started_at < bindparam("started_before"),
    )
)

INSERT_JOB = insert(AiJob)
INSERT_MESSAGE = insert(Message)
UPDATE_JOB = update(AiJob).where(AiJob.id == bindparam("job_id"))
# Ends a job only while it is unfinished and still run by ``owned_by``: a job that another delivery
# took over (or finished) is left alone, so a reply is stored once per job.
FINISH_OWNED_JOB = update(AiJob).where(
    AiJob.id == bindparam("job_id"),
    AiJob.owner == bindparam("owned_by"),
    AiJob.status.in_(ACTIVE_STATES),
)
UPDATE_SESSION = update(ChatSession).where(ChatSession.id == bindparam("chat_id"))
