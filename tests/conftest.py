"""Shared fixtures: every database test runs on a SQLite file and, when NEXUS_TEST_DATABASE_URL is
set (CI sets it), on PostgreSQL; each test gets its own freshly migrated database."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from nexus_core.app_context import AppContext
from nexus_core.db.engine import Database
from nexus_core.db.migrate import upgrade_to_head
from nexus_core.settings import Settings

pytest_plugins = ["tests.fakes.fixtures"]

PG_ENV = "NEXUS_TEST_DATABASE_URL"
PG_SKIP_REASON = f"{PG_ENV} is not set; PostgreSQL runs are skipped (CI sets it)"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("template") / "nexus.db"
    db = Database(f"sqlite:///{path}")
    upgrade_to_head(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A migrated PostgreSQL database that each test clones with CREATE DATABASE ... TEMPLATE."""
    admin_url = _pg_admin_url()
    if admin_url is None:
        yield None
        return
    name = f"nexus_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade_to_head(db.engine)
    db.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_template: str | None
) -> Iterator[str]:
    """The URL of a fresh, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "nexus.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    admin_url = _pg_admin_url()
    if admin_url is None or pg_template is None:
        pytest.skip(PG_SKIP_REASON)
    with fresh_pg_database(admin_url, "nexus_t_", template=pg_template) as url:
        yield url


@contextmanager
def fresh_pg_database(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """The URL of a new PostgreSQL database (a copy of ``template`` if given), dropped after."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Test settings around a temporary data dir and a fresh database."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        env="test",
        ai_provider="simulated",
        retry_base_seconds=0.01,
        simulated_latency_seconds=0.0,
    )


@pytest.fixture
def read_only_url() -> Callable[[Database], str]:
    """Turns a test database read-only (reads work, writes fail) and gives the URL to reach it:
    a SQLite file opened ``mode=ro``, a PostgreSQL database with read-only transactions."""

    def make(db: Database) -> str:
        url = db.engine.url
        if db.dialect == "sqlite":
            return f"sqlite:///file:{url.database}?mode=ro&uri=true"
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(
                f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on'
            )
        return url.render_as_string(hide_password=False)

    return make


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test database."""
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def app_env(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """``ctx`` as the app under test (AppTest) sees it: through the environment, fresh cache.

    Fast settings for page tests: no simulated typing delay, tiny retry waits, no Gemini key.
    """
    monkeypatch.setenv("NEXUS_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("NEXUS_ENV", "test")
    monkeypatch.setenv("NEXUS_SIMULATED_LATENCY_SECONDS", "0")
    monkeypatch.setenv("NEXUS_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    st.cache_resource.clear()
    yield ctx
    st.cache_resource.clear()


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    """An AppContext on the test database."""
    context = AppContext(settings)
    yield context
    context.close()


BROWSER_SKIP_MARK = "no Chromium on this machine"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With ``NEXUS_FAILURE_LOG`` set, append each failure's report to that file as it happens:
    a long run interrupted (or one of two runs side by side) keeps what failed and why."""
    target = os.environ.get("NEXUS_FAILURE_LOG")
    if target and report.failed:
        with open(target, "a", encoding="utf-8") as log:
            log.write(f"\n===== {report.nodeid} ({report.when}) =====\n{report.longreprtext}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say at the end of every run which halves of the suite ran: a green run that skipped the
    PostgreSQL or browser half is not the whole suite."""
    stats = terminalreporter.stats
    skipped = stats.get("skipped", [])
    ran = [r for key in ("passed", "failed") for r in stats.get(key, []) if r.when == "call"]

    def half(name: str, skip_mark: str, ran_when: Callable[[str], bool], how: str) -> str:
        missed = sum(1 for report in skipped if skip_mark in str(report.longrepr))
        done = sum(1 for report in ran if ran_when(report.nodeid))
        if missed:
            return f"{name}: {done} ran, {missed} SKIPPED ({how})"
        return f"{name}: {done} ran" if done else f"{name}: none selected"

    terminalreporter.section("Nexus suite summary")
    terminalreporter.write_line(
        f"{len(stats.get('passed', []))} passed, {len(stats.get('failed', []))} failed, "
        f"{len(skipped)} skipped"
    )
    terminalreporter.write_line(
        half("PostgreSQL runs", PG_ENV, lambda node: "[postgresql" in node, f"set {PG_ENV}")
    )
    terminalreporter.write_line(
        half(
            "browser journeys",
            BROWSER_SKIP_MARK,
            lambda node: node.startswith("tests/browser/"),
            "apt-get install chromium fonts-noto-color-emoji",
        )
    )
