"""A live Nexus AI server on a free port and a real Chromium driven by Playwright.

Each module gets one server around a fresh temporary data dir (SQLite, admin and a member made
with the `nexus` CLI); each test opens its own browser context, so cookies never leak between
tests. CI sets ``NEXUS_REQUIRE_BROWSER=1`` so a missing Chromium fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Response as PlaywrightResponse

from nexus_core.auth import SESSION_COOKIE
from nexus_core.web.session_cookie import SESSION_PATH

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SCRIPT = REPO_ROOT / "app.py"
CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER_ENV = "NEXUS_REQUIRE_BROWSER"
# Settings the developer's shell might carry that would point the server elsewhere.
SCRUBBED_ENV_PREFIXES = ("NEXUS_", "GEMINI_", "OPENAI_")
SCRUBBED_ENV_NAMES = ("DATABASE_URL", "REDIS_URL")
ADMIN_PASSWORD = "admin-password-1"
MEMBER = ("mia", "Mia", "member-password-1")
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0
LOG_TAIL_CHARS = 4000
PAGE_TEXT_CHARS = 2000
PAGE_TEXT_TIMEOUT_MS = 2000
# Streamlit reruns are asynchronous, and slow on a loaded 2-core machine.
UI_TIMEOUT_MS = 15_000
# A sidebar click that lands while the previous run is still finishing can be swallowed by it.
NAVIGATION_ATTEMPTS = 3
NAVIGATION_WAIT_MS = 5_000
REOPEN_AFTER_MS = 5_000
FILL_ATTEMPTS = 3  # a form redrawn empty is filled again at most this often
COOKIE_WAIT_MS = 45_000  # the cookie's hand-off frame can be slow to load on a busy machine
COOKIE_POLL_MS = 100
# The login cookie is HttpOnly (JavaScript cannot see it): tests read the browser context's
# cookie jar, and the sign-in helper waits for the request that sets it.
LOGIN_COOKIE = SESSION_COOKIE


@dataclass(frozen=True)
class LiveApp:
    """A running Streamlit server: where it listens, its data dir and the environment it runs in."""

    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def server_report(self) -> str:
        """Whether the server still runs, and the end of its output, for failure messages."""
        code = self.process.poll()
        status = "still running" if code is None else f"EXITED with code {code}"
        return f"server {status}; its output ends:\n{_tail(self.log_path)}"

    def nexus(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `nexus` CLI against this server's data dir; fails the test on a non-zero exit."""
        return run_nexus(self.env, *args, stdin=stdin)


