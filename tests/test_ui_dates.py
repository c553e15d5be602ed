"""What a picked range of days means, on every page that asks for one (``nexus_core.ui.dates``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from nexus_core.ui.dates import DayRange

MAY_1 = date(2026, 5, 1)
MAY_3 = date(2026, 5, 3)


@pytest.mark.parametrize("picked", [(), [], None])
def test_nothing_picked_is_no_bound(picked: object) -> None:
    days = DayRange.of(picked)
    assert (days.first, days.last, days.start, days.end) == (None, None, None, None)


def test_a_full_range_runs_from_the_first_midnight_to_the_midnight_after_the_last_day() -> None:
    days = DayRange.of((MAY_1, MAY_3))
    assert (days.first, days.last) == (MAY_1, MAY_3)
    assert days.start == datetime(2026, 5, 1, tzinfo=UTC)
    assert days.end == datetime(2026, 5, 4, tzinfo=UTC)


@pytest.mark.parametrize("picked", [(MAY_1,), MAY_1, (MAY_1, MAY_1)])
def test_a_half_picked_range_is_that_one_whole_day(picked: object) -> None:
    days = DayRange.of(picked)
    assert (days.first, days.last) == (MAY_1, MAY_1)
    assert (days.start, days.end) == (
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 5, 2, tzinfo=UTC),
    )


def test_days_picked_backwards_are_put_in_order() -> None:
    assert DayRange.of((MAY_3, MAY_1)) == DayRange(MAY_1, MAY_3)
