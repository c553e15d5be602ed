"""`nexus alerts check`: evaluate every alert rule once, deliver what changed (see README,
"Alerts")."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nexus_core.alerts.rules import format_value
from nexus_core.cli.parser import parse_now

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext


def cmd_alerts_check(ctx: AppContext, args: argparse.Namespace) -> int:
    report = ctx.alerts.check(parse_now(args.now))
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    for result in report.results:
        value = format_value(result.rule.kind, result.value)
        print(f"{result.state:<9} {result.rule.severity:<7} {result.rule.name}: {value}")
    if not report.results:
        print("No alert rules are enabled.")
    print(f"notified: {report.notified}")
    return 0
