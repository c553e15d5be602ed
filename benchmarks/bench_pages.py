"""How long each page takes to be fully rendered in Chromium, with 2 M events in the log.

Run: ``python benchmarks/bench_pages.py [--events N] [--repeats N]``.
Builds a data directory as a busy deployment would have it: ``nexus simulate`` (a week of demo
users, sessions, replies, feedback, votes and a test-set run, through the real services) and about
``--events`` generated events over 30 days ending now, compacted once (as ``nexus usage`` leaves
them). Then it starts the real app (``streamlit run app.py``) and drives Debian's Chromium:

- sign-in: from pressing "Sign in" until the Chat page has finished its run;
- each page, opened from the sidebar as a person does: from the click until the page's own
  heading stands, its run has ended (the app's script state, not the "Running…" widget, which
  only shows after a delay), nothing on the page is stale or still loading, and every chart in
  sight is drawn — the moment a reader sees the finished page.

Each page is opened ``--repeats`` times (Chat between visits); prints the machine, the load
average and a markdown table of medians and maximums. ``--pages usage,dashboard`` measures only
those pages (and sign-in); ``--opens-only`` skips the sidebar visits; ``--data DIR`` builds the
data directory there once and reuses it on later runs (e.g. to compare two checkouts of the app
in interleaved rounds on the same data; its events keep the time they were generated at). A
direct open is also split into milestones (medians, from entering the address): the HTML's
scripts run (DOMContentLoaded), the page's heading stands (the server's run has reached the
browser), the run has ended, the Plotly chunk has arrived, the first chart is drawn, and finished.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_metrics  # noqa: E402
from bench_usage import add_costs  # noqa: E402

from nexus_core.ui.nav import PAGES, PageSpec  # noqa: E402
from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH, sets_login_cookie  # noqa: E402

REPEATS = 5
ADMIN_PASSWORD = "bench-admin-password-1"
START_TIMEOUT_S = 90
WAIT_MS = 60_000
# The finished page: its address, its own heading, its run ended (Streamlit's script state, not
# the "Running…" widget, which only shows after a delay), nothing stale or still loading, and
# every chart in sight drawn (a chart's code loads after the run has ended).
RENDERED_JS = """([path, title]) => {
  const here = location.pathname.replace(/\\/$/, '') === path;
  const heading = [...document.querySelectorAll('[data-testid="stMain"] h1, h2, h3')]
    .some(h => h.textContent.includes(title));
  const app = document.querySelector('[data-testid="stApp"]');
  const ended = app && app.dataset.testScriptState === 'notRunning';
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const stale = document.querySelector('[data-stale="true"]');
  const waiting = document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]');
  const undrawn = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .some(c => c.checkVisibility() && !c.querySelector('.main-svg'));
  return here && heading && ended && !running && !stale && !waiting && !undrawn;
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


def start_app(env: dict[str, str], port: int, root: Path = ROOT) -> subprocess.Popen[bytes]:
    """The app of the checkout at ``root`` on ``port``, once its health check answers."""
    command = [sys.executable, "-m", "streamlit", "run", str(root / "app.py")]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the app of {root} did not start")


# Installed in every document before its own scripts: notes when the heading first appears, when
# the run first ends and when the first chart is drawn (performance.now(), milliseconds from the
# start of the navigation).
MILESTONES_JS = """(() => {
  const marks = (window.__benchMarks = {});
  const poll = () => {
    if (!marks.heading && document.querySelector('[data-testid="stMain"] h1')) {
      marks.heading = performance.now();
    }
    const app = document.querySelector('[data-testid="stApp"]');
    if (marks.heading && !marks.run && app && app.dataset.testScriptState === 'notRunning') {
      marks.run = performance.now();
    }
    if (!marks.chart && document.querySelector('.js-plotly-plot .main-svg')) {
      marks.chart = performance.now();
    }
    requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})()"""
