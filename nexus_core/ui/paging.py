"""Previous / Next paging for long tables; a new listing (filters, sort) starts at page 1."""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from nexus_core.ui.show import plain


@dataclass(frozen=True)
class TablePage:
    """Which slice of ``total`` rows to show: page ``number`` (0-based) of ``count``."""

    number: int
    count: int
    size: int
    total: int

    @property
    def offset(self) -> int:
        return self.number * self.size


def current_page(key: str, listing: object, total: int, size: int) -> TablePage:
    """The page to show under ``key``; when ``listing`` differs from last run's, the first."""
    listing_key = f"{key}_listing"
    if st.session_state.get(listing_key) != listing:
        st.session_state[listing_key] = listing
        st.session_state[key] = 0
    count = max(1, math.ceil(total / size))
    number = min(max(int(st.session_state.get(key, 0)), 0), count - 1)
    st.session_state[key] = number  # a shrunken listing that grows again stays where it is shown
    return TablePage(number, count, size, total)


def pager(key: str, page: TablePage, noun: str) -> None:
    """Previous, "Page n of m · total nouns", Next (in three columns of the current container);
    ``noun`` is singular ("event"): one event, two events."""
    back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
    back.button(
        "Previous",
        key=f"{key}_previous",
        icon="⬅️",
        disabled=page.number == 0,
        on_click=_go_to,
        args=(key, page.number - 1),
    )
    nouns = noun if page.total == 1 else f"{noun}s"
    where.caption(f"Page {page.number + 1:d} of {page.count:d} · {page.total:,} {plain(nouns)}")
    forward.button(
        "Next",
        key=f"{key}_next",
        icon="➡️",
        disabled=page.number >= page.count - 1,
        on_click=_go_to,
        args=(key, page.number + 1),
    )


def _go_to(key: str, number: int) -> None:
    st.session_state[key] = number
