"""How long each page takes to be fully rendered in Chromium, with 2 M events in the log.

Run: ``python benchmarks/bench_pages.py [--events N] [--repeats N]``.
Builds a data directory as a busy deployment would have it: ``nexus simulate`` (a week of demo
users, sessions, replies, feedback, votes and a test-set run, through the real services) and about
``--events`` generated events over 30 days ending now, compacted once (as ``nexus usage`` leaves
them). Then it starts the real app (``streamlit run app.py``) and drives Debian's Chromium:

- sign-in: from pressing "Sign in" until the Chat page has finished its run;
- each page, opened from the sidebar as a person does: from the click until the page's own
  heading stands, its run has ended (Streamlit's "Running…" widget gone) and nothing on the page
  is stale — the moment a reader sees the finished page.

Each page is opened ``--repeats`` times (Chat between visits); prints the machine, the load
average and a markdown table of medians and maximums.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_metrics  # noqa: E402
from bench_usage import add_costs  # noqa: E402

from nexus_core.ui.nav import PAGES  # noqa: E402
from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH, sets_login_cookie  # noqa: E402

REPEATS = 5
ADMIN_PASSWORD = "bench-admin-password-1"
START_TIMEOUT_S = 90
WAIT_MS = 60_000
# The finished page: its address, its own heading, no run going and nothing left stale.
RENDERED_JS = """([path, title]) => {
  const here = location.pathname.replace(/\\/$/, '') === path;
  const heading = [...document.querySelectorAll('[data-testid="stMain"] h1, h2, h3')]
    .some(h => h.textContent.includes(title));
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const stale = document.querySelector('[data-stale="true"]');
  const waiting = document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]');
  return here && heading && !running && !stale && !waiting;
}"""


def nexus(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", *args],
        env=env,
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def build_data(data: Path, events: int, env: dict[str, str]) -> None:
    """A simulated week in the database and ``events`` generated events ending now, compacted."""
    nexus(env, "init")
    bench_metrics.NOW = datetime.now(UTC).replace(microsecond=0)
    log = bench_metrics.generate(data / "logs", events, events / bench_metrics.HISTORY.days)
    add_costs(log)
    nexus(env, "simulate")
    nexus(env, "usage", "--window", "30d", "--json")  # compacts the rotated files once


def start_app(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the app did not start")


def rendered(page: Page, path: str, title: str) -> None:
    page.wait_for_function(RENDERED_JS, arg=[path, title], polling="raf", timeout=WAIT_MS)


def time_sign_in(page: Page, url: str) -> float:
    page.goto(url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    with page.expect_response(sets_login_cookie, timeout=WAIT_MS):
        started = time.perf_counter()
        page.get_by_role("button", name="Sign in").click()
        rendered(page, "", "Chat")
        elapsed = time.perf_counter() - started
    return elapsed


def time_page(page: Page, key: str, title: str) -> float:
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=re.compile(title))
    path = "" if key == "chat" else f"/{key}"
    started = time.perf_counter()
    link.first.click()
    rendered(page, path, title)
    return time.perf_counter() - started


def time_open(page: Page, url: str, key: str, title: str) -> float:
    """Open the page's own address in the signed-in tab (a bookmark, a shared link)."""
    path = "" if key == "chat" else f"/{key}"
    started = time.perf_counter()
    page.goto(url + path)
    rendered(page, path, title)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=bench_metrics.EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "GEMINI_"))}
        env.pop("DATABASE_URL", None)
        env |= {"NEXUS_DATA_DIR": str(data), "NEXUS_ADMIN_PASSWORD": ADMIN_PASSWORD}
        env |= {"STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        build_data(data, args.events, env)
        port = 8700 + os.getpid() % 200
        server = start_app(env, port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
                )
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                url = f"http://127.0.0.1:{port}"
                sign_ins = [time_sign_in(page, url)]
                times: dict[str, list[float]] = {spec.title: [] for spec in PAGES}
                opens: dict[str, list[float]] = {spec.title: [] for spec in PAGES}
                for _ in range(args.repeats):
                    for spec in PAGES[1:]:  # each page, then back to Chat (the first page)
                        times[spec.title].append(time_page(page, spec.key, spec.title))
                        times["Chat"].append(time_page(page, "chat", "Chat"))
                    for spec in PAGES:
                        opens[spec.title].append(time_open(page, url, spec.key, spec.title))
                for _ in range(args.repeats - 1):
                    page.context.clear_cookies()
                    sign_ins.append(time_sign_in(page, url))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the end: {os.getloadavg()[0]:.1f}"
    )
    print(f"events: ~{args.events:,} over 30 days ending now, plus `nexus simulate`")
    print(
        "| page | from the sidebar: median | max | opened at its address: median | max |\n"
        "|---|---:|---:|---:|---:|"
    )
    print(
        f"| sign-in (press → Chat finished) | {statistics.median(sign_ins):.2f} s "
        f"| {max(sign_ins):.2f} s | — | — |"
    )
    for title, values in times.items():
        print(
            f"| {title} | {statistics.median(values):.2f} s | {max(values):.2f} s "
            f"| {statistics.median(opens[title]):.2f} s | {max(opens[title]):.2f} s |"
        )


if __name__ == "__main__":
    main()
