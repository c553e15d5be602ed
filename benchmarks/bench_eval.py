"""An eval run's wall time: 100 frozen cases replayed and judged twice each (300 AI jobs) with the
simulated model at zero latency (goal: under 10 s).

A real SQLite file and the real pipeline: 100 answered user turns are stored, frozen into a test
set, the persona gets a new version, and ``EvalService.run`` replays every case on the eval lane,
judges each new reply against its original in both orders and aggregates the verdict.

    python benchmarks/bench_eval.py [--cases 100]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from nexus_core.ai.simulated import compose_answer
from nexus_core.app_context import AppContext
from nexus_core.db.models import ChatSession, Message, Persona
from nexus_core.eval.runs import EvalSpec
from nexus_core.settings import Settings

PERSONA = "Nexus Assistant"
GOAL_SECONDS = 10.0
TOPICS = ("migrations", "indexes", "caching", "queues", "retries", "budgets", "tests", "deploys")


def seed_turns(ctx: AppContext, cases: int) -> list[int]:
    """``cases`` answered user turns in one conversation of the admin; returns their ids."""
    user = ctx.users.get("admin")
    ids = []
    with ctx.db.session() as session:
        persona = session.query(Persona).filter_by(name=PERSONA).one()
        chat = ChatSession(user_id=user.id, persona_id=persona.id, persona_version=1)
        session.add(chat)
        session.flush()
        for number in range(cases):
            text = f"How should we handle {TOPICS[number % len(TOPICS)]} in service {number}?"
            asked = Message(session_id=chat.id, role="user", content=text)
            session.add(asked)
            session.flush()
            reply = compose_answer(persona.system_instruction, text)
            session.add(
                Message(
                    session_id=chat.id,
                    role="assistant",
                    content=reply,
                    reply_to_id=asked.id,
                    persona_version=1,
                    model="simulated-1",
                    latency_ms=5.0,
                )
            )
            ids.append(asked.id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), env="test", ai_provider="simulated", simulated_latency_seconds=0.0
        )
        ctx = AppContext(settings)
        ctx.init()
        admin = ctx.users.get("admin")
        ids = seed_turns(ctx, args.cases)
        started = time.perf_counter()
        ctx.freezer.freeze(admin, "Benchmark", message_ids=ids)
        froze = time.perf_counter() - started
        ctx.personas.edit(
            PERSONA, actor=admin, system_instruction="You are a blunt helper. Answer in one line."
        )
        started = time.perf_counter()
        view = ctx.evals.run(admin, EvalSpec("Benchmark", PERSONA), timeout=120)
        took = time.perf_counter() - started
        ctx.close()
    summary = view.summary
    assert summary is not None, view.error
    judge = summary.judge
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"{python}, SQLite, simulated model")
    print(f"freeze {args.cases} turns: {froze:.2f} s")
    print(
        f"eval run: {args.cases} cases, {args.cases} replays + {2 * args.cases} judge calls "
        f"in {took:.2f} s ({took / (3 * args.cases) * 1000:.1f} ms per job); "
        f"goal < {GOAL_SECONDS} s"
    )
    print(
        f"verdict: {judge.wins} wins, {judge.ties} ties ({judge.order_sensitive} order-sensitive), "
        f"{judge.losses} losses; win rate {judge.win_rate:.2f} "
        f"[{judge.ci_low:.2f}, {judge.ci_high:.2f}]"
    )
    if took >= GOAL_SECONDS:
        raise SystemExit(f"too slow: {took:.2f} s ≥ {GOAL_SECONDS} s")


if __name__ == "__main__":
    main()
