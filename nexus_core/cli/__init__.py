"""The `nexus` command: init, users, personas (and, as they land, chat, export, metrics, ...).

Every command exits 0 on success and 1 with a one-line message on stderr (no traceback) on failure.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from nexus_core.ai.progress import JobUpdate
from nexus_core.analytics.event_snapshot import TRAFFIC_KINDS
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.app_context import AppContext
from nexus_core.cli.cost import (
    add_cost_commands,
    cmd_budgets_list,
    cmd_budgets_set,
    cmd_prices_list,
    cmd_prices_set,
    cmd_usage,
)
from nexus_core.cli.eval import add_eval_commands, cmd_eval_run, cmd_freeze
from nexus_core.cli.sql import SQL_FORMATS, cmd_sql
from nexus_core.db.models import ROLES
from nexus_core.errors import DatabaseUnavailable, NexusError, ValidationError
from nexus_core.ops.health import run_health
from nexus_core.ops.incidents import withhold_exception_text
from nexus_core.settings import load_settings
from nexus_core.simulation import simulate
from nexus_core.transcripts import export_session

PROGRESS_WIDTH = 30
Handler = Callable[[AppContext, argparse.Namespace], int]


def _read_password(args: argparse.Namespace, prompt: str) -> tuple[str, bool]:
    """The password from stdin, a prompt, or a generated one; returns (password, generated)."""
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ValidationError("--password-stdin was given but standard input was empty.")
        return line, False
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if first != getpass.getpass("Repeat: "):
            raise ValidationError("The two passwords differ.")
        return first, False
    return secrets.token_urlsafe(12), True


def cmd_init(ctx: AppContext, args: argparse.Namespace) -> int:
    report = ctx.init()
    print(f"Database ready at {ctx.db.engine.url.render_as_string(hide_password=True)}.")
    print(f"Default personas created: {report.personas_created}.")
    if report.admin_created and report.admin_password:
        print(f"Created user 'admin' with password: {report.admin_password}")
        print("It is shown only this once; change it after signing in.")
    elif report.admin_created:
        print("Created user 'admin' with the password from NEXUS_ADMIN_PASSWORD.")
    return 0


def cmd_users_add(ctx: AppContext, args: argparse.Namespace) -> int:
    role = "admin" if args.admin else args.role
    password, generated = _read_password(args, f"Password for {args.name}: ")
    user = ctx.users.create(
        args.name,
        password,
        role=role,
        email=args.email,
        display_name=args.display_name,
        must_change_password=generated,
    )
    print(f"Created {user.role} {user.username!r}.")
    if generated:
        print(f"Temporary password (change at first sign-in): {password}")
    return 0


def cmd_users_list(ctx: AppContext, args: argparse.Namespace) -> int:
    for u in ctx.users.list():
        flags = ",".join(sorted(k for k, v in u.features.items() if v)) or "-"
        state = "disabled" if u.disabled else "active"
        print(f"{u.username}\t{u.role}\t{state}\t{flags}")
    return 0


def cmd_users_feature(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.set_feature(args.name, args.feature, args.state == "on")
    print(f"{args.feature} is {args.state} for {user.username!r}.")
    return 0


def cmd_users_disable(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.users.set_disabled(args.name, True)
    print(f"Disabled {args.name!r}; every browser signed in as them is signed out.")
    return 0


def cmd_users_enable(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.users.set_disabled(args.name, False)
    print(f"Enabled {args.name!r}.")
    return 0


def cmd_users_passwd(ctx: AppContext, args: argparse.Namespace) -> int:
    password, generated = _read_password(args, f"New password for {args.name}: ")
    ctx.users.set_password(args.name, password, must_change=generated)
    print(f"Password changed for {args.name!r}; every browser signed in as them is signed out.")
    if generated:
        print(f"Temporary password (change at first sign-in): {password}")
    return 0


def cmd_users_role(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.set_role(args.name, args.role)
    print(f"{user.username!r} is now {user.role}.")
    return 0


def cmd_personas_add(ctx: AppContext, args: argparse.Namespace) -> int:
    persona = ctx.personas.create(
        args.name,
        args.instruction,
        avatar=args.avatar,
        color=args.color,
        description=args.description,
        model=args.model,
        temperature=args.temperature,
    )
    print(f"Created persona {persona.name!r} (version {persona.version}).")
    return 0


def cmd_personas_list(ctx: AppContext, args: argparse.Namespace) -> int:
    for p in ctx.personas.list(include_inactive=True):
        state = "active" if p.active else "inactive"
        print(f"{p.avatar} {p.name}\tv{p.version}\t{state}\t{p.model or 'default model'}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def cmd_chat(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.get(args.user)
    if args.session:
        chat_session = ctx.chat.get_session(args.session, user)
    else:
        if not args.persona:
            raise ValidationError("Give --persona NAME for a new session, or --session UUID.")
        chat_session = ctx.chat.create_session(user, args.persona)
    worker = ctx.worker
    unsubscribe = None
    if not args.json and sys.stderr.isatty():
        unsubscribe = worker.broker.subscribe(chat_session.public_id, _print_retry_note)
    _message, job_id = worker.ask(
        ctx.chat, chat_session.public_id, user, args.message, channel="cli"
    )
    job = worker.wait(job_id)
    if unsubscribe:
        unsubscribe()
    reply = ctx.chat.message(job.reply_message_id, user) if job.reply_message_id else None
    ok = job.status == "succeeded" and reply is not None
    if args.json:
        print(
            json.dumps(
                {
                    "session_id": chat_session.public_id,
                    "status": "ok" if ok else "failed",
                    "reply": reply.content if ok and reply else None,
                    "error": None if ok else (job.last_error or "The reply failed."),
                },
                ensure_ascii=False,
            )
        )
        return 0 if ok else 1
    if ok and reply:
        print(reply.content)
        return 0
    print(
        f"nexus: {job.last_error or 'The reply failed.'} (session {chat_session.public_id})",
        file=sys.stderr,
    )
    return 1


def cmd_export(ctx: AppContext, args: argparse.Namespace) -> int:
    exported = export_session(ctx.db, args.session, args.format, actor=None)
    sys.stdout.write(
        exported.content if exported.content.endswith("\n") else exported.content + "\n"
    )
    return 0


def cmd_health(ctx: AppContext, args: argparse.Namespace) -> int:
    report = run_health(ctx.settings)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for name, check in report.to_dict()["checks"].items():
            mark = "ok  " if check["ok"] else "FAIL"
            print(f"{mark} {name:<9} {check['latency_ms']:8.1f} ms  {check['detail']}")
        print(f"status: {report.status}")
    return 0 if report.ok else 1


def _parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"--now {text!r} is not an ISO 8601 time.") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_metrics(ctx: AppContext, args: argparse.Namespace) -> int:
    now = _parse_now(args.now)
    with EventStore.from_settings(ctx.settings) as store:
        numbers = compute_metrics(store, args.window, now, traffic=args.traffic)
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(metrics_text(numbers))
    return 0


def metrics_text(numbers: dict[str, Any]) -> str:
    """The metrics for a terminal: rates in percent, times in whole milliseconds."""
    slo = numbers["slo"]
    return "\n".join(
        (
            f"window {numbers['window']} ending {numbers['now']}",
            f"requests {numbers['requests']}  failures {numbers['failures']}  "
            f"retries {numbers['retries']}  success rate {_percent(numbers['success_rate'])}",
            f"p95 response {_ms(numbers['p95_latency_ms'])}  "
            f"avg {_ms(numbers['avg_latency_ms'])}  "
            f"API p95 {_ms(numbers['api_p95_latency_ms'])}  "
            f"skipped lines {numbers['skipped_lines']}",
            f"alerts: {slo['alerts']['state']}",
        )
    )


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.2f} %"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def cmd_simulate(ctx: AppContext, args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        filled = PROGRESS_WIDTH * done // total
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        print(f"\r[{bar}] {done}/{total} sessions", end="", file=sys.stderr, flush=True)

    report = simulate(
        ctx,
        users=args.users,
        sessions=args.sessions,
        days=args.days,
        failure_rate=args.failure_rate,
        seed=args.seed,
        progress=progress,
    )
    print(file=sys.stderr)
    print(
        f"Simulated {report.sessions} sessions for {report.users} demo users and the demo "
        f"analyst over the last {args.days:g} days (Simulated model (offline)):"
    )
    counts = {
        "replies": report.replies,
        "failed replies": report.failures,
        "thumbs": report.ratings,
        "feedback reports": report.reports,
        "triage steps": report.triage_steps,
        "blind comparisons": report.comparisons,
        "votes": report.votes,
        "test-set runs": report.test_set_runs,
        "evaluations": report.eval_runs,
    }
    print(", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0


def _print_retry_note(update: JobUpdate) -> None:
    if update.status == "retrying" and update.retry_in_seconds is not None:
        print(
            f"… {update.message} — retrying in {update.retry_in_seconds:.1f} s "
            f"(attempt {update.attempt + 1} of {update.max_attempts})",
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `nexus` command."""
    parser = OneLineParser(prog="nexus", description="Nexus AI command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or upgrade the schema, seed personas, ensure an admin")
    _add_users_commands(sub)
    _add_personas_commands(sub)
    _add_chat_commands(sub)
    _add_operations_commands(sub)
    add_cost_commands(sub)
    add_eval_commands(sub)
    return parser


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
    users.add_parser("list", help="list users")
    feature = users.add_parser("feature", help="turn a feature flag on or off")
    feature.add_argument("name")
    feature.add_argument("feature")
    feature.add_argument("state", choices=("on", "off"))
    for name, help_text in (("disable", "disable a user"), ("enable", "enable a user")):
        users.add_parser(name, help=help_text).add_argument("name")
    passwd = users.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
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


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("init", None): cmd_init,
    ("users", "add"): cmd_users_add,
    ("users", "list"): cmd_users_list,
    ("users", "feature"): cmd_users_feature,
    ("users", "disable"): cmd_users_disable,
    ("users", "enable"): cmd_users_enable,
    ("users", "passwd"): cmd_users_passwd,
    ("users", "role"): cmd_users_role,
    ("personas", "add"): cmd_personas_add,
    ("personas", "list"): cmd_personas_list,
    ("chat", None): cmd_chat,
    ("export", None): cmd_export,
    ("health", None): cmd_health,
    ("metrics", None): cmd_metrics,
    ("simulate", None): cmd_simulate,
    ("sql", None): cmd_sql,
    ("prices", "set"): cmd_prices_set,
    ("prices", "list"): cmd_prices_list,
    ("usage", None): lambda ctx, args: cmd_usage(ctx, args, _parse_now(args.now)),
    ("budgets", "set"): cmd_budgets_set,
    ("budgets", "list"): cmd_budgets_list,
    ("testsets", "freeze"): cmd_freeze,
    ("eval", "freeze"): cmd_freeze,
    ("eval", "run"): cmd_eval_run,
}