class NewPage:
    """Opens pages, each in its own fresh browser context, so cookies never leak between them."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def __call__(self) -> Page:
        context = self.browser.new_context()
        context.set_default_timeout(UI_TIMEOUT_MS)
        self.contexts.append(context)
        return context.new_page()

    def report(self) -> str:
        """Where each open page is and what it shows, for failure messages."""
        lines = []
        for context in self.contexts:
            for page in context.pages:
                try:
                    text = page.locator("body").inner_text(timeout=PAGE_TEXT_TIMEOUT_MS)
                except PlaywrightError as exc:
                    text = f"(unreadable: {exc.message.splitlines()[0]})"
                lines.append(f"--- {page.url}\n{text[:PAGE_TEXT_CHARS]}")
        return "\n".join(lines) or "(no pages open)"

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as exc:
        return f"(no server output: {exc})"


def run_nexus(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nexus_core.cli ARGS`` in ``env``; fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`nexus {' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def _server_env(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(SCRUBBED_ENV_PREFIXES) and name not in SCRUBBED_ENV_NAMES
    }
    env.update(
        NEXUS_DATA_DIR=str(data_dir),
        NEXUS_ENV="test",
        NEXUS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"the Streamlit server exited with {process.returncode} before it was "
                    f"healthy; its output:\n{_tail(log_path)}"
                )
            try:
                if client.get(f"{url}/_stcore/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling a server that is still starting, not waiting for the UI
    pytest.fail(
        f"the Streamlit server was not healthy after {STARTUP_TIMEOUT_SECONDS:.0f} s; "
        f"its output:\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    """Attach what the pages show and the server's output to a failed browser test."""
    report: pytest.TestReport = yield
    if report.failed:
        fixtures = getattr(item, "funcargs", {})
        pages, app = fixtures.get("new_page"), fixtures.get("live_app")
        if isinstance(pages, NewPage):
            report.sections.append(("Browser pages", pages.report()))
        if isinstance(app, LiveApp):
            report.sections.append(("Streamlit server", app.server_report()))
    return report


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The system Chromium; CI must have it, a developer machine may skip."""
    found = CHROMIUM_PATH if CHROMIUM_PATH.is_file() else shutil.which("chromium")
    if found:
        return str(found)
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"Chromium is required in CI but {CHROMIUM_PATH} is missing")
    pytest.skip("no Chromium on this machine (apt-get install chromium); browser tests skipped")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[LiveApp]:
    """`streamlit run app.py` on a free port around a fresh data dir with an admin and `mia`."""
    root = tmp_path_factory.mktemp("live_app")
    data_dir = root / "data"
    env = _server_env(data_dir)
    run_nexus(env, "init")
    username, display_name, password = MEMBER
    add_member = ("users", "add", username, "--display-name", display_name, "--password-stdin")
    run_nexus(env, *add_member, stdin=f"{password}\n")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    # No file watcher: concurrent edits to the repo must not rerun the app mid-test.
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(process, url, log_path)
            yield LiveApp(url=url, data_dir=data_dir, env=env, log_path=log_path, process=process)
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """A headless Chromium per module; tests open their own ``browser.new_context()``.

    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in
    the main thread while it is open, and the tests outside ``tests/browser`` that call
    ``asyncio.run`` (the Starlette routes) would fail after the browser modules ran first.
    """
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """Opens pages, each in its own fresh browser context; closes them after the test."""
    opener = NewPage(browser)
    yield opener
    opener.close()


def sign_in(page: Page, url: str, username: str, password: str, *, lands_on: str = "Chat") -> None:
    """Sign in through the real form at ``url`` and wait until the app has settled on the page
    titled ``lands_on`` (Chat for the root; a link to a page lands on that page).

    The sign-in run can briefly show the stale heading beside the new one, and the login cookie
    arrives a moment later through its hand-off frame; this returns only after the server has set
    the cookie and the run ended.
    """
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    with page.expect_response(sets_login_cookie, timeout=COOKIE_WAIT_MS) as claimed:
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name=lands_on).first).to_be_visible()
    assert claimed.value.status == 204, f"the login cookie was refused: {claimed.value.status}"
    wait_until_idle(page)


def sets_login_cookie(response: PlaywrightResponse) -> bool:
    """Whether ``response`` answers the hand-off frame's claim of the login cookie."""
    return response.url.endswith(SESSION_PATH) and response.request.method == "POST"


def login_cookie(context: BrowserContext, name: str = LOGIN_COOKIE) -> dict[str, object] | None:
    """The login cookie (or cookie ``name``) in the browser's jar, which JavaScript cannot read for
    an HttpOnly cookie; None when there is none."""
    found = [c for c in context.cookies() if c["name"] == name]
    assert len(found) <= 1, found
    return dict(found[0]) if found else None


def wait_for_login_cookie(
    page: Page, *, present: bool = True, name: str = LOGIN_COOKIE
) -> dict[str, object] | None:
    """Wait until the login cookie (or cookie ``name``) is in the browser's jar or, with
    ``present=False``, gone from it; returns it when present."""
    deadline = time.monotonic() + COOKIE_WAIT_MS / 1000
    while True:
        cookie = login_cookie(page.context, name)
        if (cookie is not None) == present:
            return cookie
        if time.monotonic() > deadline:
            pytest.fail(f"cookie {name} was {'never set' if present else 'not cleared'}")
        page.wait_for_timeout(COOKIE_POLL_MS)  # polling the jar: no event tells a cookie changed


