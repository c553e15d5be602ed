"""The `nexus` command line: init is idempotent, bad input is one line on stderr and exit 1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_core.settings import Settings


def run_nexus(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_python(settings, "-m", "nexus_core.cli", *args, stdin=stdin)


def run_python(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a new process with ``settings``' data dir and database (no API key)."""
    env = {
        **os.environ,
        "NEXUS_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "NEXUS_ENV": "test",
    }
    env.pop("GEMINI_API_KEY", None)
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=settings.data_dir.parent,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.stderr


def test_init_twice_creates_personas_and_admin_once(settings: Settings) -> None:
    first = run_nexus(settings, "init")
    assert first.returncode == 0, first.stderr
    assert "Created user 'admin' with password:" in first.stdout
    second = run_nexus(settings, "init")
    assert second.returncode == 0, second.stderr
    assert "Default personas created: 0." in second.stdout
    assert "admin" not in second.stdout.split("Default personas")[1]
    listed = run_nexus(settings, "users", "list")
    assert listed.stdout.strip().splitlines() == ["admin\tadmin\tactive\t-"]
    assert len(run_nexus(settings, "personas", "list").stdout.strip().splitlines()) >= 4


def test_users_add_reads_the_password_from_stdin(settings: Settings) -> None:
    result = run_nexus(
        settings,
        "users",
        "add",
        "kim",
        "--password-stdin",
        "--role",
        "analyst",
        stdin="a-long-password\n",
    )
    assert result.returncode == 0, result.stderr
    assert "a-long-password" not in result.stdout
    assert "kim\tanalyst\tactive\t-" in run_nexus(settings, "users", "list").stdout


def test_admin_flag_makes_an_admin(settings: Settings) -> None:
    run_nexus(
        settings, "users", "add", "root", "--password-stdin", "--admin", stdin="a-long-password\n"
    )
    assert "root\tadmin" in run_nexus(settings, "users", "list").stdout


def test_duplicate_user_is_one_line_and_non_zero(settings: Settings) -> None:
    run_nexus(settings, "users", "add", "lee", "--password-stdin", stdin="a-long-password\n")
    again = run_nexus(
        settings, "users", "add", "lee", "--password-stdin", stdin="a-long-password\n"
    )
    assert_one_line_error(again, "already exists")


def test_unknown_role_is_one_line_and_non_zero(settings: Settings) -> None:
    result = run_nexus(
        settings,
        "users",
        "add",
        "max",
        "--password-stdin",
        "--role",
        "boss",
        stdin="a-long-password\n",
    )
    assert_one_line_error(result, "Unknown role")


def test_weak_password_is_one_line_and_non_zero(settings: Settings) -> None:
    result = run_nexus(settings, "users", "add", "ned", "--password-stdin", stdin="short\n")
    assert_one_line_error(result, "at least 10 characters")


def test_feature_toggle_and_unknown_feature(settings: Settings) -> None:
    run_nexus(settings, "users", "add", "ola", "--password-stdin", stdin="a-long-password\n")
    ok = run_nexus(settings, "users", "feature", "ola", "pro_session_analytics", "on")
    assert ok.returncode == 0, ok.stderr
    assert (
        "ola\tmember\tactive\tpro_session_analytics" in run_nexus(settings, "users", "list").stdout
    )
    assert_one_line_error(
        run_nexus(settings, "users", "feature", "ola", "teleport", "on"), "Unknown feature"
    )


