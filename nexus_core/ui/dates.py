"""The one way a page asks for a range of days, and what a picked range means.

Days are UTC days. A range is inclusive of both picked days: it runs from the start of the first
day to the end of the last one (``start ≤ t < end``, ``end`` the midnight after the last day).
A half-picked range — the calendar's first click, before the second — is that one day, the same
as picking the same day twice: the view narrows to the day clicked, and the second click widens
it. Nothing picked is no bound at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from nexus_core.ui.show import plain

DATE_FORMAT = "YYYY-MM-DD"


@dataclass(frozen=True)
class DayRange:
    """The first and last picked day (both None when nothing is picked)."""

    first: date | None = None
    last: date | None = None

    @classmethod
    def of(cls, picked: object) -> DayRange:
        """The range ``st.date_input`` returned: a date, or a tuple of none, one or two."""
        values = picked if isinstance(picked, tuple | list) else (picked,)
        days = [value for value in values if isinstance(value, date)]
        if not days:
            return cls()
        return cls(min(days[0], days[-1]), max(days[0], days[-1]))

    @property
    def start(self) -> datetime | None:
        """The first moment of the range (UTC), or None for no lower bound."""
        return None if self.first is None else _midnight(self.first)

    @property
    def end(self) -> datetime | None:
        """The first moment after the range (UTC), or None for no upper bound."""
        return None if self.last is None else _midnight(self.last + timedelta(days=1))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_range(label: str, *, key: str, value: Any = (), where: Any = st) -> DayRange:
    """A date-range picker (in ``where``: ``st``, a column, the sidebar) read as a ``DayRange``."""
    picked = where.date_input(plain(label), value=value, key=key, format=DATE_FORMAT)
    return DayRange.of(picked)
