"""`nexus prices`, `nexus usage` and `nexus budgets`: the price table, usage by who and what
spends it, and monthly budgets (see README, "Cost and usage")."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from nexus_core.analytics.log_store import EventStore
from nexus_core.cost.budgets import BudgetView
from nexus_core.cost.prices import SIMULATED_NOTE, PriceView
from nexus_core.cost.usage import parse_keys, usage_report
from nexus_core.errors import ValidationError

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"--from {text!r} is not a date (YYYY-MM-DD).") from exc


def cmd_prices_set(ctx: AppContext, args: argparse.Namespace) -> int:
    price = ctx.prices.set_price(
        args.model,
        input_usd=args.input,
        output_usd=args.output,
        cached_input_usd=args.cached_input,
        effective_from=_day(args.from_day),
        actor="cli",
    )
    print(f"{price.model}: {_price_text(price)} from {price.effective_from.isoformat()}")
    return 0


def _price_text(price: PriceView) -> str:
    cached = "input price" if price.cached_input_usd is None else f"${price.cached_input_usd:g}"
    return (
        f"input ${price.input_usd:g}, cached input {cached}, output ${price.output_usd:g} "
        "per million tokens"
    )


def price_json(price: PriceView) -> dict[str, Any]:
    return {
        "model": price.model,
        "input_usd": price.input_usd,
        "cached_input_usd": price.cached_input_usd,
        "output_usd": price.output_usd,
        "effective_from": price.effective_from.isoformat(),
        "created_by": price.created_by,
    }


def cmd_prices_list(ctx: AppContext, args: argparse.Namespace) -> int:
    prices = ctx.prices.list_prices()
    if args.json:
        print(json.dumps([price_json(p) for p in prices]))
        return 0
    for price in prices:
        print(f"{price.model}  from {price.effective_from.isoformat()}  {_price_text(price)}")
    if not prices:
        print("No prices yet: every model but the simulated one is unpriced.")
    print(f"({SIMULATED_NOTE})")
    return 0


def cmd_usage(ctx: AppContext, args: argparse.Namespace, now: datetime) -> int:
    names = {u.id: u.username for u in ctx.users.list()}
    with EventStore.from_settings(ctx.settings) as store:
        report = usage_report(store, args.window, now, parse_keys(args.by), user_names=names.get)
    if args.json:
        print(json.dumps(report))
        return 0
    total = report["total"]
    print(f"window {report['window']} ending {report['now']}: {_usage_line(total)}")
    for row in report["rows"]:
        label = " × ".join(str(row[k]) for k in parse_keys(args.by))
        print(f"  {label}: {_usage_line(row)}")
    return 0


def _usage_line(row: dict[str, Any]) -> str:
    unpriced = f", {row['unpriced_replies']} unpriced" if row["unpriced_replies"] else ""
    return (
        f"${row['cost_usd']:.4f} over {row['replies']} replies{unpriced}; tokens in "
        f"{row['input_tokens']} (cached {row['cached_input_tokens']}), out "
        f"{row['output_tokens']} + reasoning {row['reasoning_tokens']}"
    )


def cmd_budgets_set(ctx: AppContext, args: argparse.Namespace) -> int:
    scope, name = ("user", args.user) if args.user else ("persona", args.persona)
    budget = ctx.budgets.set_budget(scope, name, args.monthly_usd, hard=args.hard, actor="cli")
    print(_budget_text(budget))
    return 0


def budget_json(budget: BudgetView) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "name": budget.target_name,
        "monthly_usd": budget.monthly_usd,
        "hard": budget.hard,
        "spent_usd": round(budget.spent_usd, 6),
        "resets_at": budget.resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def _budget_text(budget: BudgetView) -> str:
    kind = "hard" if budget.hard else "soft"
    return (
        f"{budget.scope} {budget.target_name}: ${budget.monthly_usd:,.2f} a month ({kind}), "
        f"${budget.spent_usd:,.2f} spent, resets {budget.resets_at:%Y-%m-%d}"
    )


def cmd_budgets_list(ctx: AppContext, args: argparse.Namespace) -> int:
    budgets = ctx.budgets.list_budgets()
    if args.json:
        print(json.dumps([budget_json(b) for b in budgets]))
        return 0
    for budget in budgets:
        print(_budget_text(budget))
    if not budgets:
        print("No budgets.")
    return 0


def add_cost_commands(sub: Any) -> None:
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
