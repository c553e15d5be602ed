"""Mergeable tallies of events: what a window's metrics and breakdowns are made of.

A *tally* of a set of events holds per-minute counts (requests, failures, retries, failed jobs),
failures per error type, requests per (model, persona), request outcomes per (model, persona,
success) joined to their start, responses (``job_success``) per persona with their latency and
cost sums, and the values percentiles are taken of as sorted *runs*: responses' latency (all and
per persona), the API's latency (all and per model) and time to first token.

Tallies add up, so a window's tally is the sum of

- each *whole* compacted Parquet piece's tally (every event of the piece lies in the window),
  computed once and kept on disk beside the piece as ``tally-<piece stem>-<digest>.json`` plus
  its runs in a ``.npy`` of the same name, read back memory-mapped; the digest names the piece as
  it is now and the traffic filter, as ``rollups`` does for per-minute totals;
- one tally computed by SQL of the rest: the hot rows, the in-memory pieces and the pieces the
  window's bounds cut.

A request's outcome is joined to its start within a tally; a tally keeps its starts without an
outcome (*open*) and its outcomes without a start (*orphans*, those with a ``request_id``), and
adding tallies joins those, so a request whose start and outcome lie in different pieces still
counts under its start's model and persona, and an outcome whose start is not in the window
counts as ``unknown``, as before. Percentiles stay exact (``exact.runs_quantiles``): a rank search
over the sorted runs, never millions of values in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from nexus_core.analytics.event_snapshot import (
    EventSnapshot,
    Piece,
    filtered,
    unmasked,
    with_events,
)
from nexus_core.analytics.exact import sorted_groups
from nexus_core.analytics.rollups import TALLY_PREFIX, derived_file, replace_with
from nexus_core.analytics.windows import to_utc_naive

UNKNOWN: Final = "unknown"
TALLY_VERSION: Final = 5  # part of every digest: a change of format writes new files
# Run series: the responses' latency, the API's (``request_success``) latency, time to first token.
RESPONSE: Final = "response"
API: Final = "api"
TTFT: Final = "ttft"
HOURLY: Final = "response_hour"  # the responses' latency per hour (group: the hour in µs)
ALL: Final = None  # a series' runs of every value (no persona or model name can be None)
MINUTE_US: Final = 60_000_000

STARTS_SQL: Final = """
SELECT coalesce(model, 'unknown') AS model, coalesce(persona, 'unknown') AS persona,
    count(*) AS requests
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_start'
GROUP BY ALL
"""
# Each outcome with its start's model and persona codes (indexes of ``$models`` / ``$personas``),
# joined by ``request_id`` within the tally: a hash join, which spills to disk. ``joined`` is
# false without a start; ``anonymous`` marks an outcome without a request_id (``unknown`` for good).
# ``{starts}`` is ``START_PAIRS_SQL``, or ``ONE_START_PER_ID_SQL`` when a request_id was logged
# with several starts (an outcome counts once, as in one query grouping by request_id).
OUTCOMES_SQL: Final = """
WITH starts AS ({starts})
SELECT s.pair IS NOT NULL AS joined, o.request_id IS NULL AS anonymous,
    coalesce(s.pair // len($personas), 0)::INTEGER AS model,
    coalesce(s.pair % len($personas), 0)::INTEGER AS persona,
    o.event = 'request_success' AS success, coalesce(o.latency_ms, 'NaN'::DOUBLE) AS latency_ms
FROM events AS o
LEFT JOIN starts AS s ON s.request = hash(o.request_id)
WHERE o.ts >= $start AND o.ts < $end AND o.event IN ('request_success', 'request_failure')
"""
START_PAIRS_SQL: Final = """
SELECT hash(request_id) AS request,
    (list_position($models, coalesce(model, 'unknown')) - 1)::BIGINT * len($personas)
        + list_position($personas, coalesce(persona, 'unknown')) - 1 AS pair
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_start' AND request_id IS NOT NULL
"""
ONE_START_PER_ID_SQL: Final = f"""
SELECT request, min(pair) AS pair FROM ({START_PAIRS_SQL}) GROUP BY request
"""
# Outcomes with a request_id but no start in the tally (``success`` set), and starts without an
# outcome in it (``model`` set): one full join, keeping only the unmatched rows.
UNMATCHED_SQL: Final = """
WITH starts AS (
    SELECT hash(request_id) AS request, request_id, coalesce(model, 'unknown') AS model,
        coalesce(persona, 'unknown') AS persona
    FROM events
    WHERE ts >= $start AND ts < $end AND event = 'request_start' AND request_id IS NOT NULL
), outcomes AS (
    SELECT hash(request_id) AS request, request_id, event = 'request_success' AS success,
        latency_ms
    FROM events
    WHERE ts >= $start AND ts < $end AND event IN ('request_success', 'request_failure')
        AND request_id IS NOT NULL
)
SELECT coalesce(s.request_id, o.request_id) AS request_id, s.model, s.persona, o.success,
    o.latency_ms
FROM starts AS s
FULL OUTER JOIN outcomes AS o ON s.request = o.request
WHERE s.request IS NULL OR o.request IS NULL
"""
API_VALUES_SQL: Final = """
SELECT coalesce(latency_ms, 'NaN'::DOUBLE) AS latency_ms,
    coalesce(ttft_ms, 'NaN'::DOUBLE) AS ttft_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_success'
    AND (latency_ms IS NOT NULL OR ttft_ms IS NOT NULL)
"""
MINUTES_SQL: Final = """
SELECT epoch_us(date_trunc('minute', ts)) AS minute,
    count(*) FILTER (WHERE event = 'request_start') AS requests,
    count(*) FILTER (WHERE event = 'request_success') AS successes,
    count(*) FILTER (WHERE event = 'request_failure') AS failures,
    count(*) FILTER (WHERE event = 'job_retry') AS retries,
    count(*) FILTER (WHERE event = 'job_failure') AS jobs_failed
FROM events
WHERE ts >= $start AND ts < $end AND event IN (
    'request_start', 'request_success', 'request_failure', 'job_retry', 'job_failure'
)
GROUP BY 1
ORDER BY 1
"""
ERRORS_SQL: Final = """
SELECT coalesce(error_type, 'unknown') AS error_type, count(*) AS count
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_failure'
GROUP BY 1
"""
# Responses per persona: count, cost of the priced ones and how many were unpriced (a model
# without a price: counted apart, never as $0). ``fsum`` (Kahan) rather than ``sum``, whose last
# bit depends on how DuckDB's threads split the rows; the latency sums come from the sorted runs.
RESPONSES_SQL: Final = """
SELECT coalesce(persona, 'unknown') AS persona, count(*) AS responses,
    coalesce(fsum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
GROUP BY 1
"""
RESPONSE_LATENCIES_SQL: Final = """
SELECT list_position($personas, coalesce(persona, 'unknown'))::INTEGER - 1 AS code,
    epoch_us(date_trunc('hour', ts)) AS hour, latency_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success' AND latency_ms IS NOT NULL
"""
MINUTE_COLUMNS: Final = ("requests", "successes", "failures", "retries", "jobs_failed")


@dataclass
class Tally:
    """Mergeable counts and sorted value runs of a set of events (see the module's doc)."""

    minutes: list[dict[str, np.ndarray]] = field(default_factory=list)  # minute (µs) + counts
    errors: Counter[str] = field(default_factory=Counter)
    starts: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    # persona -> [responses, latency sum, latency count, cost, unpriced replies]
    responses: dict[str, list[float]] = field(default_factory=dict)
    runs: dict[tuple[str, str | None], list[np.ndarray]] = field(default_factory=dict)
    open_starts: list[tuple[str, str, str]] = field(default_factory=list)  # id, model, persona
    orphans: list[tuple[str, bool, float]] = field(default_factory=list)  # id, success, latency

    def add(self, other: Tally) -> None:
        """Add ``other``'s events to this tally (joins happen in ``joined``)."""
        self.minutes += other.minutes
        self.errors.update(other.errors)
        self.starts.update(other.starts)
        self.outcomes.update(other.outcomes)
        for persona, values in other.responses.items():
            mine = self.responses.setdefault(persona, [0, 0.0, 0, 0.0, 0])
            for i, value in enumerate(values):
                mine[i] += value
        for key, runs in other.runs.items():
            self.runs.setdefault(key, []).extend(runs)
        self.open_starts += other.open_starts
        self.orphans += other.orphans

    def joined(self) -> Tally:
        """This tally with its orphan outcomes joined to its open starts (an outcome counts once,
        under the first open start of its id; without one, under ``unknown``): what the window's
        numbers use."""
        starts: dict[str, tuple[str, str]] = {}
        for request, model, persona in self.open_starts:
            starts.setdefault(request, (model, persona))
        result = Tally(
            minutes=self.minutes,
            errors=self.errors,
            starts=self.starts,
            outcomes=Counter(self.outcomes),
            responses=self.responses,
            runs={key: list(runs) for key, runs in self.runs.items()},
        )
        latencies: dict[str, list[float]] = {}
        for request, success, latency in self.orphans:
            model, persona = starts.get(request, (UNKNOWN, UNKNOWN))
            result.outcomes[(model, persona, success)] += 1
            if success and latency == latency:  # not NaN
                latencies.setdefault(model, []).append(latency)
        for model, values in latencies.items():
            result.runs.setdefault((API, model), []).append(np.sort(np.array(values)))
        return result

    def runs_of(self, series: str, group: str | None = ALL) -> list[np.ndarray]:
        """The sorted runs of one series' group; ``ALL``: the series' own runs of every value,
        or (the responses', not kept twice) the runs of all its groups."""
        if group != ALL or (series, ALL) in self.runs:
            return self.runs.get((series, group), [])
        return [run for (kind, _), runs in self.runs.items() if kind == series for run in runs]

    def hourly_runs(self) -> dict[int, list[np.ndarray]]:
        """The responses' latency runs per hour (µs since the epoch)."""
        return {int(group): runs for (kind, group), runs in self.runs.items() if kind == HOURLY}

    def minute_totals(self) -> dict[str, int]:
        """The tally's requests, successes, failures, retries and failed jobs."""
        return {name: int(sum(int(m[name].sum()) for m in self.minutes)) for name in MINUTE_COLUMNS}


def window_tally(
    snapshot: EventSnapshot, start: datetime, end: datetime, detail: bool = True
) -> Tally:
    """The tally of the events with ``start ≤ ts < end``: stored tallies of the whole Parquet
    pieces plus one tally of the rest, joined. Without ``detail`` the rest's requests per model
    and persona, outcomes and errors are left out (a window's counts and percentiles only)."""
    start, end = to_utc_naive(start), to_utc_naive(end)
    pieces = snapshot.overlapping(start, end)
    whole = [p for p in pieces if p.parquet and p.min_ts >= start and p.max_ts < end]
    total = Tally()
    stored = set()
    for piece in whole:
        tally = piece_tally(snapshot, piece)
        if tally is not None:
            total.add(tally)
            stored.add(piece.key)
    rest = [p for p in pieces if p.key not in stored]
    alone = not stored
    total.add(compute_tally(snapshot, snapshot.relation(rest), start, end, detail, alone))
    return total.joined()


def compute_tally(
    snapshot: EventSnapshot,
    relation: str,
    start: datetime,
    end: datetime,
    detail: bool = True,
    alone: bool = False,
) -> Tally:
    """The tally of ``relation``'s events with ``start ≤ ts < end``, by SQL (see
    ``window_tally`` for ``detail``). ``alone``: no other tally will be added to it, so an
    outcome without a start here is ``unknown`` at once (no join of unmatched rows is needed)."""
    bound: dict[str, Any] = {"start": start, "end": end}
    with snapshot.cursor() as cur:

        def rows(sql: str, **params: Any) -> list[tuple[Any, ...]]:
            return cur.execute(with_events(sql, relation), bound | params).fetchall()

        def arrays(sql: str, **params: Any) -> dict[str, np.ndarray]:
            columns = cur.execute(with_events(sql, relation), bound | params).fetchnumpy()
            return {name: unmasked(column) for name, column in columns.items()}

        tally = Tally(minutes=[arrays(MINUTES_SQL)])
        if detail:
            for model, persona, count in rows(STARTS_SQL):
                tally.starts[(model, persona)] += count
            models = [UNKNOWN, *sorted({m for m, _ in tally.starts} - {UNKNOWN})]
            personas = [UNKNOWN, *sorted({p for _, p in tally.starts} - {UNKNOWN})]
            outcomes = _joined_outcomes(tally, arrays, models=models, personas=personas)
            _add_outcomes(tally, outcomes, models, personas, alone)
            for request, model, persona, success, latency in [] if alone else rows(UNMATCHED_SQL):
                if success is None:
                    tally.open_starts.append((request, model, persona))
                else:
                    tally.orphans.append((request, bool(success), _float(latency)))
            tally.errors = Counter(dict(rows(ERRORS_SQL)))
        api = arrays(API_VALUES_SQL)
        _add_run(tally, (API, ALL), api["latency_ms"])
        _add_run(tally, (TTFT, ALL), api["ttft_ms"])
        responses = rows(RESPONSES_SQL)
        # persona -> [responses, latency sum, latency count, cost, unpriced replies]
        tally.responses = {p: [n, 0.0, 0, cost, unpriced] for p, n, cost, unpriced in responses}
        if responses:
            named = [row[0] for row in responses]
            values = arrays(RESPONSE_LATENCIES_SQL, personas=named)
            for code, run in sorted_groups(values["code"], values["latency_ms"]):
                _add_run(tally, (RESPONSE, named[code]), run)
                # The mean's sum over sorted values: the same bits at every refresh.
                tally.responses[named[code]][1:3] = [float(run.sum()), len(run)]
            for hour, run in sorted_groups(values["hour"], values["latency_ms"]):
                _add_run(tally, (HOURLY, str(hour)), run)
    return tally


def _joined_outcomes(
    tally: Tally, arrays: Callable[..., dict[str, np.ndarray]], **names: list[str]
) -> dict[str, np.ndarray]:
    """``OUTCOMES_SQL``'s rows; joined to one start per request_id if an outcome met several
    (more rows than the tally's minutes count outcomes), which one query counts once."""
    outcomes = arrays(OUTCOMES_SQL.format(starts=START_PAIRS_SQL), **names)
    counted = sum(int(tally.minutes[0][name].sum()) for name in ("successes", "failures"))
    if len(outcomes["joined"]) > counted:
        outcomes = arrays(OUTCOMES_SQL.format(starts=ONE_START_PER_ID_SQL), **names)
    return outcomes


def _add_outcomes(
    tally: Tally,
    outcomes: dict[str, np.ndarray],
    models: list[str],
    personas: list[str],
    alone: bool,
) -> None:
    """Count the outcomes joined in the tally (and the anonymous ones, ``unknown`` for good) per
    (model, persona, success), and file their API latencies per model; an orphan with an id
    waits for ``Tally.joined``, unless the tally is ``alone`` (then it is ``unknown`` now)."""
    keep = outcomes["joined"].astype(bool) | outcomes["anonymous"].astype(bool) | alone
    model = outcomes["model"][keep].astype(np.int64)
    persona = outcomes["persona"][keep].astype(np.int64)
    success = outcomes["success"][keep].astype(bool)
    latency = outcomes["latency_ms"][keep]
    combined = (model * len(personas) + persona) * 2 + success
    for code, count in enumerate(np.bincount(combined)):
        if count:
            pair, ok = divmod(code, 2)
            m, p = divmod(pair, len(personas))
            tally.outcomes[(models[m], personas[p], bool(ok))] += int(count)
    for code, run in sorted_groups(model[success], latency[success]):
        _add_run(tally, (API, models[code]), run)


def _add_run(tally: Tally, key: tuple[str, str | None], values: np.ndarray) -> None:
    values = values[~np.isnan(values)]
    if len(values):
        tally.runs.setdefault(key, []).append(np.sort(values))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


# --- Tallies of whole pieces, kept on disk -----------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    """A piece's tally as read from its index, and where its runs lie in its values file."""

    tally: Tally  # without runs
    values: Path
    segments: list[tuple[str, str | None, int, int]]  # series, group, offset, length

    def mapped(self) -> Tally:
        """The tally with its runs, memory-mapped now: the mapping (and its file descriptor)
        lasts as long as the window's numbers are being computed, not as long as the piece."""
        # A plain view of the mapping: slicing a ``np.memmap`` costs far more per slice.
        array = np.asarray(np.load(self.values, mmap_mode="r", allow_pickle=False))
        if array.dtype != np.float64 or any(at + n > len(array) for _, _, at, n in self.segments):
            raise ValueError(f"{self.values.name} does not hold its index's runs")
        runs: dict[tuple[str, str | None], list[np.ndarray]] = {}
        for series, group, offset, length in self.segments:
            runs.setdefault((series, group), []).append(array[offset : offset + length])
        return replace(self.tally, runs=runs)


def piece_tally(snapshot: EventSnapshot, piece: Piece) -> Tally | None:
    """The Parquet piece's tally: its index from the process's cache, else its files (written
    now if no process did yet), and its runs mapped; None if the piece's file is gone."""
    key = ((piece.key,), "tally", (("_rows", snapshot.row_filter),))
    cached = snapshot.rollups.get(key)
    if cached is None:
        cached = _stored_tally(snapshot, piece)
        if cached is None:
            return None
        snapshot.rollups[key] = cached
    try:
        return cached.mapped()
    except (OSError, ValueError):  # its files were swept since: read (or write) them again
        snapshot.rollups.pop(key, None)
        stored = _stored_tally(snapshot, piece)
        return None if stored is None else stored.mapped()


def _stored_tally(snapshot: EventSnapshot, piece: Piece) -> _Stored | None:
    index = derived_file(piece, (TALLY_VERSION, snapshot.row_filter), TALLY_PREFIX, ".json")
    if index is None:
        return None
    values = index.with_suffix(".npy")
    try:
        return _read(index, values)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not written yet (or half-written by a process that died): write it
    relation = filtered(f"SELECT * FROM {piece.from_item}", snapshot.row_filter)
    end = piece.max_ts + timedelta(microseconds=1)
    _write(compute_tally(snapshot, relation, piece.min_ts, end), index, values)
    _forget_other_formats(index)
    return _read(index, values)


def _forget_other_formats(index: Path) -> None:
    """Delete the piece's tallies written in another ``TALLY_VERSION`` (they would stay until
    the piece goes); a reader that mapped one keeps its mapping."""
    stem = index.name.rpartition("-")[0]
    for other in index.parent.glob(f"{stem}-*.json"):
        try:
            version = json.loads(other.read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            continue  # being written, or gone: not ours to judge
        if version != TALLY_VERSION:
            other.unlink(missing_ok=True)
            other.with_suffix(".npy").unlink(missing_ok=True)


def _write(tally: Tally, index: Path, values: Path) -> None:
    """The tally as JSON plus its runs in one ``.npy``, the values first, so a reader that finds
    the index finds its values."""
    segments = []
    offset = 0
    ordered = sorted(tally.runs.items(), key=lambda item: (item[0][0], str(item[0][1])))
    for (series, group), runs in ordered:
        for run in runs:
            segments.append([series, group, offset, len(run)])
            offset += len(run)
    body = {
        "minutes": {
            name: np.concatenate([m[name] for m in tally.minutes]).tolist()
            for name in ("minute", *MINUTE_COLUMNS)
        },
        "errors": dict(tally.errors),
        "starts": [[m, p, n] for (m, p), n in tally.starts.items()],
        "outcomes": [[m, p, s, n] for (m, p, s), n in tally.outcomes.items()],
        "responses": tally.responses,
        "open_starts": tally.open_starts,
        "orphans": tally.orphans,
        "segments": segments,
        "version": TALLY_VERSION,
    }
    runs = [run for _, runs in ordered for run in runs]
    array = np.concatenate(runs) if runs else np.zeros(0)

    def save(path: Path) -> None:
        with path.open("wb") as handle:  # a path not ending in .npy would get one added
            np.save(handle, array, allow_pickle=False)

    replace_with(values, save)
    replace_with(index, lambda path: path.write_text(json.dumps(body)))


def _read(index: Path, values: Path) -> _Stored:
    """The stored tally, its values file checked (shape and type) by mapping it once."""
    body = json.loads(index.read_text())
    minutes = {name: np.array(column, dtype=np.int64) for name, column in body["minutes"].items()}
    tally = Tally(
        minutes=[minutes],
        errors=Counter(body["errors"]),
        starts=Counter({(m, p): n for m, p, n in body["starts"]}),
        outcomes=Counter({(m, p, bool(s)): n for m, p, s, n in body["outcomes"]}),
        responses=body["responses"],
        open_starts=[tuple(row) for row in body["open_starts"]],  # type: ignore[misc]
        orphans=[(r, bool(s), _float(v)) for r, s, v in body["orphans"]],
    )
    segments = [
        (series, group, offset, length) for series, group, offset, length in body["segments"]
    ]
    stored = _Stored(tally, values, segments)
    stored.mapped()
    return stored


def minute_grid(
    tally: Tally, start: datetime, end: datetime
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every minute of ``start ≤ ts < end`` (µs since the epoch) with the tally's counts in it."""
    first = int(np.datetime64(start.replace(second=0, microsecond=0), "us").astype(np.int64))
    last = int(np.datetime64(end, "us").astype(np.int64)) - 1
    minutes = np.arange(first, last + 1, MINUTE_US, dtype=np.int64) if last >= first else None
    if minutes is None:
        return np.zeros(0, dtype=np.int64), {n: np.zeros(0, np.int64) for n in MINUTE_COLUMNS}
    counts = {name: np.zeros(len(minutes), dtype=np.int64) for name in MINUTE_COLUMNS}
    for part in tally.minutes:
        if not len(part["minute"]):
            continue
        slots = (part["minute"].astype(np.int64) - first) // MINUTE_US
        inside = (slots >= 0) & (slots < len(minutes))
        for name in MINUTE_COLUMNS:
            np.add.at(counts[name], slots[inside], part[name][inside].astype(np.int64))
    return minutes, counts
