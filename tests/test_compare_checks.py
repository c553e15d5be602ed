"""Per-prompt checks of a test set: each kind passes and fails as it should, failed replies fail
everything, validation names the problem, and the paste-in text form reads back what it wrote."""

from __future__ import annotations

import pytest

from nexus_core.compare import checks
from nexus_core.compare.checks import (
    MAX_CASES,
    MAX_CHECKS_PER_CASE,
    MAX_PROMPT_CHARS,
    MAX_VALUE_CHARS,
    Check,
    CheckOutcome,
    cases_from_json,
    cases_to_json,
    evaluate,
    format_test_set,
    parse_test_set,
    passed,
)
from nexus_core.errors import ValidationError

Case = checks.TestCase  # imported through the module so pytest does not try to collect it


def outcome(check: Check, reply: str | None = "", latency_ms: float | None = 100.0) -> CheckOutcome:
    [result] = evaluate([check], reply, latency_ms)
    return result


# Checks, kind by kind


def test_contains_ignores_case_and_says_what_was_missing() -> None:
    check = Check("contains", "Refund")
    assert outcome(check, "You can get a REFUND within 30 days.").passed
    missed = outcome(check, "No money back, sorry.")
    assert not missed.passed
    assert missed.detail == "reply does not contain “Refund”"


def test_contains_folds_case_beyond_ascii() -> None:
    assert outcome(Check("contains", "STRASSE"), "Die Straße ist lang.").passed


def test_not_contains_fails_when_the_text_appears_in_any_case() -> None:
    check = Check("not_contains", "as an AI")
    assert outcome(check, "Here is the answer.").passed
    found = outcome(check, "As An AI language model, I cannot…")
    assert not found.passed
    assert found.detail == "reply contains “as an AI”"


def test_regex_is_case_sensitive_unless_the_pattern_says_otherwise() -> None:
    assert outcome(Check("regex", r"\d+ days"), "within 30 days").passed
    assert not outcome(Check("regex", r"Days"), "within 30 days").passed
    assert outcome(Check("regex", r"(?i)Days"), "within 30 days").passed
    assert outcome(Check("regex", r"Days"), "x").detail == "reply does not match regex “Days”"


def test_latency_exactly_at_the_limit_passes_and_over_it_fails_with_both_numbers() -> None:
    check = Check("max_latency_ms", "3000")
    assert outcome(check, "ok", latency_ms=3000.0).passed
    slow = outcome(check, "ok", latency_ms=4210.0)
    assert not slow.passed
    assert slow.detail == "took 4,210 ms, limit 3,000 ms"
    assert outcome(check, "ok", latency_ms=3000.25).detail == "took 3,000.25 ms, limit 3,000 ms"


def test_a_limit_under_a_millisecond_is_shown_as_it_was_written() -> None:
    tiny = outcome(Check("max_latency_ms", "0.001"), "ok", latency_ms=1.45)
    assert tiny.detail == "took 1.45 ms, limit 0.001 ms"


def test_latency_limit_accepts_thousands_separators_and_decimals() -> None:
    assert Check("max_latency_ms", "2,500").limit_ms == 2500.0
    assert Check("max_latency_ms", "1500.5").limit_ms == 1500.5
    assert Check("contains", "x").limit_ms is None


def test_latency_check_fails_when_no_latency_was_recorded() -> None:
    missing = outcome(Check("max_latency_ms", "3000"), "ok", latency_ms=None)
    assert (missing.passed, missing.detail) == (False, "latency was not recorded")


def test_a_failed_reply_fails_every_check_with_the_error() -> None:
    all_kinds = [
        Check("contains", "a"),
        Check("not_contains", "b"),  # would pass on any reply without "b"
        Check("regex", ".*"),  # would match anything
        Check("max_latency_ms", "99999"),
    ]
    outcomes = evaluate(all_kinds, None, 10.0, failed_error="quota exceeded (429)")
    assert [o.passed for o in outcomes] == [False] * 4
    assert {o.detail for o in outcomes} == {"no reply: quota exceeded (429)"}
    assert evaluate(all_kinds[:1], None, None)[0].detail == "no reply"


def test_a_reply_passes_only_when_every_check_passes() -> None:
    outcomes = evaluate([Check("contains", "a"), Check("contains", "z")], "abc", 1.0)
    assert not passed(outcomes, replied=True)
    assert passed(outcomes[:1], replied=True)


def test_no_checks_is_a_pass_only_when_there_is_a_reply() -> None:
    assert passed(evaluate([], "anything", 1.0), replied=True)
    assert not passed(evaluate([], None, None, "timeout"), replied=False)


