"""Hostile Markdown in every field people can write (and in a provider's error), opened on every
page that shows it in a real Chromium: nothing may reach an outside host and no live link to it
may be drawn. The same live server proves the Content-Security-Policy lets Streamlit's own assets
through (pages, charts, the login cookie's component frame) while a harness page shows it
refusing an image that slipped past the renderer.

One live server and one browser context per role (an admin, and an analyst who wrote most of the
hostile text). A loopback "leak" server stands in for the attacker's host.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from nexus_core.app_context import AppContext
from nexus_core.compare.checks import parse_test_set
from nexus_core.compare.variants import VariantSpec
from nexus_core.compare.votes import Rating
from nexus_core.feedback.triage import TriageService
from nexus_core.settings import Settings
from nexus_core.workbench.cells import Cell
from nexus_core.workbench.notebooks import NotebookService
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    APP_SCRIPT,
    CLI_TIMEOUT_SECONDS,
    REPO_ROOT,
    UI_TIMEOUT_MS,
    LiveApp,
    _free_port,
    _server_env,
    _stop,
    _wait_until_healthy,
    pick,
    run_nexus,
    sign_in,
    wait_until_idle,
)
from tests.browser.leak_server import (
    ALLOWED_HOST,
    ALLOWED_IMAGE_PATH,
    LEAK_HOST,
    RecordingServer,
    recording_server,
)
from tests.fakes.gemini_server import FakeGeminiServer

pytestmark = pytest.mark.browser

WRITER = ("eve", "eve-password-1")
CSP_HARNESS = Path(__file__).with_name("csp_harness.py")
# Time for lazy loads (images, chart frames) after a page shows what it was opened for.
LATE_LOAD_WAIT_MS = 1_500
COMPARE_WAIT_SECONDS = 60.0
LIVE_LINKS_JS = """leak => [...document.querySelectorAll('a')]
    .map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || '')
    .filter(href => href.includes(leak))"""
LEAK_IMAGES_JS = """leak => [...document.querySelectorAll('img, image')]
    .map(i => i.getAttribute('src') || i.getAttribute('href') || '')
    .filter(src => src.includes(leak))"""


def hostile(leak: str, mark: str, *, short: bool = False) -> str:
    """Markdown (and Plotly HTML) that loads from or links to ``leak`` if shown as markup.

    ``mark`` is visible in every form, so a test can wait for the field to be on screen.
    """
    head = f"{mark} ![i](http://{leak}/{mark}-img) <http://{leak}/{mark}-auto>"
    if short:
        return head
    return (
        f"{head} [l](http://{leak}/{mark}-link) http://{leak}/{mark}-bare www.{mark}.example "
        f"![r][{mark}] <img src=http://{leak}/{mark}-html> "
        f"<a href='http://{leak}/{mark}-plotly'>p</a> :red[{mark}]\n\n"
        f"[{mark}]: http://{leak}/{mark}-ref"
    )


@dataclass
class Seeded:
    """Where the hostile text lives: ids to open, and the marks of plain-text fields."""

    session_id: str = ""
    error_session_id: str = ""
    feedback_id: int = 0
    notebook_id: int = 0
    run_id: str = ""
    persona: str = ""
    test_set: str = ""
    plain_marks: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def leak_server() -> Iterator[RecordingServer]:
    """The attacker's host: nothing may ever reach it."""
    with recording_server(LEAK_HOST) as recording:
        yield recording


@pytest.fixture(scope="module")
def allowed_image_server() -> Iterator[RecordingServer]:
    """The one allow-listed image host (``NEXUS_IMAGE_HOSTS``)."""
    with recording_server(ALLOWED_HOST) as recording:
        yield recording


@pytest.fixture(scope="module")
def hostile_app(
    tmp_path_factory: pytest.TempPathFactory,
    chromium_path: str,
    allowed_image_server: RecordingServer,
) -> Iterator[LiveApp]:
    """The app around a fresh data dir that allow-lists ``ALLOWED_HOST`` for images."""
    root = tmp_path_factory.mktemp("hostile")
    env = _server_env(root / "data")
    env["NEXUS_IMAGE_HOSTS"] = ALLOWED_HOST
    run_nexus(env, "init")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(process, url, log_path)
            yield LiveApp(
                url=url, data_dir=root / "data", env=env, log_path=log_path, process=process
            )
        finally:
            _stop(process)


