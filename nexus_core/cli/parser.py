"""The `nexus` command line's arguments, kept apart from the commands so that parsing them imports
nothing heavy: each command's module is imported only when it runs (see ``HANDLERS``)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

from nexus_core.ai.lanes import LANE_NAMES
from nexus_core.errors import ValidationError
from nexus_core.ops.events import TRAFFIC_KINDS
from nexus_core.roles import ADMIN_USERNAME, ROLES

SQL_FORMATS: Final = ("table", "csv", "json")
FREEZE_HELP: Final = "turn real user turns into test-set cases with their original replies"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"--now {text!r} is not an ISO 8601 time.") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `nexus` command."""
    parser = OneLineParser(prog="nexus", description="Nexus AI command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or upgrade the schema, seed personas, ensure an admin")
    _add_users_commands(sub)
    _add_personas_commands(sub)
    _add_chat_commands(sub)
    _add_operations_commands(sub)
    _add_cost_commands(sub)
    _add_eval_commands(sub)
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="walk the audit hash chain; exit 1 if it is broken")
    verify.add_argument("--json", action="store_true")
    _add_alerts_commands(sub)
    _add_notebook_commands(sub)
    retention = sub.add_parser("retention", help="remove content and event logs past retention")
    apply = retention.add_subparsers(dest="retention_command", required=True).add_parser(
        "apply",
        help="apply NEXUS_RETAIN_CONTENT_DAYS and NEXUS_RETAIN_EVENTS_DAYS now (the app: daily)",
    )
    apply.add_argument("--now", help="apply as of this time (ISO 8601); default now")
    return parser


def _add_notebook_commands(sub: Any) -> None:
    """`notebooks import|export|run` on the `nexus` parser."""
    notebooks = sub.add_parser("notebooks", help="workbench notebooks as Markdown files, and runs")
    notebooks_sub = notebooks.add_subparsers(dest="notebooks_command", required=True)
    nimport = notebooks_sub.add_parser("import", help="a Markdown file as a new notebook")
    nimport.add_argument("file", metavar="FILE")
    nimport.add_argument("--owner", required=True, metavar="NAME", help="an analyst or admin")
    nexport = notebooks_sub.add_parser("export", help="print a notebook as its Markdown file")
    nexport.add_argument("id", metavar="ID", type=int)
    nrun = notebooks_sub.add_parser("run", help="run every cell in dependency order")
    nrun.add_argument("id", metavar="ID", type=int)
    nrun.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a parameter's value, as in a link (repeatable; default: its default)",
    )
    nrun.add_argument("--json", action="store_true", help="print one JSON line of every cell")


def _add_users_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="manage user accounts").add_subparsers(
        dest="users_command", required=True
    )
    add = users.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--role", default="member", help=f"one of {', '.join(ROLES)}")
    add.add_argument("--admin", action="store_true", help="same as --role admin")
    add.add_argument("--email")
    add.add_argument("--display-name")
    listing = users.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true", help="as JSON: name, role, status, lock")
    feature = users.add_parser("feature", help="turn a feature flag on or off")
    feature.add_argument("name")
    feature.add_argument("feature")
    feature.add_argument("state", choices=("on", "off"))
    for name, help_text in (
        ("disable", "disable a user"),
        ("enable", "enable a user"),
        ("unlock", "let a user locked out by failed sign-ins try again now"),
    ):
        users.add_parser(name, help=help_text).add_argument("name")
    passwd = users.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    export = users.add_parser("export", help="everything Nexus holds about a user, as JSON")
    export.add_argument("name")
    erase = users.add_parser("erase", help="erase a user's text and anonymise the account")
    erase.add_argument("name")
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    role = users.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", help=f"one of {', '.join(ROLES)}")


