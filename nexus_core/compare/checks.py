r"""Test sets as plain data: prompts, the checks their replies must pass, and a paste-in text form.

A test case is a prompt and up to ten checks. A check is one of

    contains         the reply contains the text, ignoring case
    not_contains     the reply does not contain the text, ignoring case
    regex            the reply matches the Python regular expression, case-sensitive unless the
                     pattern says ``(?i)``
    max_latency_ms   the reply took at most this many milliseconds (exactly the limit passes)

A reply that failed (no text) fails every check. A case frozen from a real conversation also keeps
the history before its prompt, the original reply (its baseline) and where it came from; the text
form below shows only the prompt and checks (``TestSetService.update`` keeps the rest). Test sets
are stored as JSON (``cases_to_json``) and typed into one text area in this form, one case per
block, blocks separated by a line ``---``::

    What is your refund policy?
    contains: refund
    not contains: I don't know
    regex: \d+ days
    max latency ms: 3000
    ---
    Say hello in French.
    contains: bonjour

The first lines of a block are the prompt; the lines after it are checks, one per line. A prompt
line that would read as a check or as the separator is written with one extra leading backslash
(``\contains: ...``, ``\---``), which the parser removes; ``format_test_set`` adds it.

The only guard on regular expressions is their length: Python's ``re`` has no timeout, so a
pattern that backtracks catastrophically can still be slow on a long reply.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import regex

from nexus_core.ai.response import HistoryItem
from nexus_core.errors import ValidationError

CheckKind = Literal["contains", "not_contains", "regex", "max_latency_ms"]

CHECK_KINDS: Final[tuple[CheckKind, ...]] = ("contains", "not_contains", "regex", "max_latency_ms")
MAX_CHECKS_PER_CASE: Final = 10
MAX_CASES: Final = 100
MAX_PROMPT_CHARS: Final = 8_000
MAX_VALUE_CHARS: Final = 500  # for every kind; for regex it is the guard against monster patterns
BLOCK_SEPARATOR: Final = "---"
ESCAPE: Final = "\\"
# How each kind is written in the text form, before its colon.
TEXT_LABELS: Final[dict[CheckKind, str]] = {
    "contains": "contains",
    "not_contains": "not contains",
    "regex": "regex",
    "max_latency_ms": "max latency ms",
}
# A check line of the text form; the label is case-insensitive and may use _ for spaces.
REGEX_TIMEOUT_SECONDS: Final = 0.2
CHECK_LINE: Final = re.compile(
    r"^\s*(?P<label>contains|not[ _]contains|regex|max[ _]latency[ _]ms)\s*:(?P<value>.*)$",
    re.IGNORECASE,
)
LINE_BREAKS: Final = ("\r", "\n")
HISTORY_ROLES: Final = ("user", "assistant")


@dataclass(frozen=True)
class Check:
    """One thing a reply must satisfy; ``value`` is the text, the pattern or the limit in ms.

    ``contains`` and ``not_contains`` ignore case; ``regex`` is case-sensitive unless the pattern
    starts with ``(?i)``; ``max_latency_ms`` holds a positive number (``"3000"``, ``"2,500"``).
    Every way of building a check validates it and raises ``ValidationError`` when it is wrong.
    """

    kind: CheckKind
    value: str

    def __post_init__(self) -> None:
        _validate(self.kind, self.value)

    @property
    def limit_ms(self) -> float | None:
        """The latency limit of a ``max_latency_ms`` check; ``None`` for the other kinds."""
        return _latency_limit(self.value) if self.kind == "max_latency_ms" else None

    def to_text(self) -> str:
        """The check as a line of the text form, such as ``not contains: sorry``."""
        return f"{TEXT_LABELS[self.kind]}: {self.value}"

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON-ready dict."""
        return {"kind": self.kind, "value": self.value}

    @classmethod
    def from_json(cls, data: Any) -> Check:
        """A check from its JSON form; raises ``ValidationError`` when it is malformed."""
        if not isinstance(data, dict):
            raise ValidationError("A check must be an object with a kind and a value.")
        value = data.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # a hand-written {"kind": "max_latency_ms", "value": 3000}
        return cls(kind=cast(CheckKind, data.get("kind")), value=cast(str, value))


@dataclass(frozen=True)
class CheckOutcome:
    """How one reply fared against one check; ``detail`` says why in plain words."""

    check: Check
    passed: bool
    detail: str


@dataclass(frozen=True)
class Baseline:
    """The reply a frozen case was first given: what a new version's reply is judged against."""

    text: str
    message_id: int | None = None
    model: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The baseline as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Baseline:
        """A baseline from its JSON form; raises ``ValidationError`` when it is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise ValidationError("A case's baseline must be an object with the reply's text.")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Origin:
    """Where a frozen case came from: the conversation, the user message, the persona version."""

    session_id: str
    message_id: int
    persona: str
    persona_version: int
    user_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The origin as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Origin:
        """An origin from its JSON form; raises ``ValidationError`` when it is malformed."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValidationError("A case's origin is malformed.") from exc


