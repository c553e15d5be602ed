"""Leaderboard maths: the Wilson interval against independent values, the scoring rule for best
picks and ratings, date and tag filters, ranking, and a CSV that spreadsheets cannot execute."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime

import pytest

from nexus_core.compare.scoring import (
    Z_95,
    LeaderboardRow,
    VoteRecord,
    leaderboard,
    leaderboard_csv,
    wilson_interval,
)
from nexus_core.errors import ValidationError

MONDAY = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TUESDAY = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
WEDNESDAY = datetime(2025, 3, 5, 9, 0, tzinfo=UTC)


def score_test_bounds(wins: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson interval from its definition, independently of the closed form under test.

    The interval is every p the score test does not reject: n·(p̂ − p)² ≤ z²·p·(1 − p). The
    bounds are the roots of f(p) = n·(p̂ − p)² − z²·p·(1 − p), which is ≤ 0 at p̂ and > 0 at the
    far end of each side, so bisection finds them.
    """
    share = wins / n

    def f(p: float) -> float:
        return n * (share - p) ** 2 - z * z * p * (1 - p)

    def root(inside: float, outside: float) -> float:
        if f(outside) <= 0:  # p̂ at the edge: the bound is the edge itself
            return outside
        for _ in range(200):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if f(middle) <= 0 else (inside, middle)
        return (inside + outside) / 2

    return root(share, 0.0), root(share, 1.0)


@pytest.mark.parametrize(
    ("wins", "n", "expected"),
    [
        # By hand for 0/10: the upper bound is z²/(n + z²) = 3.8415/13.8415 = 0.2775.
        (0, 10, (0.0, 0.2775)),
        (8, 10, (0.4902, 0.9433)),
        (50, 100, (0.4038, 0.5962)),
        (10, 10, (0.7225, 1.0)),
    ],
)
def test_wilson_interval_matches_known_values_and_the_score_test(
    wins: int, n: int, expected: tuple[float, float]
) -> None:
    low, high = wilson_interval(wins, n)
    assert (round(low, 4), round(high, 4)) == expected
    assert (low, high) == pytest.approx(score_test_bounds(wins, n), abs=1e-9)


@pytest.mark.parametrize(("wins", "n"), [(1, 1), (1, 3), (7, 9), (3, 1000), (999, 1000)])
def test_wilson_interval_agrees_with_the_score_test_and_stays_in_range(wins: int, n: int) -> None:
    low, high = wilson_interval(wins, n)
    assert 0.0 <= low <= wins / n <= high <= 1.0
    assert (low, high) == pytest.approx(score_test_bounds(wins, n), abs=1e-9)


