"""Redaction at write time: each kind of personal data masked, and its near misses left alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from nexus_core.app_context import AppContext
from nexus_core.db.engine import Database
from nexus_core.db.models import Feedback, FeedbackNote, Message
from nexus_core.errors import ConfigError
from nexus_core.ops.events import ApiEventLogger
from nexus_core.privacy.redaction import KINDS, Redactor, luhn_valid
from nexus_core.settings import Settings
from tests.fakes.gemini_server import FakeGeminiServer
from tests.test_cli import chat_env, run_chat, run_nexus

EVERYTHING = Redactor.of(KINDS)

# (text, what it must become with every kind on)
MASKED = [
    ("mail me at ada.lovelace+nexus@example.co.uk today", "mail me at [email] today"),
    ("<bob_smith@mail.example.com>", "<[email]>"),
    ("FIRST.LAST@EXAMPLE.ORG.", "[email]."),
    ("call +44 20 7946 0958 now", "call [phone] now"),
    ("call +1 (415) 555-0132.", "call [phone]."),
    ("ring (020) 7946 0958", "ring [phone]"),
    ("US: 415-555-0132", "US: [phone]"),
    ("or 415.555.0132", "or [phone]"),
    ("+4915112345678 is my mobile", "[phone] is my mobile"),
    ("card 4111 1111 1111 1111 expires", "card [card] expires"),
    ("4111-1111-1111-1111", "[card]"),
    ("5500005555555559", "[card]"),
    ("amex 3782 822463 10005", "amex [card]"),
    ("key AIzaSyA1234567890abcdefghijklmnopqrstuv", "key [secret]"),
    ("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx12", "OPENAI_API_KEY=[secret]"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "token [secret]"),
    ("AKIAIOSFODNN7EXAMPLE in the config", "[secret] in the config"),
    ("slack xoxb-123456789012-abcdefghij", "slack [secret]"),
    ("my password: hunter2!!", "my password: [secret]"),
    ("password is correct-horse-battery", "password is [secret]"),
    ("api_key = 'abc123def456'", "api_key = [secret]"),
    (
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "Bearer [secret]",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "[secret]",
    ),
]

# Text that looks close but is not personal data: it must come back unchanged.
NEAR_MISSES = [
    "the order 1234567890123 shipped",  # 13 digits failing Luhn
    "4111 1111 1111 1112",  # a card-shaped number failing Luhn
    "invoice 20261204-0001",
    "released on 2026-12-04 at 14:05:33",
    "version 1.67.0 and 3.11.7",
    "job 3f2b8c1e-9d4a-4b7e-8f6a-123456789012 failed",
    "user@localhost has no domain",
    "an @mention and a #tag",
    "email me (at) example (dot) com",
    "the ratio was 415/555/0132",
    "port 127.0.0.1:5432 is PostgreSQL",
    "1,234,567 tokens cost $12.34",
    "p95 latency 2450 ms over 60 minutes",
    "the password field is empty",
    "reset your password",
    "sk-short",
    "AIza is how Google keys start",
    "call extension 4021",
    "ISBN 978-0-306-40615-7",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_each_kind_of_personal_data_is_masked(text: str, expected: str) -> None:
    assert EVERYTHING.redact(text) == expected


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_pass_through_unchanged(text: str) -> None:
    assert EVERYTHING.redact(text) == text


def test_only_the_configured_kinds_are_masked() -> None:
    text = "ada@example.com, +44 20 7946 0958, 4111 1111 1111 1111, password: hunter22"
    assert Redactor.of(["emails"]).redact(text) == (
        "[email], +44 20 7946 0958, 4111 1111 1111 1111, password: hunter22"
    )
    assert Redactor.of(["cards", "secrets"]).redact(text) == (
        "ada@example.com, +44 20 7946 0958, [card], password: [secret]"
    )
    assert Redactor().redact(text) == text
    assert not Redactor() and Redactor.of(["phones"])


def test_luhn_accepts_real_test_numbers_and_refuses_one_digit_off() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


# --- wired in: what is stored, what the model receives, what the event log holds -------------

TYPED = "Please email ada@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111."
MASKED_TEXT = "Please email [email] or call [phone] about card [card]."


def chat_with_redaction(
    settings: Settings, server: FakeGeminiServer, **extra: str
) -> tuple[str, str]:
    """Send TYPED through `nexus chat` with every kind masked; (stored text, what the model got)."""
    assert run_nexus(settings, "init").returncode == 0
    server.enqueue(text="Noted: card 4111 1111 1111 1111, mail ada@example.com.")
    env = chat_env(settings, server.base_url) | {"NEXUS_REDACT": ",".join(KINDS), **extra}
    done = run_chat(settings, env, "--user", "admin", "--persona", "Nexus Assistant", TYPED)
    assert done.returncode == 0, done.stderr
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            stored = session.scalar(select(Message.content).where(Message.role == "user"))
            reply = session.scalar(select(Message.content).where(Message.role == "assistant"))
    finally:
        db.dispose()
    assert reply == "Noted: card [card], mail [email]."  # a reply may quote what was typed
    return stored or "", server.last_request.raw_body.decode()


def test_a_masked_message_is_stored_masked_and_the_model_gets_what_was_typed(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    stored, sent = chat_with_redaction(settings, gemini_server)

    assert stored == MASKED_TEXT
    assert "ada@example.com" in sent and "4111 1111 1111 1111" in sent
    log = settings.event_log_path.read_text()
    # The card's digits, not "4111" alone: a random UUID in the log holds that once in a while.
    assert "ada@example.com" not in log
    assert not any(card in log for card in ("4111 1111 1111 1111", "4111111111111111", "1111 1111"))


def test_with_redact_prompts_the_model_gets_the_masked_text_too(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    stored, sent = chat_with_redaction(settings, gemini_server, NEXUS_REDACT_PROMPTS="true")

    assert stored == MASKED_TEXT
    assert "ada@example.com" not in sent and "[email]" in sent


def test_the_event_log_masks_text_fields_and_keeps_ids(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    with ApiEventLogger(path, scrub=EVERYTHING.redact) as log:
        log.emit("note", user_id=7, detail="from ada@example.com", job_id="x-ada@example.com")

    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["detail"] == "from [email]"
    assert record["job_id"] == "x-ada@example.com" and record["user_id"] == 7


def test_an_unknown_kind_is_a_clear_settings_error() -> None:
    with pytest.raises(ConfigError, match="NEXUS_REDACT takes emails, phones, cards, secrets"):
        Settings.from_sources({"NEXUS_REDACT": "emails,addresses"}, secrets_file=None)


def test_feedback_text_and_triage_notes_are_stored_masked(ctx: AppContext) -> None:
    ctx.init()
    masking = AppContext(replace(ctx.settings, redact="emails,phones"))
    try:
        admin = masking.users.get("admin")
        item = masking.feedback.submit(
            admin, category="bug", priority="high", description="Call me on +44 20 7946 0958"
        )
        note = masking.triage.add_note(item.id, "He wrote from bob@example.org", admin)
        assert item.description == "Call me on [phone]"
        assert note.summary == "Note: He wrote from [email]"
        with masking.db.session() as session:
            stored = set(session.scalars(select(FeedbackNote.text)))
            described = set(session.scalars(select(Feedback.description)))
        assert stored == {"He wrote from [email]"} and described == {"Call me on [phone]"}
    finally:
        masking.close()
