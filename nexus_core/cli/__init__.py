"""The `nexus` command: init, users, personas, chat, export, metrics, usage, eval, notebooks, ….

Every command exits 0 on success and 1 with a one-line message on stderr (no traceback) on failure.
The arguments are parsed by ``parser``; a command's module is imported only when it runs, so a
quick command (``nexus usage``) does not pay for the job pipeline, the workbench or Alembic.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from nexus_core.cli.parser import build_parser
from nexus_core.errors import DatabaseUnavailable, NexusError

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext

Handler = Callable[["AppContext", argparse.Namespace], int]

# (command, subcommand) -> "module:function" in this package.
HANDLERS: Final[dict[tuple[str, str | None], str]] = {
    ("init", None): "admin:cmd_init",
    ("users", "add"): "admin:cmd_users_add",
    ("users", "list"): "admin:cmd_users_list",
    ("users", "feature"): "admin:cmd_users_feature",
    ("users", "disable"): "admin:cmd_users_disable",
    ("users", "enable"): "admin:cmd_users_enable",
    ("users", "unlock"): "admin:cmd_users_unlock",
    ("users", "export"): "admin:cmd_users_export",
    ("users", "erase"): "admin:cmd_users_erase",
    ("users", "passwd"): "admin:cmd_users_passwd",
    ("users", "role"): "admin:cmd_users_role",
    ("audit", "verify"): "admin:cmd_audit_verify",
    ("personas", "add"): "admin:cmd_personas_add",
    ("personas", "list"): "admin:cmd_personas_list",
    ("chat", None): "chat:cmd_chat",
    ("export", None): "chat:cmd_export",
    ("health", None): "operations:cmd_health",
    ("worker", None): "worker:cmd_worker",
    ("metrics", None): "operations:cmd_metrics",
    ("simulate", None): "operations:cmd_simulate",
    ("sql", None): "sql:cmd_sql",
    ("prices", "set"): "cost:cmd_prices_set",
    ("prices", "list"): "cost:cmd_prices_list",
    ("usage", None): "cost:cmd_usage",
    ("budgets", "set"): "cost:cmd_budgets_set",
    ("budgets", "list"): "cost:cmd_budgets_list",
    ("testsets", "freeze"): "eval:cmd_freeze",
    ("eval", "freeze"): "eval:cmd_freeze",
    ("eval", "run"): "eval:cmd_eval_run",
    ("alerts", "check"): "alerts:cmd_alerts_check",
    ("notebooks", "import"): "notebooks:cmd_import",
    ("notebooks", "export"): "notebooks:cmd_export",
    ("notebooks", "run"): "notebooks:cmd_run",
    ("retention", "apply"): "retention:cmd_retention_apply",
}


def command_handler(command: str, sub: str | None) -> Handler:
    """The function running ``nexus COMMAND [SUB]``, its module imported now."""
    module, function = HANDLERS[(command, sub)].split(":")
    handler: Handler = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return handler


UNEXPECTED_ERROR = "nexus: unexpected {kind}; nothing more is shown here — please report it"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `nexus` command; returns the exit code."""
    args = build_parser().parse_args(argv)  # `--help` and bad arguments end here, importing little
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from nexus_core.app_context import AppContext
    from nexus_core.ops.incidents import withhold_exception_text
    from nexus_core.settings import load_settings

    withhold_exception_text()
    sub = getattr(args, f"{args.command}_command", None)
    handler = command_handler(args.command, sub)
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
