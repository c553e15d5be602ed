"""Monthly budgets in USD per user and per persona, soft (warn) or hard (stop).

Spend is the sum of the costs stored on replies this calendar month (UTC) in sessions of the user,
or of the persona, whatever the channel. At 80 % and 100 % a budget's crossing is recorded once
per month with an audit event, and the chat shows a notice from 80 % on. A hard budget is checked
when a job is created, in the same transaction, so a refused message is not stored (its draft stays
with the person) and no provider is called.

**Concurrent messages.** Admission runs under a lock (PostgreSQL: the budget rows ``FOR UPDATE``;
SQLite: its single writer, ``BEGIN IMMEDIATE``) and counts the jobs under the budget still in
flight, each reserved at the largest reply cost under the budget this month. A job is admitted
while spend plus those reservations plus its own stays under the limit, or when nothing is in
flight. So at most one message is admitted that can take spend over the limit, unless one reply
costs more than the largest before it (the first replies of a month reserve nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.exc import IntegrityError

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    AiJob,
    Budget,
    BudgetCrossing,
    ChatSession,
    Message,
    Persona,
    User,
)
from nexus_core.errors import BudgetExceeded, NotFound, ValidationError

THRESHOLDS: Final = (80, 100)  # percent of a budget at which people are told
NOTICE_PERCENT: Final = 80
MAX_MONTHLY_USD: Final = 1_000_000.0
IN_FLIGHT: Final = ("queued", "running", "retrying")


@dataclass(frozen=True)
class BudgetView:
    """A budget and its spend this month."""

    id: int
    scope: str  # user | persona
    target_id: int
    target_name: str
    monthly_usd: float
    hard: bool
    spent_usd: float
    resets_at: datetime

    @property
    def percent(self) -> float:
        return 100.0 * self.spent_usd / self.monthly_usd if self.monthly_usd else 100.0

    @property
    def owner(self) -> str:
        return (
            f"{self.target_name}'s" if self.scope == "user" else f"the {self.target_name} persona's"
        )

    def summary(self) -> str:
        """``$1.20 of $5.00 this month (24 %), hard`` — for tables and cards."""
        kind = "hard" if self.hard else "soft"
        return (
            f"${self.spent_usd:,.2f} of ${self.monthly_usd:,.2f} this month "
            f"({self.percent:.0f} %), {kind}"
        )

    def notice(self) -> str:
        """What the chat says at 80 % and more."""
        kind = "hard" if self.hard else "soft"
        what = "New messages are refused" if self.hard and self.percent >= 100 else "Heads up"
        return (
            f"{what}: {self.owner} monthly {kind} budget is {self.percent:.0f} % used "
            f"(${self.spent_usd:,.2f} of ${self.monthly_usd:,.2f}); it resets on "
            f"{self.resets_at:%Y-%m-%d} (UTC)."
        )


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(at: datetime) -> datetime:
    start = month_start(at)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def _scope_filter(scope: str, target_id: int):
    column = ChatSession.user_id if scope == "user" else ChatSession.persona_id
    return column == target_id


def _spend_in(conn: Connection, scope: str, target_id: int, since: datetime) -> tuple[float, float]:
    """(spend, largest reply cost) of replies since ``since`` under the budget."""
    row = conn.execute(
        select(func.coalesce(func.sum(Message.cost_usd), 0.0), func.max(Message.cost_usd))
        .select_from(Message)
        .join(ChatSession, ChatSession.id == Message.session_id)
        .where(
            Message.role == "assistant",
            Message.created_at >= since,
            _scope_filter(scope, target_id),
        )
    ).one()
    return float(row[0] or 0.0), float(row[1] or 0.0)


def _in_flight(conn: Connection, scope: str, target_id: int) -> int:
    return conn.execute(
        select(func.count())
        .select_from(AiJob)
        .join(ChatSession, ChatSession.id == AiJob.session_id)
        .where(AiJob.status.in_(IN_FLIGHT), _scope_filter(scope, target_id))
    ).scalar_one()


class BudgetService:
    """Set and read budgets; admit jobs and record crossings in the job pipeline's transactions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- administration -------------------------------------------------------------------

    def set_budget(
        self,
        scope: str,
        name: str,
        monthly_usd: float,
        *,
        hard: bool = False,
        actor: str | None = None,
        actor_id: int | None = None,
    ) -> BudgetView:
        """Set (or replace) the monthly budget of the user or persona called ``name``."""
        if not math.isfinite(monthly_usd) or not 0 < monthly_usd <= MAX_MONTHLY_USD:
            raise ValidationError(
                f"A monthly budget is more than $0 and at most ${MAX_MONTHLY_USD:,.0f}."
            )
        with self.db.session() as session:
            target_id = self._target_id(session.connection(), scope, name)
            budget = session.scalar(
                select(Budget).where(Budget.scope == scope, Budget.target_id == target_id)
            )
            if budget is None:
                budget = Budget(scope=scope, target_id=target_id)
                session.add(budget)
            budget.monthly_usd, budget.hard, budget.updated_by = float(monthly_usd), hard, actor
            session.flush()
            audit.record(
                session,
                audit.BUDGET_SET,
                actor_id=actor_id,
                actor_name=actor,
                target_type=scope,
                target_id=name,
                details={"monthly_usd": budget.monthly_usd, "hard": hard},
            )
            budget_id = budget.id
        return self.get(budget_id)

    def remove_budget(
        self, scope: str, name: str, *, actor: str | None = None, actor_id: int | None = None
    ) -> None:
        """Remove the budget of the user or persona called ``name``."""
        with self.db.session() as session:
            target_id = self._target_id(session.connection(), scope, name)
            budget = session.scalar(
                select(Budget).where(Budget.scope == scope, Budget.target_id == target_id)
            )
            if budget is None:
                raise NotFound(f"{name} has no budget.")
            session.delete(budget)
            audit.record(
                session,
                audit.BUDGET_REMOVED,
                actor_id=actor_id,
                actor_name=actor,
                target_type=scope,
                target_id=name,
            )

    @staticmethod
    def _target_id(conn: Connection, scope: str, name: str) -> int:
        if scope not in ("user", "persona"):
            raise ValidationError("A budget is for a user or a persona.")
        table = User if scope == "user" else Persona
        column = User.username if scope == "user" else Persona.name
        target_id = conn.execute(select(table.id).where(column == name.strip())).scalar()
        if target_id is None:
            raise NotFound(f"There is no {scope} named {name.strip()!r}.")
        return target_id

    # --- reading ----------------------------------------------------------------------------

    def list_budgets(self, now: datetime | None = None) -> list[BudgetView]:
        """Every budget with its spend this month, users first, then personas, by name."""
        with self.db.transaction() as conn:
            views = self._views(conn, select(Budget.__table__), now or datetime.now(UTC))
        return sorted(views, key=lambda b: (b.scope != "user", b.target_name.lower()))

    def by_target(self, scope: str) -> dict[int, BudgetView]:
        """The budgets of every user (or persona), by its id, with this month's spend."""
        return {b.target_id: b for b in self.list_budgets() if b.scope == scope}

    def get(self, budget_id: int, now: datetime | None = None) -> BudgetView:
        with self.db.transaction() as conn:
            views = self._views(
                conn,
                select(Budget.__table__).where(Budget.id == budget_id),
                now or datetime.now(UTC),
            )
        if not views:
            raise NotFound("No such budget.")
        return views[0]

    def applying_to(
        self, user_id: int, persona_id: int | None, now: datetime | None = None
    ) -> list[BudgetView]:
        """The budgets a message by this user to this persona counts against."""
        with self.db.transaction() as conn:
            return self._views(conn, _applying(user_id, persona_id), now or datetime.now(UTC))

    def notices(self, user_id: int, persona_id: int | None) -> list[str]:
        """The chat's notices: every applying budget at 80 % or more."""
        return [
            b.notice() for b in self.applying_to(user_id, persona_id) if b.percent >= NOTICE_PERCENT
        ]

    def _views(self, conn: Connection, query, now: datetime) -> list[BudgetView]:
        since, resets = month_start(now), next_month(now)
        views = []
        for row in conn.execute(query).all():
            spent, _largest = _spend_in(conn, row.scope, row.target_id, since)
            views.append(
                BudgetView(
                    id=row.id,
                    scope=row.scope,
                    target_id=row.target_id,
                    target_name=_target_name(conn, row.scope, row.target_id),
                    monthly_usd=row.monthly_usd,
                    hard=row.hard,
                    spent_usd=spent,
                    resets_at=resets,
                )
            )
        return views

    # --- the job pipeline -------------------------------------------------------------------

    def admit(self, conn: Connection, user_id: int, persona_id: int | None, now: datetime) -> None:
        """Refuse a new job under a spent hard budget (see the module's note on concurrency)."""
        hard = conn.execute(
            _applying(user_id, persona_id).where(Budget.hard.is_(True)).with_for_update()
        ).all()
        since = month_start(now)
        for row in hard:
            spent, largest = _spend_in(conn, row.scope, row.target_id, since)
            flying = _in_flight(conn, row.scope, row.target_id)
            fits = spent + largest * (flying + 1) < row.monthly_usd
            if spent >= row.monthly_usd or (flying and not fits):
                view = BudgetView(
                    row.id,
                    row.scope,
                    row.target_id,
                    _target_name(conn, row.scope, row.target_id),
                    row.monthly_usd,
                    True,
                    spent,
                    next_month(now),
                )
                raise BudgetExceeded(_refusal(view, waiting=spent < row.monthly_usd))

    def record_crossings(
        self, conn: Connection, user_id: int | None, persona_id: int | None, now: datetime
    ) -> list[BudgetView]:
        """After a reply is stored: note each 80 % / 100 % crossing once per month (audited)."""
        if user_id is None:
            return []
        crossed = []
        month = f"{now.astimezone(UTC):%Y-%m}"
        for view in self._views(conn, _applying(user_id, persona_id), now):
            for percent in THRESHOLDS:
                if view.percent >= percent and _first_crossing(conn, view.id, month, percent, now):
                    audit.record_in(
                        conn,
                        audit.BUDGET_THRESHOLD,
                        target_type=view.scope,
                        target_id=view.target_name,
                        details={
                            "percent": percent,
                            "spent_usd": round(view.spent_usd, 6),
                            "monthly_usd": view.monthly_usd,
                            "hard": view.hard,
                            "month": month,
                        },
                        at=now,
                    )
                    crossed.append(view)
        return crossed