def _provider_error(app: LiveApp, persona: str, leak: str) -> str:
    """A chat whose reply failed with a Gemini error body full of hostile Markdown."""
    gemini = FakeGeminiServer().start()
    try:
        gemini.enqueue(status=400, error_message=hostile(leak, "provider-error", short=True))
        env = {
            **app.env,
            "NEXUS_AI_PROVIDER": "gemini",
            "GEMINI_API_KEY": "AIza-hostile-text-test-key",
            "GEMINI_API_BASE": gemini.base_url,
        }
        args = ["chat", "--user", WRITER[0], "--persona", persona, "--json", "Hello there"]
        result = subprocess.run(
            [sys.executable, "-m", "nexus_core.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        gemini.stop()
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == "failed", result.stderr
    # Provider error bodies are read structurally: none of the hostile text is even stored.
    assert "provider-error" not in answer["error"] and leak not in answer["error"]
    return str(answer["session_id"])


@pytest.fixture(scope="module")
def seeded(hostile_app: LiveApp, leak_server: RecordingServer) -> Seeded:
    """Every user-writable field filled with hostile text, through the services."""
    leak = leak_server.origin
    out = Seeded()
    ctx = AppContext(Settings.from_sources(environ=hostile_app.env, secrets_file=None))
    try:
        admin = ctx.users.get("admin")
        writer = ctx.users.create(
            WRITER[0],
            WRITER[1],
            role="analyst",
            display_name=hostile(leak, "display-name", short=True),
        )
        out.persona = f"pn <a href='http://{leak}/pa'>x</a> ![i](http://{leak}/pi)"
        ctx.personas.create(
            out.persona,
            hostile(leak, "persona-instruction"),
            description=hostile(leak, "persona-description", short=True),
            actor=admin,
        )
        chat = ctx.chat.create_session(writer, out.persona)
        ctx.chat.rename(chat.public_id, writer, hostile(leak, "session-title", short=True))
        out.session_id = chat.public_id
        out.error_session_id = _provider_error(hostile_app, out.persona, leak)
        item = ctx.feedback.submit(
            writer,
            category="bug",
            priority="critical",
            description=hostile(leak, "feedback-description"),
            session_public_id=chat.public_id,
        )
        out.feedback_id = item.id
        TriageService(ctx.db).add_note(item.id, hostile(leak, "triage-note"), admin)
        notebooks = NotebookService(ctx.db)
        notebook = notebooks.create(
            writer,
            hostile(leak, "notebook-title", short=True),
            [Cell("markdown", hostile(leak, "notebook-cell")), Cell("sql", "SELECT 1 AS one")],
        )
        notebooks.set_shared(writer, notebook.id, True)
        out.notebook_id = notebook.id
        out.test_set = hostile(leak, "test-set-name", short=True)
        prompts = f"{hostile(leak, 'test-prompt', short=True)}\ncontains: x"
        ctx.test_sets.create(admin, out.test_set, parse_test_set(prompts))
        variants = [VariantSpec(out.persona, temperature=t) for t in (0.2, 0.9)]
        run = ctx.compare.start(
            admin,
            hostile(leak, "compare-prompt"),
            variants,
            tag=f"ct ![i](http://{leak}/ct)",  # tags have at most 40 characters
        )
        ctx.compare.wait(admin, run.id, timeout=COMPARE_WAIT_SECONDS)
        note = Rating(True, hostile(leak, "compare-note", short=True))
        ctx.compare.vote(admin, run.id, best=0, ratings={0: note})
        out.run_id = run.id
    finally:
        ctx.close()
    out.plain_marks = [
        "display-name",
        "persona-description",
        "persona-instruction",
        "pa",
        "pi",
        "session-title",
        "provider-error",
        "feedback-description",
        "triage-note",
        "notebook-title",
        "test-set-name",
        "test-prompt",
        "ct",
        "compare-note",
        "not-found",
    ]
    return out


@dataclass
class Watch:
    """What one browser context did that the CSP or the renderer should have stopped."""

    violations: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)


def _open(page: Page, url: str, *visible: str) -> None:
    """Open ``url`` and wait until each text in ``visible`` is on screen and the run is over."""
    page.goto(url)
    for text in visible:
        expect(page.get_by_text(text, exact=False).first).to_be_visible()
    wait_until_idle(page)
    page.wait_for_timeout(LATE_LOAD_WAIT_MS)


def _drawn(page: Page, leak: str, plain_marks: list[str]) -> list[str]:
    """Images pointing at ``leak``, and live links to it from plain-text fields."""
    images = page.evaluate(LEAK_IMAGES_JS, leak)
    links = page.evaluate(LIVE_LINKS_JS, leak)
    # Markdown fields (chat, notebook notes, prompts) may keep a web link, never an image.
    plain_links = [h for h in links if any(f"/{mark}" in h for mark in plain_marks)]
    return [f"{page.url}: image {src}" for src in images] + [
        f"{page.url}: link {href}" for href in plain_links
    ]


def test_hostile_text_in_every_field_stays_text_on_every_page(
    hostile_app: LiveApp,
    seeded: Seeded,
    browser: Browser,
    leak_server: RecordingServer,
) -> None:
    url, leak = hostile_app.url, leak_server.origin
    drawn: list[str] = []
    watch = Watch()
    admin_context = browser.new_context()
    writer_context = browser.new_context()
    try:
        for context in (admin_context, writer_context):
            context.set_default_timeout(UI_TIMEOUT_MS)
        admin = admin_context.new_page()
        admin.on("console", watch.console)
        sign_in(admin, url, "admin", ADMIN_PASSWORD)
        admin_pages = [
            (f"{url}/personas", ["persona-description", "pn"]),
            (f"{url}/chat?session={seeded.error_session_id}", ["Gemini rejected the request"]),
            (f"{url}/explorer?item={seeded.feedback_id}", ["feedback-description", "Conversation"]),
            (f"{url}/workbench?notebook={seeded.notebook_id}", ["notebook-title", "notebook-cell"]),
            (f"{url}/compare?run={seeded.run_id}", [f"{leak}/ct", "compare-prompt"]),
            (f"{url}/compare?view=leaderboard", ["Prompt tag"]),
            (f"{url}/dashboard", ["Open incidents"]),
            (f"{url}/audit", ["Download CSV"]),
            (f"{url}/users", ["Create a user"]),
        ]
        for address, visible in admin_pages:
            _open(admin, address, *visible)
            # The simulated model quotes the persona's instruction in its (Markdown) replies.
            quoted = ["persona-instruction"] if "run=" in address else []
            marks = [m for m in seeded.plain_marks if m not in quoted]
            drawn += _drawn(admin, leak, marks)
        # Charts with persona names on their bars, drawn once their tab is opened.
        for address, heading, tab in (
            (f"{url}/explorer", "Feedback explorer", "Charts"),
            (f"{url}/dashboard", "Open incidents", "Personas"),
        ):
            _open(admin, address, heading)
            admin.get_by_role("tab", name=tab).click()
            expect(admin.get_by_role("tab", name=tab)).to_have_attribute("aria-selected", "true")
            wait_until_idle(admin)
            expect(admin.locator(".js-plotly-plot .main-svg").first).to_be_visible()
            drawn += _drawn(admin, leak, seeded.plain_marks)
        _open(admin, f"{url}/compare?view=tests", "Test set")
        pick(admin, "Test set", re.compile("test-set-name"))
        expect(admin.get_by_text("Run “test-set-name", exact=False)).to_be_visible()
        drawn += _drawn(admin, leak, seeded.plain_marks)

        writer = writer_context.new_page()
        writer.on("console", watch.console)
        sign_in(writer, url, *WRITER)
        expect(writer.get_by_text("display-name", exact=False).first).to_be_visible()
        writer_pages = [
            (url, ["persona-description", "session-title"]),
            (f"{url}/chat?session={seeded.session_id}", ["session-title"]),
            (f"{url}/chat?session={seeded.error_session_id}", ["Gemini rejected the request"]),
            (f"{url}/feedback", ["My submissions"]),
            (f"{url}/workbench", ["notebook-title"]),
            # "http:host" is a full URL to a browser, so this path needs no "/" of its own.
            (f"{url}/not-found![i](http:{leak})", ["not-found"]),
        ]
        for address, visible in writer_pages:
            _open(writer, address, *visible)
            drawn += _drawn(writer, leak, seeded.plain_marks)
    finally:
        admin_context.close()
        writer_context.close()

    assert leak_server.seen() == []
    assert drawn == [], "\n".join(drawn)
    assert watch.violations == []  # the policy never had to refuse anything the app drew


def test_the_policy_refuses_an_image_that_slipped_past_the_renderer(
    tmp_path: Path,
    browser: Browser,
    leak_server: RecordingServer,
    allowed_image_server: RecordingServer,
) -> None:
    env = _server_env(tmp_path / "data")
    env.update(
        NEXUS_IMAGE_HOSTS=ALLOWED_HOST,
        NEXUS_CSP_LEAK=leak_server.origin,
        NEXUS_CSP_ALLOWED=allowed_image_server.origin,
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "harness.log"
    command = [sys.executable, "-m", "streamlit", "run", str(CSP_HARNESS)]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    watch = Watch()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        context = browser.new_context()
        try:
            _wait_until_healthy(process, url, log_path)
            page = context.new_page()
            page.on("console", watch.console)
            page.goto(url)
            expect(page.locator(f'img[src*="{allowed_image_server.origin}"]')).to_have_count(1)
            expect(page.locator(f'img[src*="{leak_server.origin}"]')).to_have_count(1)
            page.wait_for_function("() => document.querySelectorAll('.main-svg').length > 0")
            page.wait_for_timeout(LATE_LOAD_WAIT_MS)
        finally:
            context.close()
            _stop(process)

    assert allowed_image_server.seen() == [ALLOWED_IMAGE_PATH]
    assert leak_server.seen() == []
    assert any("img-src" in v and leak_server.origin in v for v in watch.violations)
