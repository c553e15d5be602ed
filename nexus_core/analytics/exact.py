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
from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np

__all__ = ["grouped_quantiles", "quantiles", "runs_quantiles", "sorted_groups"]

# ``runs_quantiles`` brackets each wanted value between two of every ``SAMPLE_STEP``-th value of
# the runs, then selects among the few values between them.
SAMPLE_STEP = 64


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


def runs_quantiles(runs: Sequence[np.ndarray], qs: Sequence[float]) -> list[float] | None:
    """The ``qs`` quantiles of the values of ``runs`` together, as ``quantiles`` gives them; each
    run sorted ascending, without NaN (a memory-mapped file's slice is read only where needed).
    None if there is no value."""
    runs = [run for run in runs if len(run)]
    count = sum(len(run) for run in runs)
    if not count:
        return None
    ranks = [(count - 1) * q for q in qs]
    kth = sorted({math.floor(r) for r in ranks} | {math.ceil(r) for r in ranks})
    found = dict(zip(kth, _order_statistics(runs, kth), strict=True))
    return [_between(found[math.floor(r)], found[math.ceil(r)], r - math.floor(r)) for r in ranks]


def _order_statistics(runs: list[np.ndarray], ks: list[int]) -> list[float]:
    """The ``k``-th smallest value (0-based) of the runs together, for each k.

    Every ``SAMPLE_STEP``-th value of each run, sorted, brackets the k-th value between a low and
    a high sample; the runs' values up to the low one and below the high one are counted (binary
    searches per run): the k-th value is one of the two, or is selected among the few strictly
    between them (however many values tie with a bound). A bracket that misses falls back to
    every value."""
    if len(runs) == 1:
        return [float(runs[0][k]) for k in ks]
    samples = np.sort(np.concatenate([run[SAMPLE_STEP - 1 :: SAMPLE_STEP] for run in runs]))
    spread = len(runs) * (SAMPLE_STEP - 1)
    lows = np.array([_sample(samples, (k - spread) // SAMPLE_STEP - 1) for k in ks])
    highs = np.array([_sample(samples, -(-(k + 1) // SAMPLE_STEP) - 1) for k in ks])
    lefts = np.array([np.searchsorted(run, lows, "left") for run in runs])
    rights = np.array([np.searchsorted(run, highs, "right") for run in runs])
    # Values equal to a bound are not selected among: ties (say, most latencies 0) would make
    # "between" nearly every value.
    at_low = np.array([np.searchsorted(run, lows, "right") for run in runs])
    at_high = np.array([np.searchsorted(run, highs, "left") for run in runs])
    result = []
    for i, k in enumerate(ks):
        below = int(lefts[:, i].sum())
        if not below <= k < int(rights[:, i].sum()):
            lefts[:, i], rights[:, i], below = 0, [len(run) for run in runs], 0
        elif k < int(at_low[:, i].sum()):
            result.append(float(lows[i]))
            continue
        elif k >= int(at_high[:, i].sum()):
            result.append(float(highs[i]))
            continue
        else:
            lefts[:, i], rights[:, i] = at_low[:, i], at_high[:, i]
            below = int(lefts[:, i].sum())
        between = np.concatenate(
            [
                run[left:right]
                for run, left, right in zip(runs, lefts[:, i], rights[:, i], strict=True)
            ]
        )
        result.append(float(np.partition(between, k - below)[k - below]))
    return result


def _sample(samples: np.ndarray, index: int) -> float:
    """The sorted sample at ``index``; below the first −∞, past the last +∞."""
    if index < 0:
        return -math.inf
    return float(samples[index]) if index < len(samples) else math.inf


def grouped_quantiles(
    codes: np.ndarray, values: np.ndarray, qs: Sequence[float]
) -> dict[int, list[float]]:
    """Per integer group code, the ``qs`` quantiles of its values (groups with no value — all
    NaN — are absent), one sort for all groups."""
    return {
        code: [_interpolate(group, (len(group) - 1) * q) for q in qs]
        for code, group in sorted_groups(codes, values)
    }


def sorted_groups(codes: np.ndarray, values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Per integer code, its values sorted (NaN left out; codes without a value are absent)."""
    keep = ~np.isnan(values)
    codes, values = codes[keep], values[keep]
    if not len(values):
        return
    order = np.lexsort((values, codes))
    codes, values = codes[order], values[order]
    edges = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    for first, stop in itertools.pairwise(edges):
        yield int(codes[first]), values[first:stop]


def _interpolate(ordered: np.ndarray, rank: float) -> float:
    """``quantile_cont``'s interpolation at ``rank`` in values ordered at floor and ceiling."""
    low, high = math.floor(rank), math.ceil(rank)
    return _between(float(ordered[low]), float(ordered[high]), rank - low)


def _between(lo: float, hi: float, weight: float) -> float:
    """``quantile_cont``'s interpolation between the values at a rank's floor and ceiling."""
    if weight == 0:
        return lo
    if not (math.isfinite(lo) and math.isfinite(hi * weight)):
        # An infinite latency (``1e999`` or ``Infinity`` in a hand-edited log line reads as
        # one): exact arithmetic has no infinity; plain arithmetic gives what DuckDB gives.
        return lo * (1 - weight) + hi * weight
    return _fma(lo, 1 - weight, hi * weight)


def _fma(x: float, y: float, z: float) -> float:
    """``x·y + z`` rounded once (``math.fma`` from Python 3.13 on)."""
    return float(Fraction(x) * Fraction(y) + Fraction(z))
