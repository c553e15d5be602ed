"""Starter notebooks: worked examples over the workbench's relations, defined as data.

Each is a list of cells — markdown that explains, then SQL (with a chart where one helps) — that
anyone can run as it is, or duplicate and edit. Every starter has a date range (``$period_start``,
``$period_end``) and, where its data knows the persona, a persona picker (``$persona``, empty for
all). Every time is naive UTC, like ``events.ts``; the SLO numbers come from
``nexus_core.analytics.slo`` so the notebook and the dashboard agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nexus_core.analytics.slo import LATENCY_OBJECTIVE, LATENCY_TARGET_MS, SUCCESS_OBJECTIVE
from nexus_core.workbench.cells import Cell, ChartSpec
from nexus_core.workbench.parameters import Parameter

PERIOD: Final = Parameter("period", "date_range", "last 30 days")
LAST_WEEK: Final = Parameter("period", "date_range", "last 7 days")
PERSONA: Final = Parameter("persona", "persona")
IN_PERIOD_SQL: Final = "ts >= $period_start AND ts < $period_end"
OF_PERSONA_SQL: Final = "($persona IS NULL OR persona = $persona)"


@dataclass(frozen=True)
class StarterNotebook:
    """A read-only example notebook: its key (for links), title, one-line description and cells."""

    key: str
    title: str
    description: str
    cells: tuple[Cell, ...]
    parameters: tuple[Parameter, ...] = (PERIOD, PERSONA)


def _notebook(
    key: str,
    title: str,
    description: str,
    *cells: Cell,
    parameters: tuple[Parameter, ...] = (PERIOD, PERSONA),
) -> StarterNotebook:
    """The notebook with stable cell ids (``<key>-1``, ``<key>-2``, …)."""
    numbered = tuple(
        Cell(kind=c.kind, source=c.source, chart=c.chart, id=f"{key}-{n}", name=c.name)
        for n, c in enumerate(cells, start=1)
    )
    return StarterNotebook(key, title, description, numbered, parameters)


def _md(text: str) -> Cell:
    return Cell(kind="markdown", source=text.strip())


def _sql(text: str, chart: ChartSpec | None = None, *, name: str | None = None) -> Cell:
    return Cell(kind="sql", source=text.strip(), chart=chart, name=name)


SLO_SUMMARY_SQL: Final = f"""
WITH counts AS (
    SELECT
        count(*) FILTER (WHERE event = 'job_success' AND latency_ms IS NOT NULL) AS responses,
        count(*) FILTER (WHERE event = 'job_success' AND latency_ms >= {LATENCY_TARGET_MS})
            AS slow_responses,
        count(*) FILTER (WHERE event IN ('request_success', 'request_failure')) AS requests,
        count(*) FILTER (WHERE event = 'request_failure') AS failed_requests
    FROM events
    WHERE {IN_PERIOD_SQL}
)
SELECT
    'latency: responses under {LATENCY_TARGET_MS} ms' AS slo,
    {LATENCY_OBJECTIVE} AS objective,
    responses AS valid,
    slow_responses AS bad,
    round(1 - slow_responses / nullif(responses, 0), 4) AS attainment,
    round(1 - slow_responses / nullif((1 - {LATENCY_OBJECTIVE}) * responses, 0), 4)
        AS error_budget_left
FROM counts
UNION ALL
SELECT
    'success: API requests that succeed',
    {SUCCESS_OBJECTIVE},
    requests,
    failed_requests,
    round(1 - failed_requests / nullif(requests, 0), 4),
    round(1 - failed_requests / nullif((1 - {SUCCESS_OBJECTIVE}) * requests, 0), 4)
FROM counts
"""
SLO_DAILY_SQL: Final = f"""
SELECT
    date_trunc('day', ts) AS day,
    count(*) FILTER (WHERE event = 'job_success') AS responses,
    round(100 * avg(CASE WHEN latency_ms < {LATENCY_TARGET_MS} THEN 1 ELSE 0 END)
        FILTER (WHERE event = 'job_success' AND latency_ms IS NOT NULL), 2) AS fast_pct,
    round(quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'job_success')) AS p95_ms,
    round(100 * count(*) FILTER (WHERE event = 'request_success')
        / nullif(count(*) FILTER (WHERE event IN ('request_success', 'request_failure')), 0), 2)
        AS api_success_pct
