"""`nexus retention apply [--now ISO8601]`: remove content and event-log files older than the
retention settings now, as the app does once a day (see README, "Governance")."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nexus_core.cli.parser import parse_now

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext

NO_POLICY = (
    "Retention is off: set NEXUS_RETAIN_CONTENT_DAYS and/or NEXUS_RETAIN_EVENTS_DAYS "
    "(unset, everything is kept). Nothing was removed."
)


def cmd_retention_apply(ctx: AppContext, args: argparse.Namespace) -> int:
    report = ctx.retention.apply(parse_now(args.now))
    if not report.applied:
        print(NO_POLICY)
        return 0
    removed = report.to_json()["removed"]
    print(", ".join(f"{kind}: {count}" for kind, count in removed.items()))
    print(json.dumps(report.to_json()))  # the last line, as the audit event holds it
    return 0