READ_MILESTONES_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const plotly = performance.getEntriesByType('resource')
    .find(r => r.name.includes('/PlotlyChart.'));
  return {
    scripts: nav ? nav.domContentLoadedEventEnd : null,
    heading: window.__benchMarks.heading ?? null,
    run: window.__benchMarks.run ?? null,
    plotly: plotly ? plotly.responseEnd : null,
    chart: window.__benchMarks.chart ?? null,
    done: performance.now(),
  };
}"""
MILESTONES = ("scripts", "heading", "run", "plotly", "chart", "done")


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


def time_open(page: Page, url: str, key: str, title: str, marks: dict[str, list[float]]) -> float:
    """Open the page's own address in the signed-in tab (a bookmark, a shared link); add its
    milestones (seconds) to ``marks``."""
    path = "" if key == "chat" else f"/{key}"
    started = time.perf_counter()
    page.goto(url + path)
    rendered(page, path, title)
    elapsed = time.perf_counter() - started
    for name, value in page.evaluate(READ_MILESTONES_JS).items():
        if value is not None:
            marks.setdefault(name, []).append(value / 1000)
    return elapsed


def _median(values: list[float] | None) -> str:
    return f"{statistics.median(values):.2f}" if values else "—"


@dataclass
class Results:
    """What one run measured, in seconds, by page title."""

    sign_ins: list[float] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)
    opens: dict[str, list[float]] = field(default_factory=dict)
    marks: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def measure(page: Page, url: str, specs: list[PageSpec], repeats: int, *, sidebar: bool) -> Results:
    """Sign in, visit ``specs`` from the sidebar (``sidebar``) and open each at its address,
    ``repeats`` times; then sign in again ``repeats - 1`` times."""
    results = Results(sign_ins=[time_sign_in(page, url)])
    for spec in specs:
        results.times[spec.title], results.opens[spec.title] = [], []
        results.marks[spec.title] = {}
    for _ in range(repeats):
        for spec in specs if sidebar else []:
            if spec.key == "chat":
                continue
            # each page, then back to Chat (the first page)
            results.times[spec.title].append(time_page(page, spec.key, spec.title))
            back = time_page(page, "chat", "Chat")
            if "Chat" in results.times:
                results.times["Chat"].append(back)
        for spec in specs:
            opened = time_open(page, url, spec.key, spec.title, results.marks[spec.title])
            results.opens[spec.title].append(opened)
    for _ in range(repeats - 1):
        page.context.clear_cookies()
        results.sign_ins.append(time_sign_in(page, url))
    return results


def report(results: Results, events: int) -> None:
    """The machine, the load and the tables of medians and maximums."""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the end: {os.getloadavg()[0]:.1f}"
    )
    print(f"events: ~{events:,} over 30 days ending now, plus `nexus simulate`")
    print(
        "| page | from the sidebar: median | max | opened at its address: median | max |\n"
        "|---|---:|---:|---:|---:|"
    )
    sign_ins = results.sign_ins
    print(
        f"| sign-in (press → Chat finished) | {statistics.median(sign_ins):.2f} s "
        f"| {max(sign_ins):.2f} s | — | — |"
    )
    for title, values in results.times.items():
        opens = results.opens[title]
        sidebar = f"{statistics.median(values):.2f} s | {max(values):.2f} s" if values else "— | —"
        print(f"| {title} | {sidebar} | {statistics.median(opens):.2f} s | {max(opens):.2f} s |")
    print("\nOpened at its address, milestones (median s from entering the address):")
    print("| page | " + " | ".join(MILESTONES) + " |\n|---|" + "---:|" * len(MILESTONES))
    for title, marks in results.marks.items():
        print(f"| {title} | " + " | ".join(_median(marks.get(m)) for m in MILESTONES) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=bench_metrics.EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--pages", help="comma-separated page keys (default: every page)")
    parser.add_argument("--opens-only", action="store_true", help="no visits from the sidebar")
    parser.add_argument(
        "--data",
        type=Path,
        help="a data directory to keep: built if it does not exist, else reused",
    )
    args = parser.parse_args()
    wanted = set(args.pages.split(",")) if args.pages else {spec.key for spec in PAGES}
    specs = [spec for spec in PAGES if spec.key in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data.resolve() if args.data else Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "GEMINI_"))}
        env.pop("DATABASE_URL", None)
        env |= {"NEXUS_DATA_DIR": str(data), "NEXUS_ADMIN_PASSWORD": ADMIN_PASSWORD}
        env |= {"STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        if not data.exists():
            build_data(data, args.events, env)
        port = 8700 + os.getpid() % 200
        server = start_app(env, port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
                )
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(MILESTONES_JS)
                url = f"http://127.0.0.1:{port}"
                results = measure(
                    context.new_page(), url, specs, args.repeats, sidebar=not args.opens_only
                )
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(results, args.events)


if __name__ == "__main__":
    main()