FROM events
WHERE {IN_PERIOD_SQL}
GROUP BY day
ORDER BY day
"""
# Feedback in the period, with the persona of its session (none for a report without one).
FEEDBACK_IN_PERIOD_SQL: Final = f"""
SELECT f.*, s.persona
FROM feedback AS f
LEFT JOIN sessions AS s ON s.id = f.session_id
WHERE f.created_at >= $period_start AND f.created_at < $period_end AND {OF_PERSONA_SQL}
"""
FEEDBACK_WEEKLY_SQL: Final = """
SELECT date_trunc('week', created_at) AS week, category, count(*) AS reports
FROM period_feedback
GROUP BY week, category
ORDER BY week, category
"""
THUMBS_WEEKLY_SQL: Final = """
SELECT
    date_trunc('week', created_at) AS week,
    count(*) FILTER (WHERE rating = 1) AS thumbs_up,
    count(*) FILTER (WHERE rating = 0) AS thumbs_down,
    round(100 * count(*) FILTER (WHERE rating = 1)
        / nullif(count(*) FILTER (WHERE rating IS NOT NULL), 0), 1) AS thumbs_up_pct
FROM period_feedback
GROUP BY week
ORDER BY week
"""
OPEN_FEEDBACK_SQL: Final = """
SELECT category, priority, count(*) AS still_open, min(created_at) AS oldest
FROM period_feedback
WHERE status IN ('open', 'in_progress')
GROUP BY category, priority
ORDER BY still_open DESC, oldest
"""
SLOWEST_SESSIONS_SQL: Final = f"""
WITH responses AS (
    SELECT
        chat_session_id,
        count(*) AS responses,
        round(median(latency_ms)) AS median_ms,
        round(max(latency_ms)) AS slowest_ms,
        sum(attempts - 1) AS retries
    FROM events
    WHERE event = 'job_success' AND {IN_PERIOD_SQL} AND {OF_PERSONA_SQL}
    GROUP BY chat_session_id
)
SELECT
    left(r.chat_session_id, 8) AS session,
    s.persona,
    u.username AS user_name,
    r.responses,
    r.median_ms,
    r.slowest_ms,
    r.retries,
    s.created_at AS started,
    r.chat_session_id AS session_id
FROM responses AS r
LEFT JOIN sessions AS s ON s.public_id = r.chat_session_id
LEFT JOIN users AS u ON u.id = s.user_id
ORDER BY r.slowest_ms DESC
LIMIT 20
"""
RESPONSE_TIMES_SQL: Final = f"""
SELECT latency_ms, persona
FROM events
WHERE event = 'job_success' AND {IN_PERIOD_SQL} AND {OF_PERSONA_SQL}
"""
# Reads the slowest sessions' cell by its name: one row per persona among them.
SLOW_BY_PERSONA_SQL: Final = """
SELECT
    coalesce(persona, '(unknown)') AS persona,
    count(*) AS sessions,
    max(slowest_ms) AS slowest_ms
FROM slow_sessions
GROUP BY ALL
ORDER BY slowest_ms DESC
"""
RETRIES_HOURLY_SQL: Final = f"""
WITH hours AS (
    SELECT
        date_trunc('hour', ts) AS hour,
        count(*) FILTER (WHERE event = 'request_start') AS requests,
        count(*) FILTER (WHERE event = 'job_retry') AS retries,
        count(DISTINCT job_id) FILTER (WHERE event = 'job_retry') AS jobs_retried
    FROM events
    WHERE {IN_PERIOD_SQL}
    GROUP BY hour
)
SELECT hour, requests, retries, jobs_retried,
       round(100 * retries / nullif(requests, 0), 1) AS retry_pct
FROM hours
ORDER BY hour
"""
RETRY_STORMS_SQL: Final = f"""
SELECT
    date_trunc('hour', ts) AS hour,
    coalesce(error_type, 'unknown') AS error_type,
    count(*) AS retries,
    count(DISTINCT job_id) AS jobs,
    round(avg(delay_ms)) AS avg_wait_ms
FROM events
WHERE event = 'job_retry' AND {IN_PERIOD_SQL}
GROUP BY hour, error_type
ORDER BY retries DESC, hour DESC
LIMIT 20
"""
PERSONA_REPLIES_SQL: Final = """
SELECT
    s.persona,
    count(DISTINCT s.id) AS sessions,
    count(*) FILTER (WHERE m.role = 'assistant') AS replies,
    count(*) FILTER (WHERE m.role = 'error') AS failed_replies,
    round(100 * count(*) FILTER (WHERE m.role = 'error')
        / nullif(count(*) FILTER (WHERE m.role IN ('assistant', 'error')), 0), 1) AS failure_pct,
    round(median(m.latency_ms) FILTER (WHERE m.role = 'assistant')) AS median_latency_ms,
    round(avg(m.tokens_out) FILTER (WHERE m.role = 'assistant')) AS avg_tokens_out
