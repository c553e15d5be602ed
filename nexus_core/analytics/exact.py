"""Exact percentiles without DuckDB's holistic aggregates, which cannot spill to disk.

``quantile_cont`` keeps every value of a group in DuckDB's memory: over a 30-day window of
millions of events, three percentile sets overflow the store's memory limit. Here a query only
filters and projects (DuckDB streams that), the values arrive as NumPy arrays (8 bytes each, out
of DuckDB's memory), and the percentiles are computed exactly as ``quantile_cont`` does: position
``(n − 1)·q``, the values at its floor and ceiling, ``lo + (hi − lo)·(position − floor)`` — the
same floating-point operations, so the same numbers to the last bit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

__all__ = ["grouped_quantiles", "quantiles"]


def quantiles(values: np.ndarray, qs: Sequence[float]) -> list[float] | None:
    """The ``qs`` quantiles (0–1) of ``values`` as DuckDB's ``quantile_cont``; None if empty.
    NaN marks a missing value (SQL NULL) and is left out."""
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    ranks = [(len(values) - 1) * q for q in qs]
    kth = sorted({math.floor(r) for r in ranks} | {math.ceil(r) for r in ranks})
    ordered = np.partition(values, kth)
    return [_interpolate(ordered, rank) for rank in ranks]


def grouped_quantiles(
    codes: np.ndarray, values: np.ndarray, qs: Sequence[float]
) -> dict[int, list[float]]:
    """Per integer group code, the ``qs`` quantiles of its values (groups with no value — all
    NaN — are absent), one sort for all groups."""
    keep = ~np.isnan(values)
    codes, values = codes[keep], values[keep]
    if not len(values):
        return {}
    order = np.lexsort((values, codes))
    codes, values = codes[order], values[order]
    edges = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    result = {}
    for first, stop in itertools.pairwise(edges):
        group = values[first:stop]
        result[int(codes[first])] = [_interpolate(group, (len(group) - 1) * q) for q in qs]
    return result


def _interpolate(ordered: np.ndarray, rank: float) -> float:
    """``quantile_cont``'s interpolation at ``rank`` in values ordered at floor and ceiling."""
    low, high = math.floor(rank), math.ceil(rank)
    lo = float(ordered[low])
    if low == high:
        return lo
    hi = float(ordered[high])
    weight = rank - low
    if not (math.isfinite(lo) and math.isfinite(hi * weight)):
        # An infinite latency (``1e999`` or ``Infinity`` in a hand-edited log line reads as
        # one): exact arithmetic has no infinity; plain arithmetic gives what DuckDB gives.
        return lo * (1 - weight) + hi * weight
    return _fma(lo, 1 - weight, hi * weight)


def _fma(x: float, y: float, z: float) -> float:
    """``x·y + z`` rounded once (``math.fma`` from Python 3.13 on)."""
    return float(Fraction(x) * Fraction(y) + Fraction(z))