def open_from_sidebar(page: Page, title: str, heading: str) -> None:
    """Open the page named ``title`` from the sidebar menu and wait for its ``heading``.

    A click that arrives while the previous page's run is still finishing can be overtaken by
    that run, so the click is repeated (up to three times) until the address is the page's own.
    """
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title)
    target = re.compile(re.escape(link.get_attribute("href") or "") + r"(\?.*)?$")
    for attempt in range(NAVIGATION_ATTEMPTS):
        link.click()
        try:
            page.wait_for_url(target, timeout=NAVIGATION_WAIT_MS)
            break
        except PlaywrightError:
            if attempt == NAVIGATION_ATTEMPTS - 1:
                raise
    # ``first``: while the run finishes, the stale heading can still stand beside the new one.
    expect(page.get_by_role("heading", name=heading).first).to_be_visible()


def add_analyst_and_a_chat(live_app: LiveApp, analyst: tuple[str, str], message: str) -> None:
    """An analyst account, and one chat of the member's with the default persona to query."""
    username, password = analyst
    live_app.nexus(
        "users", "add", username, "--role", "analyst", "--password-stdin", stdin=password
    )
    live_app.nexus("chat", "--user", MEMBER[0], "--persona", "Nexus Assistant", message)


def analyst_on_workbench(
    live_app: LiveApp, new_page: NewPage, username: str, password: str
) -> Page:
    """A new analyst (with one member chat reply in the data) signed in on the Workbench."""
    add_analyst_and_a_chat(live_app, (username, password), "Hello there")
    page = new_page()
    sign_in(page, live_app.url, username, password)
    open_from_sidebar(page, "Workbench", "Workbench")
    return page


def wait_until_idle(page: Page) -> None:
    """Wait until the app's current run has finished: Streamlit's own script state (on the app's
    root element) is "notRunning" and no "Running…" widget stands.

    Typing into a widget that the still-running script is about to draw again can lose the
    text; a person is slower than that, a test must wait. The "Running…" widget alone is not
    enough: Streamlit shows it only 500 ms into a run, so a short wait after something the run
    drew could pass while the run went on. Callers wait first for what the run they started
    draws, then for this.
    """
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def open_expander(page: Page, label: str, button: str, *, within: Locator | None = None) -> None:
    """Open a lazy expander (inside ``within``, if given): its content, ending in ``button``, is
    built by the run that opening it starts."""
    scope = within or page
    scope.locator("summary", has_text=label).click()
    expect(scope.get_by_role("button", name=button)).to_be_visible()
    wait_until_idle(page)


def fill_form(page: Page, fill: Callable[[], None], filled: Callable[[], bool]) -> None:
    """Fill a form with ``fill`` until, with the app idle, ``filled`` says its fields still show
    what was entered (at most three times).

    Under load the budget form lost its picked name before its submit (one CI run; not
    reproduced since: a form typed into while the run that drew it goes on, or rerun from outside
    it, kept its values). A person sees the empty field and fills it again; a test checks what the
    form shows before it submits.
    """
    for _ in range(FILL_ATTEMPTS):
        fill()
        wait_until_idle(page)
        if filled():
            return
    pytest.fail(f"the form's fields were redrawn empty {FILL_ATTEMPTS} times")


def pick(
    page: Page, label: str, option: str | re.Pattern[str], *, within: Locator | None = None
) -> None:
    """Choose ``option`` in the select box labelled ``label`` (inside ``within``, if given).

    A rerun that lands while the list is open redraws the box and closes the list, so a list
    that closed before the choice is opened again once.
    """
    scope = within if within is not None else page
    choice = page.get_by_role("option", name=option, exact=isinstance(option, str))
    for attempt in range(2):
        scope.get_by_label(label, exact=True).click()
        try:
            choice.click(timeout=REOPEN_AFTER_MS if attempt == 0 else None)
            return
        except PlaywrightError:
            page.keyboard.press("Escape")


def open_until_visible(page: Page, opener: Locator, target: Locator) -> None:
    """Click ``opener`` until ``target`` shows (at most three clicks).

    On a loaded machine a click that lands while the sign-in run (or the login cookie's
    component) is still finishing can be overtaken by that run; a person would click again.
    """
    for attempt in range(NAVIGATION_ATTEMPTS):
        wait_until_idle(page)
        opener.click()
        try:
            expect(target).to_be_visible(timeout=NAVIGATION_WAIT_MS)
            return
        except AssertionError:
            if attempt == NAVIGATION_ATTEMPTS - 1:
                raise