def test_disable_and_passwd(settings: Settings) -> None:
    run_nexus(settings, "users", "add", "pat", "--password-stdin", stdin="a-long-password\n")
    assert run_nexus(settings, "users", "disable", "pat").returncode == 0
    assert "pat\tmember\tdisabled" in run_nexus(settings, "users", "list").stdout
    changed = run_nexus(
        settings, "users", "passwd", "pat", "--password-stdin", stdin="another-long-one\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert_one_line_error(run_nexus(settings, "users", "disable", "nobody"), "No user")


def test_personas_add_and_duplicate(settings: Settings) -> None:
    ok = run_nexus(
        settings,
        "personas",
        "add",
        "Poet",
        "--instruction",
        "Answer in verse.",
        "--avatar",
        "🪶",
        "--color",
        "#123456",
    )
    assert ok.returncode == 0, ok.stderr
    assert "🪶 Poet\tv1\tactive" in run_nexus(settings, "personas", "list").stdout
    assert_one_line_error(
        run_nexus(settings, "personas", "add", "Poet", "--instruction", "x"), "already exists"
    )


def test_bad_arguments_are_one_line(settings: Settings) -> None:
    result = run_nexus(settings, "users", "frobnicate")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_one_line_and_non_zero(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert_one_line_error(run_nexus(s, "users", "list"), "cannot use the database")


def chat_env(settings: Settings, gemini_base: str) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "AIza-cli-test-key-0000",
        "GEMINI_API_BASE": gemini_base,
        "NEXUS_RETRY_BASE_SECONDS": "0.01",
    }


def run_chat(settings: Settings, extra_env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "NEXUS_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "NEXUS_ENV": "test",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", "chat", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_chat_json_prints_the_reply_and_continues_a_session(
    settings: Settings, gemini_server
) -> None:  # type: ignore[no-untyped-def]
    assert run_nexus(settings, "init").returncode == 0
    env = chat_env(settings, gemini_server.base_url)
    gemini_server.enqueue(text="Bonjour!")
    first = run_chat(
        settings,
        env,
        "--user",
        "admin",
        "--persona",
        "Nexus Assistant",
        "--json",
        "Say hello in French",
    )
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout.strip().splitlines()[-1])
    assert answer["status"] == "ok" and answer["reply"] == "Bonjour!" and answer["error"] is None
    gemini_server.enqueue(text="Au revoir!")
    second = run_chat(
        settings,
        env,
        "--user",
        "admin",
        "--session",
        answer["session_id"],
        "--json",
        "And goodbye?",
    )
    follow_up = json.loads(second.stdout.strip().splitlines()[-1])
    assert follow_up["session_id"] == answer["session_id"] and follow_up["reply"] == "Au revoir!"
    sent = [c["parts"][0]["text"] for c in gemini_server.requests[-1].body["contents"]]
    assert sent == ["Say hello in French", "Bonjour!", "And goodbye?"]
    assert "AIza-cli-test-key-0000" not in first.stdout + first.stderr


def test_chat_failure_exits_non_zero_and_keeps_the_user_message(
    settings: Settings, gemini_server
) -> None:  # type: ignore[no-untyped-def]
    assert run_nexus(settings, "init").returncode == 0
    for _ in range(4):
        gemini_server.enqueue(status=503)
    result = run_chat(
        settings,
        chat_env(settings, gemini_server.base_url),
        "--user",
        "admin",
        "--persona",
        "Nexus Assistant",
        "--json",
        "Is anyone there?",
    )
    assert result.returncode == 1
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == "failed" and answer["reply"] is None
    assert "503" in answer["error"]
    assert len(gemini_server.requests) == 4
    from nexus_core.db.engine import Database
    from nexus_core.db.models import Message

    db = Database(settings.database_url)
    with db.session() as session:
        rows = [(m.role, m.content) for m in session.query(Message).order_by(Message.id)]
    db.dispose()
    assert rows[0] == ("user", "Is anyone there?") and rows[1][0] == "error"


def test_chat_without_json_prints_the_reply_or_one_error_line(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    ok = run_chat(
        settings,
        {"NEXUS_SIMULATED_LATENCY_SECONDS": "0"},
        "--user",
        "admin",
        "--persona",
        "Code Reviewer",
        "Review x = 1",
    )
    assert ok.returncode == 0 and ok.stdout.startswith("[Simulated reply — offline demo model]")
    missing = run_chat(settings, {}, "--user", "admin", "--persona", "Nobody", "hi")
    assert_one_line_error(missing, "No active persona")
    empty = run_chat(settings, {}, "--user", "admin", "--persona", "Code Reviewer", "  \x07 ")
    assert_one_line_error(empty, "empty")


def test_export_prints_json_and_markdown_and_is_audited(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    answered = run_chat(
        settings,
        {"NEXUS_SIMULATED_LATENCY_SECONDS": "0"},
        "--user",
        "admin",
        "--persona",
        "Technical Writer",
        "--json",
        "Draft release notes",
    )
    session_id = json.loads(answered.stdout.strip().splitlines()[-1])["session_id"]
    as_json = run_nexus(settings, "export", session_id, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["persona"]["name"] == "Technical Writer"
    as_md = run_nexus(settings, "export", session_id, "--format", "md")
    assert as_md.stdout.startswith("# Draft release notes")
    assert_one_line_error(run_nexus(settings, "export", "not-a-session"), "does not exist")
    from nexus_core import audit
    from nexus_core.db.engine import Database

    db = Database(settings.database_url)
    exported = [
        a for a in audit.for_target(db, "session", session_id) if a.action == "session.exported"
    ]
    db.dispose()
    assert [a.details["format"] for a in exported] == ["json", "md"]


def test_metrics_json_follows_the_contract_window(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from nexus_core.ops.events import ApiEventLogger

    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    moments = iter(
        [now - timedelta(minutes=90)]
        + [now - timedelta(minutes=m) for m in (50, 40, 30, 20, 10, 5)]
        + [now]
    )
    log = ApiEventLogger(settings.event_log_path, clock=lambda: next(moments))
    latencies = [900.0, 1200.0, 2500.0, 3100.0, 700.0]
    log.emit("job_success", job_id="old", latency_ms=99999.0, attempts=1)  # before the window
    for i, latency in enumerate(latencies):
        log.emit("job_success", job_id=f"j{i}", latency_ms=latency, attempts=1)
    log.emit(
        "request_failure",
        request_id="r",
        attempt=1,
        latency_ms=5.0,
        status_code=503,
        error_type="http_503",
        retryable=True,
    )
    log.emit("job_success", job_id="edge", latency_ms=50000.0, attempts=1)  # at now: excluded
    log.close()
    with settings.event_log_path.open("a") as fh:
        fh.write("{not json\n")
    result = run_nexus(
        settings, "metrics", "--window", "60m", "--now", "2026-11-27T12:00:00Z", "--json"
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    assert numbers["failures"] == 1 and numbers["skipped_lines"] == 1
    assert numbers["p95_latency_ms"] == pytest.approx(float(np.percentile(latencies, 95)))
    assert numbers["avg_latency_ms"] == pytest.approx(float(np.mean(latencies)))
    assert numbers["top_errors"] == [{"error_type": "http_503", "count": 1}]
    assert_one_line_error(run_nexus(settings, "metrics", "--window", "soon"), "not understood")
    text = run_nexus(settings, "metrics", "--window", "60m", "--now", "2026-11-27T12:00:00Z")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()  # rounded for people: percent, whole milliseconds
    assert lines[1] == "requests 0  failures 1  retries 0  success rate 0.00 %"
    assert lines[2] == "p95 response 2,980 ms  avg 1,680 ms  API p95 —  skipped lines 1"


def test_simulate_shows_progress_and_fills_the_metrics(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    result = run_nexus(
        settings,
        "simulate",
        "--users",
        "1",
        "--sessions",
        "2",
        "--days",
        "1",
        "--failure-rate",
        "0",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "2/2 sessions" in result.stderr and "Simulated 2 sessions" in result.stdout
    numbers = json.loads(run_nexus(settings, "metrics", "--window", "2d", "--json").stdout)
    assert numbers["requests"] >= 2 and numbers["failures"] == 0
    assert_one_line_error(run_nexus(settings, "simulate", "--sessions", "0"), "at least 1")


def test_sql_prints_a_table_csv_and_json_with_admin_visibility(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    query = "SELECT username, role, count(*) OVER () AS people FROM users ORDER BY id"
    table = run_nexus(settings, "sql", query)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[:3] == [
        "username | role  | people",
        "---------+-------+-------",
        "admin    | admin |      1",
    ]
    assert re.fullmatch(r"\(1 row, \d+ ms\)", lines[3]) and len(lines) == 4
    csv = run_nexus(settings, "sql", query, "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout == "username,role,people\nadmin,admin,1\n"
    rows = run_nexus(settings, "sql", query, "--format", "json")
    assert rows.returncode == 0, rows.stderr
    assert json.loads(rows.stdout) == [{"username": "admin", "role": "admin", "people": 1}]
    # An operator's tool: it sees what admins see, message content included (no rows yet).
    content = run_nexus(
        settings, "sql", "SELECT count(content) AS n FROM messages", "--format=json"
    )
    assert json.loads(content.stdout) == [{"n": 0}]


def test_sql_refuses_anything_but_one_select_in_one_line(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    assert_one_line_error(
        run_nexus(settings, "sql", "DELETE FROM users"),
        "Only one SELECT (or WITH … SELECT) statement per cell; this cell holds a DELETE statement",
    )
    assert_one_line_error(
        run_nexus(settings, "sql", "SELECT * FROM read_text('/etc/passwd')"), "off limits"
    )
    assert_one_line_error(
        run_nexus(settings, "sql", "SELECT username,\n  nope\nFROM users"),
        'Binder Error: Referenced column "nope" not found in FROM clause! (line 2, column 3)',
    )
    assert "admin" in run_nexus(settings, "users", "list").stdout


def test_sql_stops_a_runaway_query_at_the_time_limit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_SQL_TIMEOUT_SECONDS", "1")
    assert run_nexus(settings, "init").returncode == 0
    assert_one_line_error(
        run_nexus(settings, "sql", "SELECT count(*) FROM range(1000000000000)"),
        "The query ran longer than 1 s and was stopped.",
    )


def test_sql_shows_values_python_cannot_hold_and_ends_every_failure_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    query = "SELECT 'infinity'::TIMESTAMP AS t, '-infinity'::DATE AS d"
    for fmt in ("table", "csv", "json"):
        shown = run_nexus(settings, "sql", query, "--format", fmt)
        assert shown.returncode == 0 and shown.stderr == "", (fmt, shown.stderr)
        assert "infinity" in shown.stdout and "-infinity" in shown.stdout
    monkeypatch.setenv("NEXUS_SQL_MEMORY_LIMIT", "128MB")
    hostile = {
        "SELECT length(repeat('x', 2000000000))": "NEXUS_SQL_MEMORY_LIMIT",
        "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d": "The workbench only reads",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000: "Max expression depth",
        "SELECT chr(0) || 'x' AS zero, '\\xFF'::BLOB AS blob": "",
    }
    for attempt, text in hostile.items():
        result = run_nexus(settings, "sql", attempt, "--format", "json")
        if result.returncode == 0:  # DuckDB could answer it: then it printed JSON
            assert not text and json.loads(result.stdout)
            continue
        assert_one_line_error(result, text)
    assert "admin" in run_nexus(settings, "users", "list").stdout


# What `nexus --help` (or any command's help) has no use for: the database layer, the analytics
# engines and the providers; loading them made asking for help take half a second.
HEAVY_FOR_HELP = ("sqlalchemy", "duckdb", "polars", "httpx", "bcrypt", "nexus_core.db.models")


def test_nexus_help_loads_no_database_analytics_or_provider_modules(settings: Settings) -> None:
    probe = (
        "import sys\n"
        "from nexus_core.cli import main\n"
        "for argv in (['--help'], ['usage', '--help'], ['users', 'add', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY_FOR_HELP!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = run_python(settings, "-c", probe)

    assert result.returncode == 0, result.stderr
    assert "usage: nexus" in result.stdout
    assert "one of admin, analyst, member" in result.stdout
    assert result.stderr.strip() == "[]"