UNEXPECTED_ERROR = "nexus: unexpected {kind}; nothing more is shown here — please report it"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `nexus` command; returns the exit code."""
    withhold_exception_text()
    args = build_parser().parse_args(argv)
    sub = getattr(args, f"{args.command}_command", None)
    handler = HANDLERS[(args.command, sub)]
    ctx: AppContext | None = None
    try:
        ctx = AppContext(load_settings())
        return handler(ctx, args)
    except DatabaseUnavailable as exc:  # an operator's tool: say where and why
        url = ctx.db.engine.url.render_as_string(hide_password=True) if ctx else "?"
        print(f"nexus: cannot use the database at {url}: {exc.reason}", file=sys.stderr)
    except NexusError as exc:
        print(f"nexus: {exc}", file=sys.stderr)
    except OperationalError as exc:
        url = ctx.db.engine.url.render_as_string(hide_password=True) if ctx else "?"
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        print(f"nexus: cannot use the database at {url}: {reason}", file=sys.stderr)
    except SQLAlchemyError as exc:
        print(f"nexus: database error: {type(exc).__name__}", file=sys.stderr)
    except KeyboardInterrupt:
        print("nexus: interrupted", file=sys.stderr)
    except BrokenPipeError:  # the reader (e.g. `head`) went away: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        print(UNEXPECTED_ERROR.format(kind=type(exc).__name__), file=sys.stderr)
    finally:
        if ctx is not None:
            ctx.close()
    return 1
