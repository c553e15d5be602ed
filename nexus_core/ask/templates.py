"""The offline answers: common questions turned into SQL from templates, no model needed.

A question names one *measure* (replies, latency, errors, error rate, cost, tokens, feedback —
the first of ``MEASURES`` whose words it uses), up to two *groupings* (persona, model, user, day,
week, hour; errors also by error type; feedback also by category, priority or status) and perhaps a
*window* ("today", "last 7 days", "past 24 hours", "this month"). Each measure reads one *source*
(successful replies, failed requests, all requests, or feedback), and a grouping knows its column
in each source it applies to. Event measures count user traffic only (``traffic = 'user'``), as
the dashboard does.

Anything else — no measure, a grouping the measure does not have, "by <something>" that is not a
grouping — is *not covered*: the answer says so and offers a starting query to edit instead of a
guess. The SQL is built from the fixed pieces below; of the question only the window's number
(an integer) reaches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from nexus_core.workbench.cells import ChartSpec

MAX_GROUPINGS: Final = 2
MAX_WINDOW_UNITS: Final = 10_000
USER_TRAFFIC: Final = "e.traffic = 'user'"
STARTING_SQL: Final = """SELECT event, count(*) AS events, max(ts) AS last_seen
FROM events
WHERE ts >= now()::TIMESTAMP - INTERVAL 7 DAY
GROUP BY event
ORDER BY events DESC"""


@dataclass(frozen=True)
class Source:
    """Rows a measure counts: the relation (with the joins every grouping of it may use)."""

    key: str
    relation: str
    where: str
    time: str  # the column windows and time groupings use


REPLIES: Final = Source(
    "replies", "events e", f"e.event = 'job_success' AND {USER_TRAFFIC}", "e.ts"
)
_REQUEST_MODEL_JOIN: Final = (
    "LEFT JOIN events r ON r.event = 'request_start' AND r.request_id = e.request_id"
)
FAILURES: Final = Source(
    "failures",
    "events e",
    f"e.event = 'request_failure' AND {USER_TRAFFIC}",
    "e.ts",
)
REQUESTS: Final = Source(
    "requests",
    "events e",
    f"e.event IN ('request_success', 'request_failure') AND {USER_TRAFFIC}",
    "e.ts",
)
FEEDBACK: Final = Source("feedback", "feedback f", "", "f.created_at")
EVENT_SOURCES: Final = (REPLIES, FAILURES, REQUESTS)


@dataclass(frozen=True, eq=False)
class Grouping:
    """A "by …" of a question: the result column, its words, and its expression per source."""

    key: str
    words: tuple[str, ...]
    expressions: dict[str, str] = field(default_factory=dict)  # source key -> expression
    joins: dict[str, str] = field(default_factory=dict)  # source key -> the join it needs
    unit: str | None = None  # a time grouping: date_trunc's unit, for every source

    def expression(self, source: Source) -> str | None:
        """The grouping's column in ``source``, or None when it has none there."""
        if self.unit is not None:
            return f"date_trunc('{self.unit}', {source.time})"
        return self.expressions.get(source.key)


_EVENT_SESSION_JOIN: Final = "LEFT JOIN sessions s ON s.public_id = e.chat_session_id"
_EVENT_USER_JOIN: Final = "LEFT JOIN users u ON u.id = e.user_id"
_KINDS: Final = ("type", "types", "kind", "kinds")
GROUPINGS: Final[tuple[Grouping, ...]] = (
    Grouping(
        "persona",
        ("persona", "personas", "assistant", "assistants"),
        {"replies": "e.persona", "failures": "s.persona", "requests": "s.persona"}
        | {"feedback": "s.persona"},
        {"failures": _EVENT_SESSION_JOIN, "requests": _EVENT_SESSION_JOIN}
        | {"feedback": "LEFT JOIN sessions s ON s.id = f.session_id"},
    ),
    Grouping(
        "model",
        ("model", "models"),
        {"replies": "e.model", "failures": "r.model", "requests": "r.model"},
        {"failures": _REQUEST_MODEL_JOIN, "requests": _REQUEST_MODEL_JOIN},
    ),
    Grouping(
        "username",
        ("user", "users", "username", "person", "people", "who"),
        {s.key: "u.username" for s in EVENT_SOURCES} | {"feedback": "u.username"},
        {s.key: _EVENT_USER_JOIN for s in EVENT_SOURCES}
        | {"feedback": "LEFT JOIN users u ON u.id = f.user_id"},
    ),
    Grouping("error_type", ("error type", "error types", *_KINDS), {"failures": "e.error_type"}),
    Grouping("category", ("category", "categories", *_KINDS), {"feedback": "f.category"}),
    Grouping("priority", ("priority", "priorities"), {"feedback": "f.priority"}),
    Grouping("status", ("status", "statuses", "state"), {"feedback": "f.status"}),
    Grouping("day", ("day", "days", "daily", "date", "dates", "trend", "over time"), unit="day"),
    Grouping("week", ("week", "weeks", "weekly"), unit="week"),
    Grouping("hour", ("hour", "hours", "hourly"), unit="hour"),
    Grouping("month", ("month", "months", "monthly"), unit="month"),
)