@dataclass(frozen=True)
class TestCase:
    """One prompt of a test set and the checks its replies must pass.

    A case frozen from a real conversation (``nexus_core.eval.freeze``) also holds the history
    before the prompt as the model saw it, the original reply (``baseline``) and its ``origin``.
    """

    __test__ = False  # tells pytest this is not a test class, despite its name

    prompt: str
    checks: tuple[Check, ...] = ()
    history: tuple[HistoryItem, ...] = ()
    baseline: Baseline | None = None
    origin: Origin | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "history", tuple(HistoryItem(*item) for item in self.history))
        if any(item.role not in HISTORY_ROLES for item in self.history):
            raise ValidationError("A case's history holds only user and assistant messages.")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValidationError("A test case needs a prompt.")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise ValidationError(
                f"A prompt holds at most {MAX_PROMPT_CHARS:,} characters; "
                f"this one has {len(self.prompt):,}."
            )
        if len(self.checks) > MAX_CHECKS_PER_CASE:
            raise ValidationError(
                f"A test case holds at most {MAX_CHECKS_PER_CASE} checks; "
                f"this one has {len(self.checks)}."
            )
        if not all(isinstance(check, Check) for check in self.checks):
            raise ValidationError("A test case's checks must be checks.")

    @property
    def frozen(self) -> bool:
        """Whether the case was frozen from a real conversation (it has a baseline reply)."""
        return self.baseline is not None

    def to_json(self) -> dict[str, Any]:
        """The case as a JSON-ready dict (the frozen context only when there is one)."""
        data: dict[str, Any] = {
            "prompt": self.prompt,
            "checks": [check.to_json() for check in self.checks],
        }
        if self.history:
            data["history"] = [item._asdict() for item in self.history]
        if self.baseline is not None:
            data["baseline"] = self.baseline.to_json()
        if self.origin is not None:
            data["origin"] = self.origin.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any) -> TestCase:
        """A case from its JSON form; raises ``ValidationError`` when it is malformed."""
        if not isinstance(data, dict):
            raise ValidationError("A test case must be an object with a prompt and checks.")
        checks = data.get("checks", [])
        if not isinstance(checks, list):
            raise ValidationError("A test case's checks must be a list.")
        prompt = cast(str, data.get("prompt"))  # __post_init__ refuses anything but text
        history = data.get("history", [])
        if not isinstance(history, list) or not all(
            isinstance(item, dict) and isinstance(item.get("content"), str) for item in history
        ):
            raise ValidationError("A test case's history must be a list of messages.")
        baseline, origin = data.get("baseline"), data.get("origin")
        return cls(
            prompt=prompt,
            checks=tuple(Check.from_json(check) for check in checks),
            history=tuple(HistoryItem(item.get("role", ""), item["content"]) for item in history),
            baseline=None if baseline is None else Baseline.from_json(baseline),
            origin=None if origin is None else Origin.from_json(origin),
        )


def evaluate(
    checks: Sequence[Check],
    reply: str | None,
    latency_ms: float | None,
    failed_error: str | None = None,
) -> list[CheckOutcome]:
    """Each check applied to one reply; a reply that failed (``None``) fails every check."""
    if reply is None:
        detail = f"no reply: {failed_error}" if failed_error else "no reply"
        return [CheckOutcome(check, False, detail) for check in checks]
    return [_apply(check, reply, latency_ms) for check in checks]


def passed(outcomes: Sequence[CheckOutcome], *, replied: bool) -> bool:
    """Whether a reply passed: there is one and every check passed (no checks is a pass)."""
    return replied and all(outcome.passed for outcome in outcomes)


def cases_to_json(cases: Sequence[TestCase]) -> list[dict[str, Any]]:
    """The cases as a JSON-ready list."""
    return [case.to_json() for case in cases]


def cases_from_json(data: Any) -> list[TestCase]:
    """Cases from their JSON form, in order; errors name the case (counting from 1)."""
    if not isinstance(data, list):
        raise ValidationError("A test set must be a list of test cases.")
    _check_case_count(len(data))
    cases = []
    for number, item in enumerate(data, start=1):
        try:
            cases.append(TestCase.from_json(item))
        except ValidationError as exc:
            raise ValidationError(f"Case {number}: {exc}") from exc
    return cases


def parse_test_set(text: str) -> list[TestCase]:
    """Cases from the text form (see the module docstring); errors name the block (from 1).

    Blank blocks (such as after a trailing ``---``) are skipped; empty text is no cases.
    """
    cases = []
    for number, lines in enumerate(_blocks(text), start=1):
        if not any(line.strip() for line in lines):
            continue
        try:
            cases.append(_parse_block(lines))
        except ValidationError as exc:
            raise ValidationError(f"Block {number}: {exc}") from exc
    _check_case_count(len(cases))
    return cases