def test_wilson_interval_narrows_with_a_smaller_z() -> None:
    wide, narrow = wilson_interval(8, 10), wilson_interval(8, 10, z=1.0)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_wilson_interval_with_no_trials_is_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("wins", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_wilson_interval_refuses_impossible_counts(wins: int, n: int) -> None:
    with pytest.raises(ValidationError, match="between 0 and the number of trials"):
        wilson_interval(wins, n)


def vote(
    variants: tuple[str, ...] = ("A", "B", "C"),
    *,
    best: str | None = None,
    ratings: dict[str, bool] | None = None,
    at: datetime = MONDAY,
    tag: str | None = None,
) -> VoteRecord:
    return VoteRecord("run-1", at, tag, variants, best, ratings or {})


def standings(rows: list[LeaderboardRow]) -> dict[str, tuple[int, int]]:
    return {row.variant: (row.wins, row.comparisons) for row in rows}


def test_best_pick_gives_the_best_a_win_and_every_other_participant_a_loss() -> None:
    assert standings(leaderboard([vote(best="B")])) == {"B": (1, 1), "A": (0, 1), "C": (0, 1)}


def test_ratings_alone_count_good_as_win_bad_as_loss_and_skip_the_unrated() -> None:
    rows = leaderboard([vote(ratings={"A": True, "B": False})])
    assert standings(rows) == {"A": (1, 1), "B": (0, 1)}


def test_best_pick_overrides_ratings_when_both_are_given() -> None:
    rows = leaderboard([vote(best="C", ratings={"A": True, "B": True, "C": False})])
    assert standings(rows) == {"C": (1, 1), "A": (0, 1), "B": (0, 1)}


def test_a_comparison_nobody_judged_counts_for_no_one() -> None:
    assert leaderboard([vote()]) == []


def test_leaderboard_rows_carry_the_win_rate_and_its_wilson_interval() -> None:
    votes = [vote(("A", "B"), best="A")] * 8 + [vote(("A", "B"), best="B")] * 2
    top = leaderboard(votes)[0]
    assert (top.variant, top.comparisons, top.wins, top.win_rate) == ("A", 10, 8, 0.8)
    assert (top.low, top.high) == wilson_interval(8, 10)


def test_leaderboard_ranks_by_the_lower_bound_then_win_rate_then_the_upper_bound() -> None:
    votes = [
        vote(("A", "X"), best="A"),  # A: 1/1
        vote(("B", "Y"), best="B"),
        vote(("B", "Y"), best="B"),  # B: 2/2, same rate as A, more comparisons: surer
        vote(("C",), ratings={"C": True}),
        vote(("C",), ratings={"C": False}),  # C: 1/2
    ]  # X: 0/1 above Y: 0/2 (both lower bounds 0, same rate; X's upper bound is higher)
    assert [row.variant for row in leaderboard(votes)] == ["B", "A", "C", "X", "Y"]


def test_two_lucky_wins_do_not_outrank_eighty_of_a_hundred() -> None:
    votes = [vote(("Lucky", "Z"), best="Lucky")] * 2
    votes += [vote(("Steady", "Z"), best="Steady")] * 80
    votes += [vote(("Steady", "Z"), best="Z")] * 20
    rows = leaderboard(votes)
    assert [row.variant for row in rows][:2] == ["Steady", "Lucky"]
    assert rows[1].win_rate > rows[0].win_rate  # a higher raw rate, ranked lower


def test_leaderboard_keeps_votes_from_start_inclusive_to_end_exclusive() -> None:
    votes = [
        vote(("A", "B"), best="A", at=MONDAY),
        vote(("A", "B"), best="B", at=TUESDAY),
        vote(("A", "B"), best="B", at=WEDNESDAY),
    ]
    rows = leaderboard(votes, start=TUESDAY, end=WEDNESDAY)
    assert standings(rows) == {"B": (1, 1), "A": (0, 1)}
    assert standings(leaderboard(votes, start=TUESDAY)) == {"B": (2, 2), "A": (0, 2)}
    assert standings(leaderboard(votes, end=TUESDAY)) == {"A": (1, 1), "B": (0, 1)}


def test_leaderboard_filters_by_tag_and_all_tags_when_none() -> None:
    votes = [
        vote(("A", "B"), best="A", tag="support"),
        vote(("A", "B"), best="B", tag="sales"),
        vote(("A", "B"), best="B"),
    ]
    assert standings(leaderboard(votes, tag="support")) == {"A": (1, 1), "B": (0, 1)}
    assert standings(leaderboard(votes)) == {"B": (2, 3), "A": (1, 3)}


def test_vote_record_refuses_picks_and_ratings_of_variants_that_did_not_take_part() -> None:
    with pytest.raises(ValidationError, match="best variant 'Z' did not take part"):
        vote(best="Z")
    with pytest.raises(ValidationError, match="rated variants Z did not take part"):
        vote(ratings={"Z": True})
    with pytest.raises(ValidationError, match="lists a variant twice"):
        vote(("A", "A"))


def test_leaderboard_csv_has_the_header_and_rates_to_four_decimals() -> None:
    rows = leaderboard([vote(("A", "B"), best="A")] * 8 + [vote(("A", "B"), best="B")] * 2)
    parsed = list(csv.reader(io.StringIO(leaderboard_csv(rows))))
    assert parsed[0] == ["variant", "comparisons", "wins", "win_rate", "ci_low", "ci_high"]
    assert parsed[1] == ["A", "10", "8", "0.8000", "0.4902", "0.9433"]
    assert parsed[2] == ["B", "10", "2", "0.2000", "0.0567", "0.5098"]
    assert math.isclose(float(parsed[2][4]), 1 - float(parsed[1][5]), abs_tol=1e-4)


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1", "-1", "@SUM(A1)", "\tx"])
def test_leaderboard_csv_neutralises_names_a_spreadsheet_would_run(name: str) -> None:
    rows = leaderboard([vote((name,), best=name)])
    cells = list(csv.reader(io.StringIO(leaderboard_csv(rows))))[1]
    assert cells[0] == "'" + name


def test_leaderboard_csv_of_no_rows_is_just_the_header() -> None:
    assert leaderboard_csv([]) == "variant,comparisons,wins,win_rate,ci_low,ci_high\n"