def _add_personas_commands(sub: Any) -> None:
    personas = sub.add_parser("personas", help="manage personas").add_subparsers(
        dest="personas_command", required=True
    )
    padd = personas.add_parser("add", help="create a persona")
    padd.add_argument("name")
    padd.add_argument("--instruction", required=True)
    padd.add_argument("--avatar", default="🤖")
    padd.add_argument("--color", default="#4F46E5")
    padd.add_argument("--description", default="")
    padd.add_argument("--model")
    padd.add_argument("--temperature", type=float, default=0.7)
    personas.add_parser("list", help="list personas")


def _add_chat_commands(sub: Any) -> None:
    chat = sub.add_parser("chat", help="send one message and print the persona's reply")
    chat.add_argument("--user", required=True)
    chat.add_argument("--persona", help="persona of a new session")
    chat.add_argument("--session", help="UUID of an existing session to continue")
    chat.add_argument("--json", action="store_true", help="print one JSON line")
    chat.add_argument("message")

    export = sub.add_parser("export", help="print a session with its messages and feedback")
    export.add_argument("session", metavar="SESSION_UUID")
    export.add_argument("--format", choices=("md", "json"), default="md")


def _add_operations_commands(sub: Any) -> None:
    metrics = sub.add_parser("metrics", help="the dashboard's numbers from the event log")
    metrics.add_argument("--window", default="60m", help="60m, 24h, 7d, 30d, …")
    metrics.add_argument("--now", help="end of the window (ISO 8601); default now")
    metrics.add_argument(
        "--traffic",
        choices=TRAFFIC_KINDS,
        default="user",
        help="user (default): leave out jobs no user waits for (comparisons, test sets); "
        "synthetic: only those; all: every event",
    )
    metrics.add_argument("--json", action="store_true", help="print the metrics JSON")

    sim = sub.add_parser(
        "simulate", help="demo data for every page, through the real services (offline)"
    )
    sim.add_argument("--users", type=int, default=5, help="demo members (plus the demo analyst)")
    sim.add_argument("--sessions", type=int, default=20, help="chat sessions")
    sim.add_argument("--days", type=float, default=7.0, help="spread the demo over this span")
    sim.add_argument("--failure-rate", type=float, default=0.02)
    sim.add_argument("--seed", type=int)

    sql = sub.add_parser("sql", help="one read-only query through the workbench's sandbox")
    sql.add_argument("query", metavar="QUERY", help="one SELECT (or WITH … SELECT) statement")
    sql.add_argument("--format", choices=SQL_FORMATS, default="table")

    health = sub.add_parser("health", help="check database, Redis and the AI provider")
    health.add_argument("--json", action="store_true", help="print the /health JSON")
    health.add_argument(
        "--worker",
        action="store_true",
        help="only whether a `nexus worker` on this host beats (a worker container's probe)",
    )

    worker = sub.add_parser(
        "worker", help="run AI jobs from the queue backend until SIGTERM (then drain)"
    )
    worker.add_argument(
        "--lanes",
        type=_lanes,
        default=LANE_NAMES,
        help=f"comma list of the lanes to take jobs from (default {','.join(LANE_NAMES)})",
    )
    worker.add_argument(
        "--threads", type=_positive, help="threads per lane (default NEXUS_WORKER_THREADS)"
    )


def _lanes(text: str) -> tuple[str, ...]:
    lanes = tuple(dict.fromkeys(lane.strip() for lane in text.split(",") if lane.strip()))
    unknown = [lane for lane in lanes if lane not in LANE_NAMES]
    if unknown or not lanes:
        raise argparse.ArgumentTypeError(
            f"lanes are a comma list of {', '.join(LANE_NAMES)}, not {text!r}"
        )
    return lanes


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return number


def _add_alerts_commands(sub: Any) -> None:
    """`alerts check` on the `nexus` parser."""
    alerts = sub.add_parser("alerts", help="alert rules over the event log and budgets")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    check = alerts_sub.add_parser(
        "check", help="evaluate every alert rule once and send what changed to the webhooks"
    )
    check.add_argument("--now", help="evaluate as of this time (ISO 8601); default now")
    check.add_argument("--json", action="store_true", help="print one JSON object")


