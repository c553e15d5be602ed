"""How many people one Nexus process serves: N signed-in users chatting at once, in real browsers.

Run: ``python benchmarks/bench_capacity.py [--users 1,5,10,20] [--latency 0.05]``.
Starts the real app (``streamlit run app.py``, the default thread backend, SQLite) with the
simulated model at ``--latency`` seconds a word (0.05 s: about 20 words a second, like a fast
hosted model), on loopback only. For each N it opens N browser contexts in one headless Chromium
— each a different member, signed in through the form with the real login cookie, on their own
chat session — and has them all send a message at the same moment. Per N it reports, over the N
replies: the time from pressing Enter to the first words of the reply on screen and to the stored
reply (its thumbs showing), median and p95; replies lost or failed (each user's session must hold
exactly one reply); the server's CPU seconds and peak RSS while they chatted; and the RSS each
open session adds.

Why real browsers rather than Streamlit's websocket protocol: the protocol is internal and changes
between releases, and what matters is what a person sees — the reply arriving on their screen —
which only a browser renders. One Chromium with N contexts keeps the client's own cost down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.async_api import Page, async_playwright
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pages import start_app  # noqa: E402

from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH, sets_login_cookie  # noqa: E402

PASSWORD = "bench-member-password-1"
ADMIN_PASSWORD = "bench-admin-password-1"
PERSONA = "Nexus Assistant"
MESSAGE = "Summarise what a service level objective is, in a short paragraph."
BUBBLE = '[data-testid="stChatMessage"]'
WAIT_MS = 180_000
SAMPLE_SECONDS = 0.2
# The new reply bubble (two after those already there: the message, then the reply) has words
# in it; once stored, it has its thumbs.
FIRST_WORDS_JS = f"""(before) => {{
  const bubbles = document.querySelectorAll('{BUBBLE}');
  return bubbles.length >= before + 2 && bubbles[before + 1].innerText.trim().length > 0;
}}"""
STORED_JS = f"""(before) => {{
  const bubbles = document.querySelectorAll('{BUBBLE}');
  return bubbles.length >= before + 2
    && !!bubbles[before + 1].querySelector('[aria-label="Thumbs down"]');
}}"""


def nexus(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


class ServerWatch:
    """CPU seconds and peak RSS of the server process, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_kib = max(self.peak_kib, self.rss_kib())

    def __enter__(self) -> ServerWatch:
        self.peak_kib = self.rss_kib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def signed_in_on_chat(browser, url: str, username: str, session_id: str) -> Page:  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    # 20 pages loading at once on a busy machine can take longer than Playwright's 30 s default.
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    await page.goto(url)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    async with page.expect_response(sets_login_cookie, timeout=WAIT_MS):
        await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Chat").first.wait_for(timeout=WAIT_MS)
    await page.goto(f"{url}/?session={session_id}")
    await page.get_by_placeholder("Message").wait_for(timeout=WAIT_MS)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=WAIT_MS
    )
    return page


async def chat_once(page: Page, start: asyncio.Event) -> tuple[float, float]:
    await page.get_by_placeholder("Message").fill(MESSAGE)
    before = await page.locator(BUBBLE).count()
    await start.wait()
    sent = time.perf_counter()
    await page.keyboard.press("Enter")
    await page.wait_for_function(FIRST_WORDS_JS, arg=before, polling="raf", timeout=WAIT_MS)
    first = time.perf_counter() - sent
    await page.wait_for_function(STORED_JS, arg=before, polling=100, timeout=WAIT_MS)
    return first, time.perf_counter() - sent


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def replies_per_session(database: Path, sessions: list[str]) -> list[int]:
    engine = create_engine(f"sqlite:///{database}")
    query = text(
        "SELECT count(m.id) FROM chat_sessions s LEFT JOIN messages m "
        "ON m.session_id = s.id AND m.role = 'assistant' WHERE s.public_id = :id"
    )
    try:
        with engine.connect() as conn:
            return [conn.execute(query, {"id": s}).scalar_one() for s in sessions]
    finally:
        engine.dispose()


async def measure(url: str, env: dict[str, str], watch: ServerWatch, n: int, round_: int) -> dict:  # type: ignore[type-arg]
    users = [f"cap-{round_}-{i}" for i in range(n)]
    sessions = []
    for user in users:
        nexus(env, "users", "add", user, "--password-stdin", stdin=PASSWORD + "\n")
        created = nexus(env, "chat", "--user", user, "--persona", PERSONA, "--json", "Hello")
        sessions.append(json.loads(created.strip().splitlines()[-1])["session_id"])
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
        )
        idle_kib = watch.rss_kib()
        pages = await asyncio.gather(
            *(signed_in_on_chat(browser, url, u, s) for u, s in zip(users, sessions, strict=True))
        )
        open_kib = watch.rss_kib()
        start = asyncio.Event()
        cpu_before, watch.peak_kib = watch.cpu_seconds(), open_kib
        started = time.perf_counter()
        runs = [asyncio.create_task(chat_once(p, start)) for p in pages]
        await asyncio.sleep(0.5)  # every page has its message typed before anyone sends
        start.set()
        results = await asyncio.gather(*runs, return_exceptions=True)
        wall = time.perf_counter() - started
        cpu = watch.cpu_seconds() - cpu_before
        await browser.close()
    done = [r for r in results if isinstance(r, tuple)]
    stored = replies_per_session(Path(env["NEXUS_DATA_DIR"]) / "nexus.db", sessions)
    return {
        "n": n,
        "first": [f for f, _ in done],
        "finished": [d for _, d in done],
        "timeouts": len(results) - len(done),
        "lost": sum(1 for count in stored if count != 2),  # the "Hello" reply and this one
        "cpu": cpu,
        "cpu_share": cpu / wall,
        "peak_mib": watch.peak_kib / 1024,
        "per_session_mib": (open_kib - idle_kib) / 1024 / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1,5,10,20", help="comma-separated N to measure")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per simulated word")
    args = parser.parse_args()
    sizes = [int(n) for n in args.users.split(",")]
    if max(sizes) > 50:
        raise SystemExit("at most 50 users: this is a loopback benchmark, not a load test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "GEMINI_"))}
        env.pop("DATABASE_URL", None)
        env |= {
            "NEXUS_DATA_DIR": str(Path(tmp) / "data"),
            "NEXUS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NEXUS_SIMULATED_LATENCY_SECONDS": str(args.latency),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        nexus(env, "init")
        port = 8900 + os.getpid() % 90
        server = start_app(env, port)
        try:
            with ServerWatch(server.pid) as watch:
                # A first user loads what every later session shares (imports, the context).
                asyncio.run(measure(f"http://127.0.0.1:{port}", env, watch, 1, len(sizes)))
                for round_, n in enumerate(sizes):
                    rows.append(
                        asyncio.run(measure(f"http://127.0.0.1:{port}", env, watch, n, round_))
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the end: {os.getloadavg()[0]:.1f}; "
        f"simulated model {args.latency} s a word"
    )
    print(
        "| users | first words median / p95 | reply stored median / p95 | lost or failed "
        "| server CPU (share of a core) | peak RSS | RSS per open session |"
    )
    print("|---:|---|---|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']} | {statistics.median(r['first']):.2f} / {p95(r['first']):.2f} s "
            f"| {statistics.median(r['finished']):.2f} / {p95(r['finished']):.2f} s "
            f"| {r['lost'] + r['timeouts']} | {r['cpu']:.1f} s ({r['cpu_share']:.0%}) "
            f"| {r['peak_mib']:.0f} MiB | {r['per_session_mib']:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
