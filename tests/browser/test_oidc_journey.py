"""Single sign-on end to end: Chromium, the live app with an ``[auth]`` section, and a small OpenID
Connect provider on loopback (discovery, authorize, a token endpoint with an RS256 ID token, JWKS).

The first sign-in makes the user with the role the ``groups`` claim maps to; signing in again
after the provider changed the claim changes the role (audited); a user disabled in Nexus is
refused whatever the provider says. The Nexus session is the only sign-in left in the browser:
its HttpOnly cookie is set and Streamlit's identity cookie is gone.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent
from nexus_core.ui.auth import LOGIN_TITLE, SSO_REFUSED
from nexus_core.users import UserService
from nexus_core.web.session_cookie import STREAMLIT_IDENTITY_COOKIES
from tests.browser.conftest import (
    APP_SCRIPT,
    COOKIE_WAIT_MS,
    REPO_ROOT,
    LiveApp,
    NewPage,
    _free_port,
    _server_env,
    _stop,
    _wait_until_healthy,
    login_cookie,
    run_nexus,
    sets_login_cookie,
    wait_until_idle,
)
from tests.fakes.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROVIDER = "test"
BUTTON = "Sign in with Test"
ANN = {"sub": "ann-0001", "email": "ann.lee@example.com", "name": "Ann Lee"}
ROLE_SETTINGS = {
    "NEXUS_OIDC_ROLE_CLAIM": "groups",
    "NEXUS_OIDC_ADMIN_VALUES": "nexus-admins",
    "NEXUS_OIDC_ANALYST_VALUES": "nexus-analysts,data-team",
}


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def live_app(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str, idp: FakeOidcProvider
) -> Iterator[LiveApp]:
    """The app with single sign-on: its ``[auth]`` secrets in a file of the test's own (passed
    with ``--secrets.files``, so the repository's files stay untouched)."""
    root = tmp_path_factory.mktemp("oidc_app")
    data_dir = root / "data"
    env = {**_server_env(data_dir), **ROLE_SETTINGS}
    run_nexus(env, "init")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    secrets_file = root / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        f"[auth.{PROVIDER}]\n"
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{idp.metadata_url}"\n'
    )
    log_path = root / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    command += ["--secrets.files", str(secrets_file)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(process, url, log_path)
            yield LiveApp(url=url, data_dir=data_dir, env=env, log_path=log_path, process=process)
        finally:
            _stop(process)


def database(live_app: LiveApp) -> Database:
    return Database(f"sqlite:///{live_app.data_dir / 'nexus.db'}")


def sign_in_with_provider(page: Page, live_app: LiveApp, *, role: str) -> None:
    """Click "Sign in with Test", let the provider approve, and wait until the app shows the
    signed-in user with ``role`` and the hand-off frame has set the login cookie."""
    expect(page.get_by_role("heading", name=LOGIN_TITLE)).to_be_visible()
    wait_until_idle(page)
    with page.expect_response(sets_login_cookie, timeout=COOKIE_WAIT_MS) as claimed:
        page.get_by_role("button", name=BUTTON).click()
        expect(page.get_by_role("heading", name="Chat").first).to_be_visible()
    assert claimed.value.status == 204
    expect(page.get_by_test_id("stSidebar").get_by_text(f"· {role}")).to_be_visible()
    wait_until_idle(page)


def users(live_app: LiveApp) -> dict[str, dict[str, Any]]:
    listed = json.loads(live_app.nexus("users", "list", "--json").stdout)
    return {user["name"]: user for user in listed}


def audit_actions(live_app: LiveApp, action: str) -> list[dict[str, Any]]:
    db = database(live_app)
    try:
        with db.session() as session:
            rows = session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
            return [dict(row.details or {}) for row in rows]
    finally:
        db.dispose()


def test_single_sign_on_creates_the_user_follows_the_role_claim_and_keeps_a_disabled_user_out(
    live_app: LiveApp, new_page: NewPage, idp: FakeOidcProvider
) -> None:
    # First sign-in: the provider says analyst; Nexus makes "ann.lee" an analyst.
    idp.identity = {**ANN, "groups": ["staff", "nexus-analysts"]}
    page = new_page()
    page.goto(live_app.url)
    expect(page.get_by_label("Username")).to_be_visible()  # the password form stays beside it
    sign_in_with_provider(page, live_app, role="analyst")

    assert users(live_app)["ann.lee"]["role"] == "analyst"
    cookie = login_cookie(page.context)
    assert cookie is not None and cookie["httpOnly"] is True
    names = {c["name"] for c in page.context.cookies()}
    assert not names & set(STREAMLIT_IDENTITY_COOKIES), names  # Nexus's session is the one left
    assert audit_actions(live_app, "user.created")[-1]["method"] == "oidc"

    # Sign out: the login form comes back, and stays (the identity was used once).
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name=LOGIN_TITLE)).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible()
    expect(page.get_by_role("heading", name="Chat")).to_have_count(0)

    # Second sign-in: the provider now says admin; the role follows, and the change is audited.
    idp.identity = {**ANN, "groups": ["nexus-admins"]}
    sign_in_with_provider(page, live_app, role="admin")
    assert users(live_app)["ann.lee"]["role"] == "admin"
    assert audit_actions(live_app, "user.role_changed")[-1] == {
        "from": "analyst",
        "to": "admin",
        "by": "oidc claim groups",
    }

    # Disabled in Nexus: this browser is signed out at its next click, and the provider's
    # word (still admin) does not bring the user back.
    db = database(live_app)
    try:
        UserService(db).set_disabled("ann.lee", True)
    finally:
        db.dispose()
    page.reload()
    expect(page.get_by_role("heading", name=LOGIN_TITLE)).to_be_visible()
    wait_until_idle(page)
    page.get_by_role("button", name=BUTTON).click()
    expect(page.get_by_text(SSO_REFUSED)).to_be_visible()
    expect(page.get_by_role("heading", name="Chat")).to_have_count(0)
    failures = audit_actions(live_app, "auth.sign_in_failed")
    assert failures[-1]["reason"] == "disabled" and failures[-1]["method"] == "oidc"


def test_the_sign_in_page_offers_the_provider_beside_the_password_form(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    page.goto(live_app.url)
    expect(page.get_by_role("button", name=BUTTON)).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
