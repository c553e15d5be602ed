"""`nexus prices`, `nexus usage` and `nexus budgets` as docs/contract.md describes them, and
`nexus chat` refused by a spent hard budget without a provider request."""

from __future__ import annotations

import json

from nexus_core.settings import Settings
from tests.fakes.gemini_server import FakeGeminiServer
from tests.test_cli import assert_one_line_error, chat_env, run_chat, run_nexus, run_python

USAGE = {
    "promptTokenCount": 2_000,
    "cachedContentTokenCount": 1_000,
    "candidatesTokenCount": 100,
    "thoughtsTokenCount": 900,
}
# 1,000 uncached × $1 + 1,000 cached × $0.25 + 1,000 output × $4, per million tokens
EXPECTED_COST = (1_000 * 1.0 + 1_000 * 0.25 + 1_000 * 4.0) / 1e6


def chat(settings: Settings, server: FakeGeminiServer, text: str):  # type: ignore[no-untyped-def]
    return run_chat(
        settings,
        chat_env(settings, server.base_url),
        "--user",
        "admin",
        "--persona",
        "Nexus Assistant",
        "--json",
        text,
    )


def test_prices_set_and_list_keep_every_version(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    first = run_nexus(
        settings, "prices", "set", "gemini-2.5-flash*", "--input", "0.3", "--output", "2.5",
        "--from", "2026-01-01",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = run_nexus(
        settings, "prices", "set", "gemini-2.5-flash*", "--input", "0.5", "--output", "3",
        "--cached-input", "0.125", "--from", "2026-06-01",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    listed = json.loads(run_nexus(settings, "prices", "list", "--json").stdout)
    assert [
        (p["model"], p["input_usd"], p["cached_input_usd"], p["effective_from"]) for p in listed
    ] == [
        ("gemini-2.5-flash*", 0.5, 0.125, "2026-06-01"),
        ("gemini-2.5-flash*", 0.3, None, "2026-01-01"),
    ]
    text = run_nexus(settings, "prices", "list").stdout
    assert "simulated model is free" in text
    assert_one_line_error(
        run_nexus(settings, "prices", "set", "bad model", "--input", "1", "--output", "1"),
        "no spaces",
    )
    assert_one_line_error(
        run_nexus(
            settings, "prices", "set", "m", "--input", "1", "--output", "1", "--from", "soon"
        ),
        "is not a date",
    )


def test_usage_json_counts_tokens_and_cost_by_the_asked_keys(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    run_nexus(settings, "prices", "set", "gemini-flash*", "--input", "1", "--output", "4",
              "--cached-input", "0.25", "--from", "2020-01-01")  # fmt: skip
    gemini_server.enqueue(text="Hi!", usage=USAGE)
    assert chat(settings, gemini_server, "Hello").returncode == 0

    result = run_nexus(settings, "usage", "--window", "60m", "--by", "user,model,channel", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"window", "now", "total", "rows"} and report["window"] == "60m"
    [row] = report["rows"]
    assert (row["user"], row["model"], row["channel"]) == ("admin", "gemini-flash-latest", "cli")
    assert "persona" not in row
    for key, value in {
        "replies": 1,
        "input_tokens": 2_000,
        "cached_input_tokens": 1_000,
        "output_tokens": 100,
        "reasoning_tokens": 900,
        "unpriced_replies": 0,
    }.items():
        assert row[key] == value == report["total"][key], key
    assert abs(row["cost_usd"] - EXPECTED_COST) < 1e-9
    assert_one_line_error(run_nexus(settings, "usage", "--by", "team"), "Break usage down")


def test_a_spent_hard_budget_stops_nexus_chat_before_the_provider(
    settings: Settings, gemini_server: FakeGeminiServer
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    run_nexus(settings, "prices", "set", "gemini-flash*", "--input", "1", "--output", "4",
              "--from", "2020-01-01")  # fmt: skip
    budget = run_nexus(
        settings, "budgets", "set", "--user", "admin", "--monthly-usd", "0.001", "--hard"
    )
    assert budget.returncode == 0, budget.stderr
    gemini_server.enqueue(text="Costly.", usage=USAGE)
    assert chat(settings, gemini_server, "First").returncode == 0
    asked = len(gemini_server.requests)

    refused = chat(settings, gemini_server, "Second")

    assert refused.returncode != 0
    assert "budget" in refused.stderr and "Traceback" not in refused.stderr
    assert len(gemini_server.requests) == asked
    [listed] = json.loads(run_nexus(settings, "budgets", "list", "--json").stdout)
    assert (listed["scope"], listed["name"], listed["hard"]) == ("user", "admin", True)
    assert listed["spent_usd"] > listed["monthly_usd"] == 0.001
    assert_one_line_error(
        run_nexus(settings, "budgets", "set", "--persona", "Nobody", "--monthly-usd", "5"),
        "no persona named 'Nobody'",
    )


# Modules `nexus usage` has no use for; importing them cost it most of a second.
HEAVY_FOR_USAGE = ("nexus_core.ai.jobs", "nexus_core.workbench.sandbox", "alembic", "httpx")


def test_nexus_usage_imports_neither_the_job_pipeline_nor_the_workbench(
    settings: Settings,
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    probe = (
        "import sys\n"
        "from nexus_core.cli import main\n"
        "code = main(['usage', '--json'])\n"
        f"print(sorted(m for m in {HEAVY_FOR_USAGE!r} if m in sys.modules), file=sys.stderr)\n"
        "raise SystemExit(code)\n"
    )
    result = run_python(settings, "-c", probe)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["replies"] == 0
    assert result.stderr.strip() == "[]"