# Check validation


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "startswith", "value": "a"}, "Unknown check 'startswith'"),
        ({"kind": "contains", "value": ""}, "A “contains” check needs a value."),
        ({"kind": "not_contains", "value": "   "}, "A “not contains” check needs a value."),
        ({"kind": "contains"}, "A “contains” check needs a value."),
        ({"kind": "regex", "value": "(unclosed"}, "The regex “(unclosed” is not valid: missing )"),
        ({"kind": "regex", "value": "a" * (MAX_VALUE_CHARS + 1)}, "at most 500 characters"),
        ({"kind": "contains", "value": "two\nlines"}, "must fit on one line"),
        ({"kind": "max_latency_ms", "value": "fast"}, "“fast” is not a number of milliseconds"),
        ({"kind": "max_latency_ms", "value": "0"}, "must be more than 0 ms"),
        ({"kind": "max_latency_ms", "value": "-5"}, "must be more than 0 ms"),
        ({"kind": "max_latency_ms", "value": "inf"}, "must be more than 0 ms"),
        ("contains: x", "A check must be an object"),
    ],
)
def test_malformed_checks_are_refused_with_a_clear_message(data: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Check.from_json(data)


def test_building_a_check_directly_validates_it_too() -> None:
    with pytest.raises(ValidationError, match="not valid"):
        Check("regex", "[a-")


def test_a_regex_at_the_length_limit_is_accepted() -> None:
    assert Check("regex", "a" * MAX_VALUE_CHARS).value == "a" * MAX_VALUE_CHARS


def test_check_json_round_trips_and_accepts_a_numeric_latency() -> None:
    for check in (Check("contains", "x"), Check("regex", r"^\w+$"), Check("max_latency_ms", "10")):
        assert Check.from_json(check.to_json()) == check
    assert Check.from_json({"kind": "max_latency_ms", "value": 3000}) == Check(
        "max_latency_ms", "3000"
    )


# Test cases and their JSON form


def test_test_case_json_round_trips() -> None:
    cases = [
        Case("What is your refund policy?", (Check("contains", "refund"),)),
        Case("Say hi.\nIn French.", ()),
    ]
    assert cases_from_json(cases_to_json(cases)) == cases


def test_test_case_needs_a_prompt_of_bounded_length_and_few_checks() -> None:
    with pytest.raises(ValidationError, match="needs a prompt"):
        Case("  \n ")
    with pytest.raises(ValidationError, match="at most 8,000 characters; this one has 8,001"):
        Case("x" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(ValidationError, match="at most 10 checks; this one has 11"):
        Case("p", tuple(Check("contains", str(i)) for i in range(MAX_CHECKS_PER_CASE + 1)))
    assert len(Case("x" * MAX_PROMPT_CHARS).prompt) == MAX_PROMPT_CHARS


def test_cases_from_json_names_the_bad_case_and_limits_the_count() -> None:
    data = [{"prompt": "ok"}, {"prompt": "bad", "checks": [{"kind": "regex", "value": "("}]}]
    with pytest.raises(ValidationError, match=r"^Case 2: The regex"):
        cases_from_json(data)
    with pytest.raises(ValidationError, match="Case 1: A test case needs a prompt"):
        cases_from_json([{"prompt": 42}])
    with pytest.raises(ValidationError, match="at most 100 cases; this one has 101"):
        cases_from_json([{"prompt": "p"}] * (MAX_CASES + 1))
    with pytest.raises(ValidationError, match="must be a list"):
        cases_from_json({"prompt": "p"})


# The text form

EXAMPLE = r"""What is your refund policy?
Answer in one sentence.
contains: refund
not contains: I don't know
regex: \d+ days
max latency ms: 3000
---
Say hello in French.
contains: bonjour
"""


def test_text_form_reads_prompts_and_checks_block_by_block() -> None:
    assert parse_test_set(EXAMPLE) == [
        Case(
            "What is your refund policy?\nAnswer in one sentence.",
            (
                Check("contains", "refund"),
                Check("not_contains", "I don't know"),
                Check("regex", r"\d+ days"),
                Check("max_latency_ms", "3000"),
            ),
        ),
        Case("Say hello in French.", (Check("contains", "bonjour"),)),
    ]


def test_format_writes_the_text_form_that_parse_reads_back() -> None:
    cases = parse_test_set(EXAMPLE)
    assert format_test_set(cases) == EXAMPLE
    assert parse_test_set(format_test_set(cases)) == cases


def test_text_form_is_forgiving_about_spacing_case_blank_lines_and_line_endings() -> None:
    text = (
        "\r\n\r\n  Hello?  \r\n\r\nContains :  hi \r\n\r\nMAX_LATENCY_MS: 2,000\r\n---\r\n---\r\n"
    )
    assert parse_test_set(text) == [
        Case("Hello?", (Check("contains", "hi"), Check("max_latency_ms", "2,000")))
    ]
    assert parse_test_set("") == []
    assert format_test_set([]) == ""


def test_prompt_lines_that_look_like_checks_are_escaped_and_round_trip() -> None:
    tricky = Case(
        "Regex: what does ^a+$ match?\n---\n\\contains: stays escaped once\n\\frac{1}{2} is LaTeX",
        (Check("regex", r"\^"),),
    )
    text = format_test_set([tricky])
    assert text.startswith("\\Regex: what does")
    assert "\n\\frac{1}{2} is LaTeX\n" in text  # a backslash that escapes nothing is left alone
    assert parse_test_set(text) == [tricky]


def test_text_errors_name_the_block() -> None:
    with pytest.raises(ValidationError, match=r"^Block 2: The regex “\(” is not valid"):
        parse_test_set("first\n---\nsecond\nregex: (\n")
    with pytest.raises(ValidationError, match=r"^Block 3: There is no prompt before the checks"):
        parse_test_set("a\n---\nb\n---\ncontains: x\n")
    with pytest.raises(ValidationError, match=r"^Block 1: “oops” comes after the checks"):
        parse_test_set("prompt\ncontains: x\noops\n")
    with pytest.raises(ValidationError, match=r"^Block 1: A “max latency ms” check needs a value"):
        parse_test_set("prompt\nmax latency ms:\n")


def test_text_form_limits_the_number_of_cases() -> None:
    with pytest.raises(ValidationError, match="at most 100 cases"):
        parse_test_set("\n---\n".join(f"prompt {i}" for i in range(MAX_CASES + 1)))
