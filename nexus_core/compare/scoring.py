"""Leaderboard maths: which persona or model variant people judge best, with an honest interval.

Scoring rule. A comparison is one prompt answered by several variants side by side, then judged.
It counts, once, for every variant that took part and was judged:

- when someone picked a best variant, the best variant gets a win and every other variant that
  took part gets a loss (ratings, if any, are ignored: the pick decides);
- when there is no pick but thumbs ratings, a good rating is a win and a bad rating a loss, and
  variants left unrated do not count;
- with neither, the comparison counts for no one.

The win rate is wins / comparisons; its 95% Wilson score interval says how sure we can be. The
board is ranked by the interval's lower bound (the win rate we can be fairly sure of), so a variant
with 2 wins out of 2 does not outrank one with 80 out of 100 by accident of small numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from nexus_core.errors import ValidationError
from nexus_core.spreadsheet import csv_text

Z_95: Final = 1.959963984540054  # the standard normal quantile for a two-sided 95% interval
CSV_HEADER: Final = ("variant", "comparisons", "wins", "win_rate", "ci_low", "ci_high")
CSV_DECIMALS: Final = 4


@dataclass(frozen=True)
class VoteRecord:
    """One judged comparison: who took part, who was picked best, and any good/bad ratings."""

    run_id: str
    created_at: datetime
    tag: str | None
    variants: tuple[str, ...]
    best: str | None = None
    ratings: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
        if len(set(self.variants)) != len(self.variants):
            raise ValidationError(f"Comparison {self.run_id} lists a variant twice.")
        if self.best is not None and self.best not in self.variants:
            raise ValidationError(
                f"Comparison {self.run_id}: the best variant {self.best!r} did not take part."
            )
        strangers = sorted(set(self.ratings) - set(self.variants))
        if strangers:
            raise ValidationError(
                f"Comparison {self.run_id}: rated variants {', '.join(strangers)} "
                "did not take part."
            )

    def results(self) -> dict[str, bool]:
        """Variant → won (True) or lost (False), for the variants this comparison counts for."""
        if self.best is not None:
            return {variant: variant == self.best for variant in self.variants}
        return {variant: good for variant, good in self.ratings.items()}


@dataclass(frozen=True)
class LeaderboardRow:
    """One variant's standing: comparisons it counted in, wins, win rate and its 95% interval."""

    variant: str
    comparisons: int
    wins: int
    win_rate: float
    low: float
    high: float


def wilson_interval(wins: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for ``wins`` out of ``n``; ``(0.0, 1.0)`` when ``n`` is 0."""
    if n < 0 or not 0 <= wins <= n:
        raise ValidationError(f"Wins must be between 0 and the number of trials, not {wins}/{n}.")
    if n == 0:
        return (0.0, 1.0)
    share = wins / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (share + z2 / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    # At 0 or n wins the bound is exactly 0 or 1; say so rather than trust the rounding.
    low = 0.0 if wins == 0 else max(0.0, centre - half_width)
    high = 1.0 if wins == n else min(1.0, centre + half_width)
    return (low, high)


def leaderboard(
    votes: Iterable[VoteRecord],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tag: str | None = None,
) -> list[LeaderboardRow]:
    """Variants ranked by the lower Wilson bound, then win rate, then the upper bound (0 of 1 may
    yet be good, 0 of 50 is not), then comparisons, over votes with start ≤ created_at < end.

    ``tag`` keeps only the comparisons with that tag; ``None`` keeps all. Variants no comparison
    counted for are left out. ``start``/``end`` must be timezone-aware if ``created_at`` is.
    """
    comparisons: dict[str, int] = {}
    wins: dict[str, int] = {}
    for vote in votes:
        if start is not None and vote.created_at < start:
            continue
        if end is not None and vote.created_at >= end:
            continue
        if tag is not None and vote.tag != tag:
            continue
        for variant, won in vote.results().items():
            comparisons[variant] = comparisons.get(variant, 0) + 1
            wins[variant] = wins.get(variant, 0) + int(won)
    rows = [
        LeaderboardRow(
            variant, n, wins[variant], wins[variant] / n, *wilson_interval(wins[variant], n)
        )
        for variant, n in comparisons.items()
    ]
    return sorted(
        rows, key=lambda row: (-row.low, -row.win_rate, -row.high, -row.comparisons, row.variant)
    )


def leaderboard_csv(rows: Sequence[LeaderboardRow]) -> str:
    """The rows as CSV text, rates to four decimals, variant names made inert for spreadsheets."""
    return csv_text(
        CSV_HEADER,
        (
            [
                row.variant,
                row.comparisons,
                row.wins,
                *(f"{rate:.{CSV_DECIMALS}f}" for rate in (row.win_rate, row.low, row.high)),
            ]
            for row in rows
        ),
    )