def _applying(user_id: int, persona_id: int | None):
    budgets = Budget.__table__
    user_budget = and_(Budget.scope == "user", Budget.target_id == user_id)
    if persona_id is None:
        return select(budgets).where(user_budget)
    persona_budget = and_(Budget.scope == "persona", Budget.target_id == persona_id)
    return select(budgets).where(user_budget | persona_budget).order_by(Budget.id)


def _target_name(conn: Connection, scope: str, target_id: int) -> str:
    if scope == "user":
        name = conn.execute(select(User.username).where(User.id == target_id)).scalar()
    else:
        name = conn.execute(select(Persona.name).where(Persona.id == target_id)).scalar()
    return name or f"#{target_id}"


def _first_crossing(
    conn: Connection, budget_id: int, month: str, percent: int, now: datetime
) -> bool:
    """Record the crossing; False when it was recorded before (a savepoint keeps the reply)."""
    try:
        with conn.begin_nested():
            conn.execute(
                BudgetCrossing.__table__.insert().values(
                    budget_id=budget_id, month=month, percent=percent, created_at=now
                )
            )
    except IntegrityError:
        return False
    return True


def _refusal(view: BudgetView, *, waiting: bool) -> str:
    spent = f"${view.spent_usd:,.2f} of ${view.monthly_usd:,.2f} spent this month"
    resets = f"it resets on {view.resets_at:%Y-%m-%d} (UTC)"
    if waiting:
        return (
            f"Not sent: {view.owner} hard monthly budget is nearly spent ({spent}) and a reply "
            f"under it is still running; send again when it has finished — {resets}."
        )
    return f"Not sent: {view.owner} hard monthly budget is spent ({spent}); {resets}."