def format_test_set(cases: Sequence[TestCase]) -> str:
    """The cases in the text form; ``parse_test_set`` reads it back to the same cases.

    Exact for prompts without surrounding whitespace and check values without it, which is
    what the parser produces (it strips both).
    """
    blocks = []
    for case in cases:
        prompt = [ESCAPE + line if _is_special(line) else line for line in _lines(case.prompt)]
        blocks.append("\n".join([*prompt, *(check.to_text() for check in case.checks)]))
    return f"\n{BLOCK_SEPARATOR}\n".join(blocks) + "\n" if blocks else ""


def _validate(kind: Any, value: Any) -> None:
    if kind not in CHECK_KINDS:
        raise ValidationError(f"Unknown check {kind!r}; use one of {', '.join(CHECK_KINDS)}.")
    label = TEXT_LABELS[kind]
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"A “{label}” check needs a value.")
    if any(brk in value for brk in LINE_BREAKS):
        raise ValidationError(f"A “{label}” check must fit on one line.")
    if len(value) > MAX_VALUE_CHARS:
        raise ValidationError(
            f"A “{label}” check holds at most {MAX_VALUE_CHARS} characters; "
            f"this one has {len(value):,}."
        )
    if kind == "regex":
        try:
            regex.compile(value)
        except (regex.error, OverflowError, RecursionError) as exc:
            raise ValidationError(f"The regex “{value}” is not valid: {exc}.") from exc
    elif kind == "max_latency_ms":
        _latency_limit(value)


def _latency_limit(value: str) -> float:
    try:
        limit = float(value.replace(",", ""))
    except ValueError as exc:
        raise ValidationError(
            f"The latency limit “{value}” is not a number of milliseconds."
        ) from exc
    if not math.isfinite(limit) or limit <= 0:
        raise ValidationError(f"The latency limit must be more than 0 ms, not “{value}”.")
    return limit


def _apply(check: Check, reply: str, latency_ms: float | None) -> CheckOutcome:
    quoted = f"“{check.value}”"
    if check.kind in ("contains", "not_contains"):
        found = check.value.casefold() in reply.casefold()
        detail = f"reply {'contains' if found else 'does not contain'} {quoted}"
        return CheckOutcome(check, found == (check.kind == "contains"), detail)
    if check.kind == "regex":
        try:
            # The `regex` package, not `re`: a user's pattern can backtrack for minutes, and
            # only `regex` can stop it (it releases the GIL, too).
            matched = regex.search(check.value, reply, timeout=REGEX_TIMEOUT_SECONDS) is not None
        except TimeoutError:
            detail = f"regex {quoted} took over {REGEX_TIMEOUT_SECONDS} s; simplify it"
            return CheckOutcome(check, False, detail)
        return CheckOutcome(
            check, matched, f"reply {'matches' if matched else 'does not match'} regex {quoted}"
        )
    limit = _latency_limit(check.value)
    if latency_ms is None:
        return CheckOutcome(check, False, "latency was not recorded")
    detail = f"took {_ms(latency_ms)} ms, limit {_ms(limit)} ms"
    return CheckOutcome(check, latency_ms <= limit, detail)


def _ms(value: float) -> str:
    """Milliseconds with thousands separators and no needless decimals: 4,210 or 2,500.5;
    under 1 ms, three significant digits (0.001, not 0)."""
    if 0 < abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _check_case_count(count: int) -> None:
    if count > MAX_CASES:
        raise ValidationError(f"A test set holds at most {MAX_CASES} cases; this one has {count}.")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in _lines(text):
        if line.strip() == BLOCK_SEPARATOR:
            blocks.append([])
        else:
            blocks[-1].append(line)
    return blocks


def _is_special(line: str) -> bool:
    """Whether a prompt line, less any leading backslashes, would read as a check or separator."""
    core = line.lstrip(ESCAPE)
    return core.strip() == BLOCK_SEPARATOR or CHECK_LINE.match(core) is not None


def _parse_block(lines: list[str]) -> TestCase:
    prompt_lines: list[str] = []
    checks: list[Check] = []
    for line in lines:
        match = CHECK_LINE.match(line)
        if match is not None:
            label = " ".join(match["label"].lower().replace("_", " ").split())
            kind = next(k for k, text in TEXT_LABELS.items() if text == label)
            checks.append(Check(kind, match["value"].strip()))
        elif checks:
            if line.strip():
                raise ValidationError(
                    f"“{line.strip()}” comes after the checks; write the prompt first, then one "
                    f"check per line starting with {', '.join(TEXT_LABELS.values())} and a colon."
                )
        elif line.startswith(ESCAPE) and _is_special(line):
            prompt_lines.append(line[len(ESCAPE) :])
        else:
            prompt_lines.append(line)
    prompt = "\n".join(prompt_lines).strip()
    if not prompt:
        raise ValidationError(
            "There is no prompt before the checks; write the prompt on the first lines "
            "(start a prompt line with \\ if it begins like a check)."
        )
    return TestCase(prompt, tuple(checks))