FROM messages AS m
JOIN sessions AS s ON s.id = m.session_id
WHERE m.created_at >= $period_start AND m.created_at < $period_end
    AND ($persona IS NULL OR s.persona = $persona)
GROUP BY s.persona
ORDER BY replies DESC
"""
PERSONA_LATENCY_SQL: Final = f"""
SELECT
    persona,
    count(*) AS responses,
    round(quantile_cont(latency_ms, 0.5)) AS p50_ms,
    round(quantile_cont(latency_ms, 0.95)) AS p95_ms
FROM events
WHERE event = 'job_success' AND {IN_PERIOD_SQL} AND {OF_PERSONA_SQL}
GROUP BY persona
ORDER BY p95_ms DESC
"""
PERSONA_THUMBS_SQL: Final = """
SELECT
    s.persona,
    count(*) FILTER (WHERE f.rating = 1) AS thumbs_up,
    count(*) FILTER (WHERE f.rating = 0) AS thumbs_down,
    round(100 * count(*) FILTER (WHERE f.rating = 1)
        / nullif(count(*) FILTER (WHERE f.rating IS NOT NULL), 0), 1) AS thumbs_up_pct
FROM feedback AS f
JOIN sessions AS s ON s.id = f.session_id
WHERE f.created_at >= $period_start AND f.created_at < $period_end
    AND ($persona IS NULL OR s.persona = $persona)
GROUP BY s.persona
ORDER BY thumbs_up_pct DESC NULLS LAST
"""

COST_BY_MEMBER_MODEL_SQL: Final = """
SELECT
    coalesce(u.username, '#' || e.user_id) AS member,
    coalesce(e.model, '(unknown)') AS model,
    count(*) AS replies,
    round(coalesce(sum(e.cost_usd), 0), 4) AS cost_usd,
    count(*) FILTER (WHERE e.cost_usd IS NULL) AS unpriced_replies,
    sum(e.input_tokens) AS input_tokens,
    sum(e.cached_input_tokens) AS cached_input_tokens,
    sum(e.output_tokens) + coalesce(sum(e.reasoning_tokens), 0) AS billed_output_tokens
FROM events e
LEFT JOIN users u ON u.id = e.user_id
WHERE e.event = 'job_success' AND e.ts >= $period_start AND e.ts < $period_end
    AND ($persona IS NULL OR e.persona = $persona)
GROUP BY ALL
ORDER BY cost_usd DESC, replies DESC
"""
COST_DAILY_SQL: Final = f"""
SELECT
    date_trunc('day', ts) AS day,
    coalesce(channel, '(before channels)') AS channel,
    round(coalesce(sum(cost_usd), 0), 4) AS cost_usd,
    count(*) AS replies
FROM events
WHERE event = 'job_success' AND {IN_PERIOD_SQL} AND {OF_PERSONA_SQL}
GROUP BY ALL
ORDER BY day, channel
"""


STARTER_NOTEBOOKS: Final[tuple[StarterNotebook, ...]] = (
    _notebook(
        "slo",
        "SLO over the last 30 days",
        "Latency and success objectives, the error budget left, and how each day did.",
        _md(f"""
## Service level objectives over the period
Two objectives over the period picked above (by default the last 30 days, as on the dashboard):
- **latency** — {LATENCY_OBJECTIVE:.0%} of AI responses are delivered in under
  {LATENCY_TARGET_MS:,} ms (`job_success.latency_ms`: user message stored → reply stored);
- **success** — {SUCCESS_OBJECTIVE:.1%} of API requests succeed (`request_success` against
  `request_failure`; every failed attempt counts, retried or not).

*Attainment* is good / valid. *Error budget left* is 1 − bad / ((1 − objective) · valid):
1 untouched, 0 spent, below 0 overspent.
"""),
        _sql(SLO_SUMMARY_SQL, ChartSpec(kind="bar", x="slo", y="attainment")),
        _md("""
### Day by day
The share of fast responses, the p95 response time and the API success rate per day (UTC).
A day below the objective spends more than its share of the budget.
"""),
        _sql(SLO_DAILY_SQL, ChartSpec(kind="line", x="day", y="fast_pct")),
        parameters=(PERIOD,),
    ),
    _notebook(
        "feedback-weekly",
        "Feedback by category per week",
        "What people report each week, thumbs up and down, and what is still open.",
        _md("""
