"""Comparing two runs of a test set: every status, matching by prompt text when positions shift,
repeated prompts, and the per-variant pass counts and median latencies."""

from __future__ import annotations

from nexus_core.compare.run_diff import (
    STATUSES,
    CellResult,
    DiffRow,
    RunComparison,
    Status,
    compare_runs,
)


def cell(
    prompt: str,
    variant: str = "A",
    passed: bool = True,
    *,
    index: int = 0,
    latency_ms: float | None = 100.0,
) -> CellResult:
    failures = () if passed else (f"reply does not contain “{prompt}”",)
    return CellResult(index, prompt, variant, passed, latency_ms, 42, failures)


def statuses(before: list[CellResult], after: list[CellResult]) -> dict[tuple[str, str], str]:
    return {(row.prompt, row.variant): row.status for row in compare_runs(before, after).rows}


def rows_with(comparison: RunComparison, status: Status) -> list[DiffRow]:
    """The comparison's rows with one status, in the order it lists them."""
    return [row for row in comparison.rows if row.status == status]


def test_each_status_from_pass_and_fail_before_and_after() -> None:
    before = [
        cell("kept", passed=True, index=0),
        cell("broke", passed=True, index=1),
        cell("mended", passed=False, index=2),
        cell("stuck", passed=False, index=3),
        cell("dropped", passed=True, index=4),
    ]
    after = [
        cell("kept", passed=True, index=0),
        cell("broke", passed=False, index=1),
        cell("mended", passed=True, index=2),
        cell("stuck", passed=False, index=3),
        cell("added", passed=False, index=4),
    ]
    assert statuses(before, after) == {
        ("kept", "A"): "still passing",
        ("broke", "A"): "regressed",
        ("mended", "A"): "fixed",
        ("stuck", "A"): "still failing",
        ("added", "A"): "new",
        ("dropped", "A"): "removed",
    }


def test_summary_counts_every_status_including_zeros() -> None:
    comparison = compare_runs([cell("a"), cell("b")], [cell("a", passed=False), cell("c")])
    assert dict(comparison.summary) == {
        "regressed": 1,
        "fixed": 0,
        "still failing": 0,
        "new": 1,
        "removed": 1,
        "still passing": 0,
    }
    assert list(comparison.summary) == list(STATUSES)


def test_cells_match_by_prompt_text_when_a_new_case_shifts_the_positions() -> None:
    before = [cell("first", index=0), cell("second", passed=False, index=1)]
    after = [cell("inserted", index=0), cell("first", index=1), cell("second", index=2)]
    assert statuses(before, after) == {
        ("inserted", "A"): "new",
        ("first", "A"): "still passing",
        ("second", "A"): "fixed",
    }


def test_cells_match_by_variant_label_so_a_renamed_variant_is_new_and_removed() -> None:
    before = [cell("p", "gpt-small"), cell("p", "gemini-flash", passed=False)]
    after = [cell("p", "gemini-flash"), cell("p", "gpt-small-v2")]
    assert statuses(before, after) == {
        ("p", "gemini-flash"): "fixed",
        ("p", "gpt-small-v2"): "new",
        ("p", "gpt-small"): "removed",
    }


def test_a_repeated_prompt_matches_in_order_of_appearance() -> None:
    before = [cell("same", passed=True, index=0), cell("same", passed=False, index=1)]
    after = [cell("same", passed=True, index=3), cell("same", passed=True, index=5)]
    rows = compare_runs(before, after).rows
    assert [(row.status, row.before, row.after) for row in rows] == [
        ("fixed", before[1], after[1]),
        ("still passing", before[0], after[0]),
    ]


def test_rows_list_regressions_first_then_in_prompt_order_and_keep_both_cells() -> None:
    before = [cell("x", index=0), cell("y", index=1), cell("z", passed=False, index=2)]
    after = [cell("x", index=0), cell("y", passed=False, index=1), cell("z", index=2)]
    comparison = compare_runs(before, after)
    assert [(row.status, row.prompt) for row in comparison.rows] == [
        ("regressed", "y"),
        ("fixed", "z"),
        ("still passing", "x"),
    ]
    [regression] = rows_with(comparison, "regressed")
    assert (regression.before, regression.after) == (before[1], after[1])
    assert regression.after is not None
    assert regression.after.failures == ("reply does not contain “y”",)


def test_removed_and_new_rows_have_only_one_side() -> None:
    comparison = compare_runs([cell("old")], [cell("new")])
    [removed] = rows_with(comparison, "removed")
    [added] = rows_with(comparison, "new")
    assert (removed.before is not None, removed.after) == (True, None)
    assert (added.before, added.after is not None) == (None, True)
    assert (removed.prompt, added.prompt) == ("old", "new")


def test_per_variant_pass_counts_and_median_latency_before_and_after() -> None:
    before = [
        cell("p1", "A", True, latency_ms=100.0),
        cell("p2", "A", False, latency_ms=300.0),
        cell("p3", "A", True, latency_ms=None),  # failed before timing: left out of the median
        cell("p1", "B", True, latency_ms=50.0),
    ]
    after = [
        cell("p1", "A", True, latency_ms=80.0),
        cell("p2", "A", True, latency_ms=90.0),
        cell("p3", "A", True, latency_ms=400.0),
        cell("p1", "C", False, latency_ms=None),
    ]
    changes = {change.variant: change for change in compare_runs(before, after).variants}
    assert list(changes) == ["A", "C", "B"]  # the newer run's order, then variants it dropped
    a = changes["A"]
    assert (a.passed_before, a.total_before, a.passed_after, a.total_after) == (2, 3, 3, 3)
    assert (a.median_latency_before, a.median_latency_after) == (200.0, 90.0)
    b, c = changes["B"], changes["C"]
    assert (b.passed_after, b.total_after, b.median_latency_after) == (0, 0, None)
    assert (c.passed_before, c.total_before, c.median_latency_after) == (0, 0, None)
    assert b.median_latency_before == 50.0


def test_comparing_empty_runs_gives_nothing_to_report() -> None:
    comparison = compare_runs([], [])
    assert comparison.rows == ()
    assert comparison.variants == ()
    assert set(comparison.summary.values()) == {0}
