"""The job store's reads: the context a job answers, the persona version, when the wait began."""

from __future__ import annotations

import pytest

from nexus_core.ai.job_store import HISTORY_BATCH, JobStore
from nexus_core.ai.response import HistoryItem
from nexus_core.chat import ChatService
from nexus_core.db.engine import Database
from nexus_core.db.models import Message
from nexus_core.personas import PersonaService
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD

MAX_ATTEMPTS = 4


@pytest.fixture
def user(db: Database) -> UserView:
    PersonaService(db).create("Pirate", "Speak like a pirate.", temperature=0.2)
    return UserService(db).create("quinn", PASSWORD)


def store(db: Database, budget_chars: int = 24_000) -> JobStore:
    return JobStore(db, "test-host:1:abcd", MAX_ATTEMPTS, budget_chars)


def expected_context(messages: list[tuple[str, str]], budget_chars: int) -> list[HistoryItem]:
    """The newest user/assistant messages until the budget is spent (the last one overshoots)."""
    newest_first: list[HistoryItem] = []
    used = 0
    for role, content in reversed(messages):
        if role == "error":
            continue
        newest_first.append(HistoryItem(role, content))
        used += len(content)
        if used > budget_chars:
            break
    return newest_first[::-1]


@pytest.mark.parametrize("budget_chars", [1_000, 10**9])
def test_the_context_is_the_newest_messages_that_fit_across_pages_without_error_bubbles(
    db: Database, user: UserView, budget_chars: int
) -> None:
    chat = ChatService(db)
    session = chat.create_session(user, "Pirate")
    roles = ("user", "assistant", "user", "error")
    with db.session() as s:
        for i in range(3 * HISTORY_BATCH + 7):  # several pages of history
            role = roles[i % len(roles)]
            s.add(Message(session_id=session.id, role=role, content=f"m{i} " + "x" * (i % 13)))
    asked = chat.add_user_message(session.public_id, user, "the question")
    chat.add_user_message(session.public_id, user, "asked later, not part of the context")
    job_id = store(db, budget_chars).create(asked.id, user, "simulated").job_id

    history = store(db, budget_chars).start(job_id).history

    stored = [(m.role, m.content) for m in chat.messages(session.public_id, user)]
    assert history == expected_context(stored[:-1], budget_chars)
    assert history[-1] == HistoryItem("user", "the question")
    if budget_chars > 10**8:
        assert len(history) == len([m for m in stored[:-1] if m[0] != "error"])


def test_a_job_answers_with_the_persona_version_its_session_started_with(
    db: Database, user: UserView
) -> None:
    chat = ChatService(db)
    session = chat.create_session(user, "Pirate")
    PersonaService(db).edit("Pirate", system_instruction="Speak like a polite pirate.")
    asked = chat.add_user_message(session.public_id, user, "Ahoy?")
    job_id, public_id, run_id = store(db).create(asked.id, user, "simulated")

    job = store(db).start(job_id)

    assert public_id == session.public_id and job.session_public_id == session.public_id
    assert run_id is None and job.run_id is None
    assert (job.provider, job.model, job.temperature) == (None, None, None)
    assert (job.persona.name, job.persona.version) == ("Pirate", 1)
    assert job.persona.system_instruction == "Speak like a pirate."
    assert job.persona.temperature == 0.2
    assert store(db).get(job_id).status == "running"


def test_a_retry_is_timed_from_the_retry_press_and_a_first_answer_from_the_message(
    db: Database, user: UserView
) -> None:
    chat = ChatService(db)
    session = chat.create_session(user, "Pirate")
    asked = chat.add_user_message(session.public_id, user, "Ahoy?")
    first_id = store(db).create(asked.id, user, "simulated").job_id
    assert store(db).start(first_id).started_from == asked.created_at
    store(db).fail(first_id, 1, "http_400", "The request was refused.", "simulated")

    retry_id = store(db).create(0, user, "simulated", retry_of=first_id).job_id
    retry = store(db).start(retry_id)

    assert retry.user_message_id == asked.id
    assert retry.started_from == store(db).get(retry_id).created_at > asked.created_at
    failed = store(db).get(first_id)
    assert (failed.status, failed.attempt, failed.error_type) == ("failed", 1, "http_400")
    assert [m.role for m in chat.messages(session.public_id, user)] == ["user", "error"]
