"""The price table: USD per million tokens per model, versioned by the day a price takes effect.

A reply is costed once, when it is stored, with the price in effect on that day (UTC), and the
cost is kept on the reply and in its ``job_success`` event: a later price never rewrites history.
A price names an exact model or a prefix ending in ``*`` (``gemini-2.5-flash*``); the exact name
wins, then the longest prefix. Cost::

    (input − cached) × input price + cached × cached price + (output + reasoning) × output price

over a million. Without a cached-input price, cached tokens are charged the input price. A model
with no price is *unpriced* (``None``), never $0 — except the offline simulated model, which is
free by definition and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import ModelPrice
from nexus_core.errors import ValidationError

TOKENS_PER_UNIT: Final = 1_000_000
MAX_MODEL_CHARS: Final = 120
MAX_USD_PER_MILLION: Final = 10_000.0
SIMULATED_PROVIDER: Final = "simulated"
SIMULATED_NOTE: Final = "the offline simulated model is free ($0): it calls no provider"


@dataclass(frozen=True)
class PriceView:
    """One price version."""

    model: str
    input_usd: float
    cached_input_usd: float | None
    output_usd: float
    effective_from: date
    created_at: datetime | None = None
    created_by: str | None = None

    def matches(self, model: str) -> bool:
        """Whether this price's model name or prefix covers ``model``."""
        if self.model.endswith("*"):
            return model.startswith(self.model[:-1])
        return model == self.model

    @property
    def specificity(self) -> tuple[int, int]:
        """Exact names first, then longer prefixes."""
        return (0 if self.model.endswith("*") else 1, len(self.model))


@dataclass(frozen=True)
class TokenCounts:
    """The counts a cost is made of (None: the provider did not say)."""

    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None


def cost_usd(tokens: TokenCounts, price: PriceView | None) -> float | None:
    """The cost of one reply at ``price``; None when unpriced or without input/output counts."""
    if price is None or tokens.input_tokens is None or tokens.output_tokens is None:
        return None
    cached = min(tokens.cached_input_tokens or 0, tokens.input_tokens)
    cached_price = price.input_usd if price.cached_input_usd is None else price.cached_input_usd
    output = tokens.output_tokens + (tokens.reasoning_tokens or 0)
    total = (
        (tokens.input_tokens - cached) * price.input_usd
        + cached * cached_price
        + output * price.output_usd
    )
    return total / TOKENS_PER_UNIT


def price_in_effect(prices: list[PriceView], model: str, day: date) -> PriceView | None:
    """The most specific price covering ``model`` with the latest start on or before ``day``."""
    covering = [p for p in prices if p.effective_from <= day and p.matches(model)]
    if not covering:
        return None
    return max(covering, key=lambda p: (p.specificity, p.effective_from))


def _price_view(row: ModelPrice) -> PriceView:
    return PriceView(
        model=row.model,
        input_usd=row.input_usd,
        cached_input_usd=row.cached_input_usd,
        output_usd=row.output_usd,
        effective_from=row.effective_from,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _checked_usd(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_USD_PER_MILLION:
        raise ValidationError(
            f"The {name} price is USD per million tokens, from 0 to {MAX_USD_PER_MILLION:,.0f}."
        )
    return float(value)


def _checked_model(model: str) -> str:
    model = model.strip()
    if not model or len(model) > MAX_MODEL_CHARS or any(c.isspace() for c in model):
        raise ValidationError(f"A model is a name of 1–{MAX_MODEL_CHARS} characters, no spaces.")
    if "*" in model[:-1] or model == "*":
        raise ValidationError("A model is an exact name, or a prefix that ends in one `*`.")
    return model


def today() -> date:
    return datetime.now(UTC).date()


class PriceService:
    """Add and read price versions; cost replies in the writer's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set_price(
        self,
        model: str,
        *,
        input_usd: float,
        output_usd: float,
        cached_input_usd: float | None = None,
        effective_from: date | None = None,
        actor: str | None = None,
        actor_id: int | None = None,
    ) -> PriceView:
        """A new price version for ``model`` from ``effective_from`` (default today, UTC)."""
        row = ModelPrice(
            model=_checked_model(model),
            input_usd=_checked_usd("input", input_usd),
            cached_input_usd=_checked_usd("cached-input", cached_input_usd),
            output_usd=_checked_usd("output", output_usd),
            effective_from=effective_from or today(),
            created_by=actor,
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                audit.record(
                    session,
                    audit.PRICE_SET,
                    actor_id=actor_id,
                    actor_name=actor,
                    target_type="model_price",
                    target_id=row.model,
                    details={
                        "input_usd": row.input_usd,
                        "cached_input_usd": row.cached_input_usd,
                        "output_usd": row.output_usd,
                        "effective_from": row.effective_from.isoformat(),
                    },
                )
                return _price_view(row)
        except IntegrityError:
            raise ValidationError(
                f"{row.model} already has a price from {row.effective_from.isoformat()}; "
                "a price is never changed in place: give the next version its own start day."
            ) from None

    def list_prices(self) -> list[PriceView]:
        """Every price version: by model, newest first."""
        query = select(ModelPrice).order_by(ModelPrice.model, ModelPrice.effective_from.desc())
        with self.db.session() as session:
            return [_price_view(row) for row in session.scalars(query)]

    def price_for(self, model: str, at: datetime) -> PriceView | None:
        """The price in effect for ``model`` at ``at``."""
        return price_in_effect(self.list_prices(), model, at.astimezone(UTC).date())


def prices_in(conn: Connection) -> list[PriceView]:
    """Every price version, read in the caller's transaction."""
    rows = conn.execute(select(ModelPrice.__table__))
    return [
        PriceView(
            model=r.model,
            input_usd=r.input_usd,
            cached_input_usd=r.cached_input_usd,
            output_usd=r.output_usd,
            effective_from=r.effective_from,
        )
        for r in rows
    ]


def reply_cost(
    conn: Connection, provider: str, model: str | None, tokens: TokenCounts, at: datetime
) -> float | None:
    """The cost to store with a reply: $0 for the simulated model, else at the price in effect."""
    if provider == SIMULATED_PROVIDER:
        return 0.0
    if model is None:
        return None
    price = price_in_effect(prices_in(conn), model, at.astimezone(UTC).date())
    return cost_usd(tokens, price)
