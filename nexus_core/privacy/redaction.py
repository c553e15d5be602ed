"""Redaction at write time: personal data and secrets masked in text before it is stored.

``NEXUS_REDACT`` names the kinds to mask — ``emails``, ``phones``, ``cards``, ``secrets`` — and
each match becomes a label (``[email]``, ``[phone]``, ``[card]``, ``[secret]``). The patterns
lean towards precision: a card number must pass the Luhn check, a phone number needs a leading
``+`` or separators between digit groups (so order numbers, dates, times, versions and ids pass
through), and a secret must look like a known key format or follow a word such as ``password``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

EMAILS: Final = "emails"
PHONES: Final = "phones"
CARDS: Final = "cards"
SECRETS: Final = "secrets"
KINDS: Final = (EMAILS, PHONES, CARDS, SECRETS)
LABELS: Final = {EMAILS: "[email]", PHONES: "[phone]", CARDS: "[card]", SECRETS: "[secret]"}

EMAIL_PATTERN: Final = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?!\w)"
)
# International (+CC …) or grouped national numbers: 7–15 digits in groups split by a space,
# dot, dash or brackets. A bare run of digits is left alone (an order number, an id).
PHONE_PATTERN: Final = re.compile(
    r"(?<![\w+])(?:\+\d{7,15}"
    r"|\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}"
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]\d{3,4}"
    r"|\d{3}[ .-]\d{3}[ .-]\d{4}"
    r"|0\d{2,4}[ ]\d{3,4}[ ]\d{3,4})(?![\w.-]?\d)"
)
# 13–19 digits, optionally in groups of 4 (or 4-6-5 for American Express); Luhn decides.
CARD_PATTERN: Final = re.compile(r"(?<![\w.+-])(?:\d[ -]?){12,18}\d(?![\w-])")
SECRET_PATTERNS: Final = (
    re.compile(r"AIza[0-9A-Za-z_-]{35}"),  # Google API key
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),  # OpenAI / Anthropic style keys
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"),  # GitHub tokens
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # a JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
)
# "password: hunter2", "api_key=…", "token …": the value after the word, not the word.
SECRET_ASSIGNMENT: Final = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token)\b(\s*[:=]\s*|\s+is\s+)"
    r"(\S{6,})"
)


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn checksum that every payment card number carries."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return LABELS[CARDS] if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return LABELS[PHONES] if 7 <= len(digits) <= 15 else match.group()


@dataclass(frozen=True)
class Redactor:
    """Masks the configured kinds of personal data in text; with no kinds it changes nothing."""

    kinds: frozenset[str] = frozenset()

    @classmethod
    def of(cls, kinds: Iterable[str]) -> Redactor:
        """A redactor for ``kinds`` (names from ``KINDS``; unknown names are the caller's to
        refuse, as settings do)."""
        return cls(frozenset(kinds))

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def redact(self, text: str) -> str:
        """``text`` with every match of the configured kinds replaced by its label."""
        if not self.kinds or not text:
            return text
        if SECRETS in self.kinds:  # first: a key may contain digits a card or phone would take
            for pattern in SECRET_PATTERNS:
                text = pattern.sub(LABELS[SECRETS], text)
            text = SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + m.group(2) + LABELS[SECRETS], text)
        if EMAILS in self.kinds:
            text = EMAIL_PATTERN.sub(LABELS[EMAILS], text)
        if CARDS in self.kinds:  # before phones: a grouped card number looks like a phone
            text = CARD_PATTERN.sub(_card, text)
        if PHONES in self.kinds:
            text = PHONE_PATTERN.sub(_phone, text)
        return text


HELD_ORIGINALS: Final = 512  # the newest masked messages whose typed text the model may see


class HeldOriginals:
    """The typed text of the newest masked messages, in this process's memory only, so the model
    answers what the person wrote while the database keeps the masked text (unless
    ``NEXUS_REDACT_PROMPTS``). Bounded: the oldest are forgotten first; a job run by another
    process (the queue backend's workers) sees the masked text."""

    def __init__(self, capacity: int = HELD_ORIGINALS) -> None:
        self.capacity = capacity
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, message_id: int, text: str) -> None:
        """Keep ``text`` as what message ``message_id`` said before it was masked."""
        with self._lock:
            self._texts[message_id] = text
            self._texts.move_to_end(message_id)
            while len(self._texts) > self.capacity:
                self._texts.popitem(last=False)

    def get(self, message_id: int, stored: str) -> str:
        """What message ``message_id`` said as typed, if still held; else ``stored``."""
        with self._lock:
            return self._texts.get(message_id, stored)

    def release(self, message_id: int) -> None:
        """Forget message ``message_id``'s typed text (its reply is stored)."""
        with self._lock:
            self._texts.pop(message_id, None)