@dataclass(frozen=True)
class Measure:
    """What a question asks for: its words, its source, the columns it computes."""

    key: str
    words: tuple[str, ...]
    source: Source
    columns: tuple[str, ...]
    main: str  # the column to rank by and to chart


def _words(listed: str) -> tuple[str, ...]:
    """The words and phrases of a ``|``-separated list."""
    return tuple(word for word in listed.split("|") if word)


_FAILED: Final = "count(*) FILTER (WHERE e.event = 'request_failure')"
MEASURES: Final[tuple[Measure, ...]] = (
    Measure(
        "error rate",
        ("error rate", "failure rate", "success rate", "error rates", "reliability"),
        REQUESTS,
        (
            "count(*) AS requests",
            f"{_FAILED} AS failed_requests",
            f"round(100.0 * {_FAILED} / nullif(count(*), 0), 2) AS error_rate_pct",
        ),
        "error_rate_pct",
    ),
    Measure(
        "latency",
        _words(
            "latency|latencies|slow|slowest|fast|fastest|p95|p50|speed|quick|how long|"
            "response time|response times"
        ),
        REPLIES,
        (
            "count(*) AS replies",
            "round(quantile_cont(e.latency_ms, 0.95)) AS p95_latency_ms",
            "round(avg(e.latency_ms)) AS avg_latency_ms",
        ),
        "p95_latency_ms",
    ),
    Measure(
        "cost",
        ("cost", "costs", "spend", "spent", "spending", "usd", "dollars", "money", "price"),
        REPLIES,
        (
            "count(*) AS replies",
            "round(sum(e.cost_usd), 4) AS cost_usd",
            "count(*) FILTER (WHERE e.cost_usd IS NULL) AS unpriced_replies",
        ),
        "cost_usd",
    ),
    Measure(
        "tokens",
        ("token", "tokens"),
        REPLIES,
        (
            "count(*) AS replies",
            "sum(e.input_tokens) AS input_tokens",
            "sum(e.output_tokens) AS output_tokens",
            "sum(e.reasoning_tokens) AS reasoning_tokens",
        ),
        "output_tokens",
    ),
    Measure(
        "feedback",
        _words("feedback|report|reports|complaint|complaints|thumbs|rating|ratings|bug|bugs"),
        FEEDBACK,
        (
            "count(*) AS feedback",
            "count(*) FILTER (WHERE f.rating = 1) AS thumbs_up",
            "count(*) FILTER (WHERE f.rating = 0) AS thumbs_down",
            "count(*) FILTER (WHERE f.rating IS NULL) AS reports",
        ),
        "feedback",
    ),
    Measure(
        "errors",
        _words("error|errors|fail|fails|failed|failure|failures|outage|outages|503|429"),
        FAILURES,
        ("count(*) AS failed_requests",),
        "failed_requests",
    ),
    Measure(
        "replies",
        _words(
            "replies|reply|volume|how many|count|number of|traffic|usage|busiest|messages|"
            "answers|answered|chats|conversations|activity"
        ),
        REPLIES,
        ("count(*) AS replies",),
        "replies",
    ),
)


@dataclass(frozen=True)
class TemplateAnswer:
    """An offline answer: the SQL, a title, whether the question was covered and a note."""

    sql: str
    title: str
    covered: bool
    note: str
    chart: ChartSpec | None = None


@dataclass(frozen=True)
class Window:
    """The time a question limits itself to, as a SQL condition on ``{time}`` and words."""

    condition: str  # with ``{time}`` for the source's time column
    label: str