def _add_cost_commands(sub: Any) -> None:
    """`prices`, `usage` and `budgets` on the `nexus` parser."""
    prices = sub.add_parser("prices", help="the price table (USD per million tokens)")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    pset = prices_sub.add_parser("set", help="add a price version for a model or prefix*")
    pset.add_argument("model", metavar="MODEL", help="an exact model name or a prefix ending in *")
    pset.add_argument("--input", type=float, required=True, metavar="USD")
    pset.add_argument("--output", type=float, required=True, metavar="USD")
    pset.add_argument("--cached-input", type=float, metavar="USD")
    pset.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD", help="default today (UTC)")
    plist = prices_sub.add_parser("list", help="every price version")
    plist.add_argument("--json", action="store_true")

    usage = sub.add_parser("usage", help="tokens and cost from the event log")
    usage.add_argument("--window", default="30d", help="60m, 24h, 7d, 30d, …")
    usage.add_argument("--now", help="end of the window (ISO 8601); default now")
    usage.add_argument("--by", default="user", help="user,persona,model,channel (any of them)")
    usage.add_argument("--json", action="store_true")

    budgets = sub.add_parser("budgets", help="monthly budgets per user or persona")
    budgets_sub = budgets.add_subparsers(dest="budgets_command", required=True)
    bset = budgets_sub.add_parser("set", help="set a monthly budget")
    who = bset.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME")
    who.add_argument("--persona", metavar="NAME")
    bset.add_argument("--monthly-usd", type=float, required=True, metavar="X")
    bset.add_argument("--hard", action="store_true", help="refuse new messages once spent")
    blist = budgets_sub.add_parser("list", help="every budget with this month's spend")
    blist.add_argument("--json", action="store_true")


def _add_eval_commands(sub: Any) -> None:
    """`testsets freeze`, `eval freeze` (the same) and `eval run` on the `nexus` parser."""
    testsets = sub.add_parser("testsets", help="test sets from real conversations")
    testsets_sub = testsets.add_subparsers(dest="testsets_command", required=True)
    _freeze_arguments(testsets_sub.add_parser("freeze", help=FREEZE_HELP))

    evals = sub.add_parser("eval", help="evaluate a persona version on frozen real traffic")
    evals_sub = evals.add_subparsers(dest="eval_command", required=True)
    _freeze_arguments(evals_sub.add_parser("freeze", help=FREEZE_HELP + " (= testsets freeze)"))
    run = evals_sub.add_parser("run", help="replay a test set, judge it against the baseline")
    run.add_argument("--test-set", required=True, metavar="NAME|ID")
    run.add_argument("--persona", required=True, metavar="NAME")
    run.add_argument("--version", type=int, metavar="N", help="default: the current version")
    run.add_argument("--provider", metavar="P", help="default: the server's provider")
    run.add_argument("--model", metavar="M")
    run.add_argument("--temperature", type=float, help="default: the persona version's")
    run.add_argument("--judge-provider", metavar="P", help="default: the server's provider")
    run.add_argument("--judge-model", metavar="M", help="default: the judge provider's model")
    run.add_argument("--baseline", metavar="original|RUN_ID", help="default: the original replies")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per case")
    run.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a check went from pass to fail or the win rate's interval is below 0.5",
    )
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after")
    run.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    _user_argument(run)


def _freeze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", "--test-set", dest="name", required=True, metavar="NAME")
    parser.add_argument(
        "--message-id",
        "--message",
        dest="message_ids",
        action="append",
        type=int,
        metavar="ID",
        help="a user message or its reply (repeatable)",
    )
    parser.add_argument(
        "--session", dest="sessions", action="append", metavar="UUID", help="(repeatable)"
    )
    _user_argument(parser)


def _user_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        default=ADMIN_USERNAME,
        metavar="NAME",
        help=f"act as this account (default {ADMIN_USERNAME}, which may freeze anyone's turns)",
    )