## Feedback by category per week
Every report and thumbs rating is a row of `feedback`; thumbs on a reply are filed under
`content`. Weeks start on Monday (UTC). The first cell picks the feedback of the period (and of
the persona, when one is picked); the cells after it read it by its name, `period_feedback`.
"""),
        _sql(FEEDBACK_IN_PERIOD_SQL, name="period_feedback"),
        _sql(
            FEEDBACK_WEEKLY_SQL,
            ChartSpec(kind="bar", x="week", y="reports", color="category", aggregation="sum"),
        ),
        _md("### Thumbs up and down per week\n`rating` is 1 for thumbs up, 0 for thumbs down."),
        _sql(THUMBS_WEEKLY_SQL, ChartSpec(kind="line", x="week", y="thumbs_up_pct")),
        _md("### Still open\nReports not yet resolved or closed, by category and priority."),
        _sql(OPEN_FEEDBACK_SQL),
    ),
    _notebook(
        "slowest-sessions",
        "Slowest sessions",
        "The conversations whose replies took longest, joined to their persona and user.",
        _md("""
## Slowest sessions in the period
Response times come from the event log (`job_success.latency_ms`, retries included); the
persona and user come from the database, joined on `sessions.public_id =
events.chat_session_id`. `retries` counts the attempts beyond the first.
"""),
        _sql(
            SLOWEST_SESSIONS_SQL,
            ChartSpec(kind="bar", x="session", y="slowest_ms"),
            name="slow_sessions",
        ),
        _md("### Their personas\nThe cell above is named `slow_sessions`; this one reads it."),
        _sql(SLOW_BY_PERSONA_SQL, ChartSpec(kind="bar", x="persona", y="sessions")),
        _md("### How response times are spread\nEvery response of the period, by persona."),
        _sql(RESPONSE_TIMES_SQL, ChartSpec(kind="histogram", x="latency_ms", color="persona")),
    ),
    _notebook(
        "retry-storms",
        "Retry storms by hour",
        "Hours when the AI provider failed often enough to make the pipeline retry.",
        _md("""
## Retries by hour in the period (by default the last 7 days)
A `job_retry` is logged when an attempt failed with something worth retrying (a 429, a 5xx, a
timeout) and the job waits before the next attempt. Many retries in one hour — a *storm* —
usually means the provider was degraded or rate-limiting us.
"""),
        _sql(RETRIES_HOURLY_SQL, ChartSpec(kind="bar", x="hour", y="retries")),
        _md("""
### The worst hours, by error
The hours with the most retries in the period, per error type, with the average wait
before the next attempt.
"""),
        _sql(RETRY_STORMS_SQL),
        parameters=(LAST_WEEK,),
    ),
    _notebook(
        "persona-comparison",
        "Persona comparison",
        "Replies, failures, speed, length and thumbs of each persona side by side.",
        _md("""
## Personas side by side
From the database: sessions, replies, error bubbles (failed replies), the median response time
and the average reply length in tokens of each persona.
"""),
        _sql(PERSONA_REPLIES_SQL, ChartSpec(kind="bar", x="persona", y="failure_pct")),
        _md("### Response times from the event log"),
        _sql(PERSONA_LATENCY_SQL, ChartSpec(kind="bar", x="persona", y="p95_ms")),
        _md("### Thumbs per persona\nRatings on replies, by the persona of their session."),
        _sql(PERSONA_THUMBS_SQL, ChartSpec(kind="bar", x="persona", y="thumbs_up_pct")),
    ),
    _notebook(
        "cost-by-member-model",
        "Cost by team member and model",
        "Who spends what on which model in the period, and the daily cost by channel.",
        _md("""
## Cost by team member and model
From the event log: every stored reply's `job_success` carries its token counts and its cost at
the price in effect when it ran (`cost_usd`, null when the model had no price). Unpriced replies
are counted apart: their tokens are real, their cost is unknown — add a price on the Usage page.
"""),
        _sql(
            COST_BY_MEMBER_MODEL_SQL, ChartSpec(kind="bar", x="member", y="cost_usd", color="model")
        ),
        _md("### Daily cost by channel\nChat, comparisons, test sets and the command line."),
        _sql(COST_DAILY_SQL, ChartSpec(kind="bar", x="day", y="replies", color="channel")),
    ),
)
STARTERS_BY_KEY: Final[dict[str, StarterNotebook]] = {s.key: s for s in STARTER_NOTEBOOKS}