_UNITS: Final = {"hour": ("HOUR", 1), "day": ("DAY", 1), "week": ("DAY", 7), "month": ("MONTH", 1)}
_LAST_N: Final = re.compile(r"\b(?:last|past|previous)\s+(\d+)\s+(hour|day|week|month)s?\b")
_LAST_ONE: Final = re.compile(r"\b(?:last|past|previous)\s+(hour|day|week|month)\b")
_THIS: Final = re.compile(r"\b(today|this\s+week|this\s+month)\b")
_THIS_UNITS: Final = {"today": "day", "this week": "week", "this month": "month"}
# "by X", "per X": X must be a grouping's word (or a filler before it), else not covered.
_BY: Final = re.compile(r"\b(?:by|per|for each|across|grouped by|broken down by)\s+([a-z0-9_]+)")
_FILLERS: Final = frozenset({"the", "each", "every", "a", "all", "their", "its", "which"})
_SPACES: Final = re.compile(r"\s+")


def _normal(question: str) -> str:
    return _SPACES.sub(" ", question.lower().replace("-", " ")).strip()


def _uses(text: str, word: str) -> int | None:
    """Where ``word`` (a whole word or phrase) first occurs in ``text``, or None."""
    match = re.search(rf"(?<![a-z0-9_]){re.escape(word)}(?![a-z0-9_])", text)
    return None if match is None else match.start()


def _first_use(text: str, words: tuple[str, ...]) -> int | None:
    found = [at for at in (_uses(text, w) for w in words) if at is not None]
    return min(found) if found else None


def find_measure(text: str) -> Measure | None:
    """The first measure (in ``MEASURES`` order) whose words the question uses."""
    return next((m for m in MEASURES if _first_use(text, m.words) is not None), None)


def find_groupings(text: str, source: Source) -> tuple[list[Grouping], list[str]]:
    """The groupings the question names that ``source`` has, in the order it names them, and
    the names of those it does not have (a word two groupings share goes to the one it has)."""
    found = sorted(
        ((at, g) for g in GROUPINGS if (at := _first_use(text, g.words)) is not None),
        key=lambda pair: pair[0],
    )
    usable = [(at, g) for at, g in found if g.expression(source) is not None]
    claimed = {at for at, _ in usable}
    missing = [g.key.replace("_", " ") for at, g in found if at not in claimed]
    return list(dict.fromkeys(g for _, g in usable)), missing


def unknown_groupings(text: str) -> list[str]:
    """The words after "by"/"per" that name no grouping."""
    known = {word for g in GROUPINGS for phrase in g.words for word in phrase.split()}
    unknown = []
    for match in _BY.finditer(text):
        word = match.group(1)
        if word in _FILLERS:
            following = text[match.end() :].split()
            word = following[0] if following else word
        if word not in known:
            unknown.append(word)
    return unknown


def without_window(text: str) -> str:
    """The question without its window ("last 7 days" is not a grouping by day)."""
    for pattern in (_LAST_N, _LAST_ONE, _THIS):
        text = pattern.sub(" ", text)
    return text


def find_window(text: str) -> Window | None:
    """The time the question limits itself to, if it says one."""
    if (match := _LAST_N.search(text)) is not None:
        count, unit = min(int(match.group(1)), MAX_WINDOW_UNITS), match.group(2)
        return _last(count, unit, f"last {count:d} {unit}{'s' if count != 1 else ''}")
    if (match := _LAST_ONE.search(text)) is not None:
        return _last(1, match.group(1), f"last {match.group(1)}")
    if (match := _THIS.search(text)) is not None:
        words = " ".join(match.group(1).split())
        unit = _THIS_UNITS[words]
        return Window(f"{{time}} >= date_trunc('{unit}', now()::TIMESTAMP)", words)
    return None


def _last(count: int, unit: str, label: str) -> Window:
    sql_unit, factor = _UNITS[unit]
    return Window(f"{{time}} >= now()::TIMESTAMP - INTERVAL {count * factor:d} {sql_unit}", label)


def build_sql(measure: Measure, groupings: list[Grouping], window: Window | None) -> str:
    """The query for ``measure`` grouped by ``groupings`` within ``window``."""
    source = measure.source
    selected = [f"{g.expression(source)} AS {g.key}" for g in groupings]
    joins = list(dict.fromkeys(g.joins[source.key] for g in groupings if source.key in g.joins))
    conditions = [c for c in (source.where,) if c]
    if window is not None:
        conditions.append(window.condition.format(time=source.time))
    lines = ["SELECT", ",\n".join(f"    {c}" for c in [*selected, *measure.columns])]
    lines += [f"FROM {source.relation}", *joins]
    if conditions:
        lines.append("WHERE " + "\n    AND ".join(conditions))
    if groupings:
        times = [g.key for g in groupings if g.unit is not None]
        lines += ["GROUP BY ALL", "ORDER BY " + ", ".join([*times, f"{measure.main} DESC"])]
    return "\n".join(lines)


