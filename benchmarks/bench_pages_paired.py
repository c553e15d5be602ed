"""Two checkouts of the app side by side: pages opened at their address, alternating between them.

Run: ``python benchmarks/bench_pages_paired.py BEFORE_DIR --data DIR [--pages compare,workbench]
[--rounds N]``. BEFORE_DIR is another checkout of the app (e.g. ``git worktree add`` or ``git
archive`` of the earlier commit); this checkout is "after". Both servers run at once over the same
data directory (built by ``bench_pages.py --data DIR`` first), one Chromium holds a signed-in tab on
each, and every round opens each page on one server and then the other (the order alternates by
round). Opens a few hundred milliseconds apart see the same load, so the difference survives a
loaded machine better than separate runs do. "Opened" means what ``bench_pages.py`` waits for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_pages  # noqa: E402

from nexus_core.ui.nav import PAGES  # noqa: E402
from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH  # noqa: E402

ROUNDS = 20
SIDES = ("before", "after")


def start(root: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    """The app of checkout ``root`` on ``port``, over ``data``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "GEMINI_"))}
    env.pop("DATABASE_URL", None)
    env |= {"NEXUS_DATA_DIR": str(data), "NEXUS_ADMIN_PASSWORD": bench_pages.ADMIN_PASSWORD}
    env |= {"STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONPATH": str(root)}
    return bench_pages.start_app(env, port, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other checkout (the earlier code)")
    parser.add_argument("--data", type=Path, required=True, help="a data directory to reuse")
    parser.add_argument("--pages", default="compare,workbench")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    specs = [spec for spec in PAGES if spec.key in args.pages.split(",")]
    roots = {"before": args.before.resolve(), "after": ROOT}
    port = 8500 + os.getpid() % 200
    servers = {
        side: start(roots[side], args.data.resolve(), port + i) for i, side in enumerate(SIDES)
    }
    times: dict[tuple[str, str], list[float]] = {}
    marks: dict[tuple[str, str], dict[str, list[float]]] = {}
    loads = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
            )
            tabs = {}
            for i, side in enumerate(SIDES):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(bench_pages.MILESTONES_JS)
                tabs[side] = (context.new_page(), f"http://127.0.0.1:{port + i}")
                bench_pages.time_sign_in(*tabs[side])
            for number in range(args.rounds):
                for spec in specs:
                    for side in SIDES if number % 2 == 0 else SIDES[::-1]:
                        page, url = tabs[side]
                        found = marks.setdefault((side, spec.title), {})
                        opened = bench_pages.time_open(page, url, spec.key, spec.title, found)
                        times.setdefault((side, spec.title), []).append(opened)
                loads.append(os.getloadavg()[0])
            browser.close()
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
    print(
        f"{args.rounds} rounds; load average (1 min) over the rounds: min {min(loads):.1f}, "
        f"median {statistics.median(loads):.1f}, max {max(loads):.1f}"
    )
    print("| page | side | median | min | max | heading | run ended | finished |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for spec in specs:
        for side in SIDES:
            values, found = times[(side, spec.title)], marks[(side, spec.title)]
            milestones = " | ".join(
                f"{statistics.median(found[name]):.2f}" if found.get(name) else "—"
                for name in ("heading", "run", "done")
            )
            print(
                f"| {spec.title} | {side} | {statistics.median(values):.2f} s | "
                f"{min(values):.2f} | {max(values):.2f} | {milestones} |"
            )


if __name__ == "__main__":
    main()
