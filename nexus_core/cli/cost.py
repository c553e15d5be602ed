"""`nexus prices`, `nexus usage` and `nexus budgets`: the price table, usage by who and what
spends it, and monthly budgets (see README, "Cost and usage")."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date
from typing import TYPE_CHECKING, Any

from nexus_core.analytics.log_store import EventStore
from nexus_core.cli.parser import parse_now
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


def cmd_usage(ctx: AppContext, args: argparse.Namespace) -> int:
    now = parse_now(args.now)
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