def chart_for(measure: Measure, groupings: list[Grouping]) -> ChartSpec | None:
    """A line over time, or bars by the first grouping; coloured by the other grouping."""
    if not groupings:
        return None
    times = [g for g in groupings if g.unit is not None]
    x = (times or groupings)[0]
    others = [g.key for g in groupings if g is not x]
    kind = "line" if times else "bar"
    return ChartSpec(kind=kind, x=x.key, y=measure.main, color=others[0] if others else None)


def _title(measure: Measure, groupings: list[Grouping], window: Window | None) -> str:
    title = measure.key.capitalize()
    if groupings:
        title += " by " + " and ".join(g.key.replace("_", " ") for g in groupings)
    return title + (f", {window.label}" if window else ", all time")


def covered_summary() -> str:
    """What the offline model answers, in one sentence."""
    measures = ", ".join(m.key for m in MEASURES)
    return (
        f"Offline, Ask answers questions about {measures} — by persona, model, user, day, week, "
        "month or hour (errors also by error type; feedback also by category, priority or status), "
        "optionally over the last N hours, days, weeks or months."
    )


def answer(question: str) -> TemplateAnswer:
    """The template answer for ``question``, or a starting query when it is not covered."""
    text = _normal(question)
    measure = find_measure(text)
    if measure is None:
        return _not_covered(STARTING_SQL, "None of the offline templates matches this question.")
    rest = without_window(text)
    groupings, missing = find_groupings(rest, measure.source)
    window = find_window(text)
    missing += unknown_groupings(rest)
    if missing or len(groupings) > MAX_GROUPINGS:
        return _ungroupable(measure, window, missing)
    return TemplateAnswer(
        sql=build_sql(measure, groupings, window),
        title=_title(measure, groupings, window),
        covered=True,
        note=_covered_note(measure),
        chart=chart_for(measure, groupings),
    )


def _covered_note(measure: Measure) -> str:
    note = f"Answered offline from the {measure.key!r} template"
    if measure.source in EVENT_SOURCES:
        note += "; user traffic only (remove traffic = 'user' to count comparisons and evals)"
    return note + "."


def _ungroupable(measure: Measure, window: Window | None, names: list[str]) -> TemplateAnswer:
    possible = [g.key.replace("_", " ") for g in GROUPINGS if g.expression(measure.source)]
    asked = ", ".join(f"“{n}”" for n in names) or f"more than {MAX_GROUPINGS} things at once"
    why = (
        f"Offline, {measure.key} can be grouped by {', '.join(possible)} "
        f"(at most {MAX_GROUPINGS} at once) — not by {asked}."
    )
    return _not_covered(build_sql(measure, [], window), why)


def _not_covered(sql: str, why: str) -> TemplateAnswer:
    return TemplateAnswer(
        sql=sql,
        title="Not covered offline — a starting query",
        covered=False,
        note=f"{why} {covered_summary()} Here is a starting query to edit.",
    )


_MISSING_COLUMN: Final = re.compile(
    r'(?:Referenced column "?([^"\s]+)"? not found|have a column named "?([^"\s]+)"?)', re.I
)
_MISSING_TABLE: Final = re.compile(r'Table with name "?([^"\s]+?)"? does not exist', re.I)
_SYNTAX: Final = re.compile(r"syntax error at or near (\S+)", re.I)


def explain_error(error: str, views: list[str]) -> str:
    """What the offline model can say about a failed query: what went wrong and where to look
    (the workbench's own refusals and limits already say so in their message)."""
    if (match := _MISSING_COLUMN.search(error)) is not None:
        column = match.group(1) or match.group(2)
        return (
            f"The column “{column}” is not in the view the query reads. DuckDB's "
            "message names close matches; every column is listed under “Data you can query”."
        )
    if (match := _MISSING_TABLE.search(error)) is not None:
        return f"There is no view “{match.group(1)}”; the views are {', '.join(views)}."
    if (match := _SYNTAX.search(error)) is not None:
        return (
            f"The SQL does not parse near {match.group(1)}: check the commas, brackets and "
            "quotes there (text values go in single quotes)."
        )
    return "The offline model cannot rewrite SQL; the error says what to change."
