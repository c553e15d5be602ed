"""Sign-in, sign-out and password change in the UI, on top of ``nexus_core.auth``.

Every run of a signed-in browser session checks its sign-in session first (one query by primary
key); when it has ended — signed out elsewhere, password changed, account disabled, expired — the
login form comes back with a short note. A browser session that is not signed in tries, once, the
login cookie it loaded the page with (read on the server: the cookie is HttpOnly). The cookie of a
new sign-in reaches the browser through a hand-off frame (``nexus_core.web.session_cookie``), drawn
on every run until the browser has claimed it.

Single sign-on: when ``.streamlit/secrets.toml`` has an ``[auth]`` section (Streamlit's own
convention), the login form offers "Sign in with <provider>", which runs ``st.login``'s OpenID
Connect round trip. Back from the provider, ``st.user`` holds the verified claims; the first run
turns them into a Nexus session (``SignInService.sign_in_with_identity``) exactly like a password
sign-in, with the same hand-off frame, whose response also deletes Streamlit's identity cookie.
The identity is used once per browser session, so after signing out the login form stays; and
``st.logout`` is never called: it would send the browser to the provider's end-session endpoint,
signing the person out of every other application of their company.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from nexus_core.app_context import AppContext
from nexus_core.auth import (
    EXPIRED,
    LEGACY_COOKIE,
    SESSION_COOKIE,
    SIGN_IN_FAILED_MESSAGE,
    UNKNOWN,
    SessionCheck,
    SessionGrant,
)
from nexus_core.markdown.safe import escape_markdown
from nexus_core.sso import OidcIdentity
from nexus_core.ui import notices, show, state
from nexus_core.users import UserView
from nexus_core.web.session_cookie import clear_url, handoff_url

LOGIN_TITLE = "Sign in to Nexus AI"
USERNAME_MAX_CHARS = 64
NO_SIGN_UP_CAPTION = "Accounts are created by an administrator. Ask one if you need access."
MISSING_CREDENTIALS = "Enter your username and your password."
SIGNED_OUT_NOTE = "You are signed out."
ENDED_NOTES = {
    "sign_out": "You were signed out: this account signed out in another browser or tab. "
    "Sign in again to continue.",
    "password": "You were signed out because this account's password was changed. "
    "Sign in with the new password.",
    "disabled": "Your sign-in has ended. Ask an administrator if you need access.",
    EXPIRED: "Your sign-in has expired. Sign in again to continue.",
}
ENDED_NOTE = "Your sign-in has ended. Sign in again to continue."
PASSWORD_CHANGED = "Password changed. Every other browser signed in as you has been signed out."
CHANGE_PASSWORD_LABEL = "Change password"
COOKIE_FRAME_TITLE = "Keeps this browser signed in"
SSO_REFUSED = (
    "Single sign-on did not sign you in: this account is disabled, or the sign-in took too long. "
    "Try again, or ask an administrator if you need access."
)
# Streamlit's name of the provider configured directly under ``[auth]`` (not ``[auth.NAME]``).
DEFAULT_PROVIDER = "default"
DEFAULT_PROVIDER_LABEL = "single sign-on"
# Keys that make an ``[auth]`` table a provider's (as Streamlit's own check).
PROVIDER_KEYS = ("client_id", "server_metadata_url")


def sign_in(ctx: AppContext) -> UserView | None:
    """Show the login form until someone signs in; returns the signed-in user or None."""
    st.session_state.pop(state.JUST_SIGNED_IN, None)
    check = _current_sign_in(ctx)
    user = check.user if check is not None else _sign_in_from_provider(ctx) or _login_form(ctx)
    if user is None:
        return None
    _account_sidebar(ctx, user)
    if user.must_change_password:
        _forced_password_change(ctx)
        _cookie_handoff()
        return None
    _cookie_handoff()
    return user


def rerun_if_signed_out(ctx: AppContext) -> None:
    """At the top of a fragment: in the fragment's own reruns (which skip the frame's check), end
    the fragment when this browser's sign-in has ended, rerunning the app into the login form."""
    run = get_script_run_ctx()
    if run is None or not run.fragment_ids_this_run:
        return  # part of a full run: the frame has just checked the session
    session_id = st.session_state.get(state.AUTH_SESSION)
    if session_id is None or ctx.sign_in.check_session(int(session_id)).user is None:
        st.rerun(scope="app")


def _current_sign_in(ctx: AppContext) -> SessionCheck | None:
    """The valid sign-in of this browser session, checked now; None when there is none."""
    session_id = st.session_state.get(state.AUTH_SESSION)
    check = (
        ctx.sign_in.check_session(int(session_id))
        if session_id is not None
        else _sign_in_from_cookie(ctx)
    )
    if check is None:
        return None
    known_user = st.session_state.get(state.USER_ID)
    if check.user is None or check.session_id is None:
        _forget(ENDED_NOTES.get(check.ended or UNKNOWN, ENDED_NOTE))
        return None
    if known_user is not None and known_user != check.user.id:  # never someone else's session
        _forget(ENDED_NOTE)
        return None
    _remember(check.session_id, check.user)
    handoff = st.session_state.get(state.COOKIE_HANDOFF)
    if handoff is not None and (not check.cookie_pending or handoff[0] != check.session_id):
        st.session_state.pop(state.COOKIE_HANDOFF, None)
    return check


def _sign_in_from_cookie(ctx: AppContext) -> SessionCheck | None:
    """The session of the login cookie this tab was loaded with, tried on its first run only (the
    cookies Streamlit holds are those of the page load; later ones would be stale)."""
    if st.session_state.get(state.COOKIE_READ):
        return None
    st.session_state[state.COOKIE_READ] = True
    cookies = st.context.cookies or {}
    if LEGACY_COOKIE in cookies:
        st.session_state[state.CLEAR_COOKIE] = True
    token = cookies.get(SESSION_COOKIE)
    if not token:
        return None
    check = ctx.sign_in.resume(str(token))
    if check.user is None:
        st.session_state[state.CLEAR_COOKIE] = True
        if check.ended == UNKNOWN:
            return None  # nothing to explain: a cookie of an unknown session
    return check


def _remember(session_id: int, user: UserView) -> None:
    st.session_state[state.AUTH_SESSION] = session_id
    st.session_state[state.AUTH_STATUS] = True
    st.session_state[state.USER_ID] = user.id
    st.session_state.pop(state.CLEAR_COOKIE, None)
    st.session_state.pop(state.SIGN_IN_NOTE, None)


def _granted(grant: SessionGrant) -> None:
    """Keep a new session in this browser session and hand its cookie over on the next draws."""
    _remember(grant.session_id, grant.user)
    st.session_state[state.COOKIE_HANDOFF] = (grant.session_id, grant.handoff_code)


def _forget(note: str) -> None:
    """Signed out: drop the session, explain why on the login form, clear the cookie."""
    for key in (state.AUTH_SESSION, state.AUTH_STATUS, state.USER_ID, state.COOKIE_HANDOFF):
        st.session_state.pop(key, None)
    st.session_state[state.SIGN_IN_NOTE] = note
    st.session_state[state.CLEAR_COOKIE] = True


def sso_providers() -> list[tuple[str, str]]:
    """The single sign-on providers of the ``[auth]`` secrets, as (name for ``st.login``,
    label); empty when there is no ``[auth]`` section."""
    if not st.secrets.load_if_toml_exists():
        return []
    section = st.secrets.get("auth")
    if not isinstance(section, Mapping):
        return []
    providers = [
        (name, name.replace("-", " ").title())
        for name, value in section.items()
        if isinstance(value, Mapping) and any(key in value for key in PROVIDER_KEYS)
    ]
    if any(key in section for key in PROVIDER_KEYS):
        providers.insert(0, (DEFAULT_PROVIDER, DEFAULT_PROVIDER_LABEL))
    return providers


def _sign_in_from_provider(ctx: AppContext) -> UserView | None:
    """Back from the provider's round trip (``st.user`` is signed in): a Nexus session for that
    identity, tried once per browser session."""
    if st.session_state.get(state.SSO_IDENTITY_USED) or not st.user.get("is_logged_in", False):
        return None
    st.session_state[state.SSO_IDENTITY_USED] = True
    claims = st.user.to_dict()
    outcome = notices.act(
        lambda: ctx.sign_in.sign_in_with_identity(OidcIdentity.from_claims(claims))
    )
    grant = outcome if isinstance(outcome, SessionGrant) else None  # act: True for None
    if grant is None:
        _forget(SSO_REFUSED)  # the clear frame also deletes Streamlit's identity cookie
        return None
    _granted(grant)
    st.session_state[state.JUST_SIGNED_IN] = True
    return grant.user


def _provider_buttons(providers: list[tuple[str, str]]) -> None:
    for name, label in providers:
        st.button(
            f"Sign in with {escape_markdown(label)}",
            key=f"{state.SSO_BUTTON_PREFIX}{name}",
            on_click=st.login,
            args=(None if name == DEFAULT_PROVIDER else name,),
            type="primary",
        )


def _login_form(ctx: AppContext) -> UserView | None:
    providers = sso_providers()
    form_box = st.empty()
    with form_box.container():
        st.subheader(LOGIN_TITLE)
        _provider_buttons(providers)
        submitted, username, password = (
            _password_fields() if ctx.settings.password_login or not providers else (False, "", "")
        )
    if not submitted:
        note = st.session_state.get(state.SIGN_IN_NOTE)
        if note:
            show.info(note)
        st.caption(NO_SIGN_UP_CAPTION)
        _cookie_clear()
        return None
    # Passwords never begin or end with a space (``validate_password``): forgive stray ones.
    grant = ctx.sign_in.attempt(username, password.strip()) if username and password else None
    if grant is None:
        st.error(SIGN_IN_FAILED_MESSAGE if username and password else MISSING_CREDENTIALS)
        _cookie_clear()
        return None
    form_box.empty()
    _granted(grant)
    st.session_state[state.JUST_SIGNED_IN] = True
    return grant.user


def _password_fields() -> tuple[bool, str, str]:
    """The username and password form: (submitted, username, password)."""
    with st.form(state.LOGIN_FORM, clear_on_submit=True):
        username = st.text_input(
            "Username",
            key=state.LOGIN_USERNAME,
            max_chars=USERNAME_MAX_CHARS,
            autocomplete="username",
        )
        password = st.text_input(
            "Password", type="password", key=state.LOGIN_PASSWORD, autocomplete="current-password"
        )
        return st.form_submit_button("Sign in"), username, password


def _cookie_handoff() -> None:
    """While the new session's cookie is unclaimed: the frame that claims it (same address on
    every run, so it loads once)."""
    handoff = st.session_state.get(state.COOKIE_HANDOFF)
    if handoff is not None:
        session_id, code = handoff
        with st.sidebar:
            _frame(handoff_url(session_id, code))


def _cookie_clear() -> None:
    """Signed out: the frame that clears a login cookie that no longer signs anyone in."""
    if st.session_state.get(state.CLEAR_COOKIE):
        _frame(clear_url())


def _frame(url: str) -> None:
    st.iframe(url, width=1, height=1, tab_index=-1, alt=COOKIE_FRAME_TITLE)


def _sign_out(ctx: AppContext) -> None:
    session_id = st.session_state.get(state.AUTH_SESSION)
    if session_id is not None:
        ctx.sign_in.sign_out(int(session_id))
    _forget(SIGNED_OUT_NOTE)


def _account_sidebar(ctx: AppContext, user: UserView) -> None:
    with st.sidebar:
        st.markdown(f"**{escape_markdown(user.display_name)}** · {escape_markdown(user.role)}")
        if ctx.settings.ai_provider == "simulated":
            st.caption("AI: Simulated model (offline)")
        if user.has_password and not user.must_change_password:
            # Lazy: on every page, the form is built (and drawn) only while this is open.
            change = st.expander(CHANGE_PASSWORD_LABEL, key=state.PASSWORD_OPEN, on_change="rerun")
            if change.open:
                with change:
                    _password_form(ctx, ask_current=True)
        # A callback: the sign-out is done before the next run draws anything.
        st.button("Sign out", key=state.LOGOUT_BUTTON, on_click=_sign_out, args=(ctx,))


def _password_form(ctx: AppContext, *, ask_current: bool) -> None:
    with st.form(state.PASSWORD_FORM, clear_on_submit=True):
        current = ""
        if ask_current:
            current = st.text_input("Current password", type="password", key=state.CURRENT_PASSWORD)
        new = st.text_input(
            "New password (10+ characters)", type="password", key=state.NEW_PASSWORD
        )
        repeat = st.text_input(
            "Repeat the new password", type="password", key=state.NEW_PASSWORD_REPEAT
        )
        if not st.form_submit_button("Change password"):
            return
    if new != repeat:
        st.error("The two new passwords differ.")
        return
    session_id = st.session_state.get(state.AUTH_SESSION)
    if session_id is None:
        show.error("Your sign-in has ended; sign in again to change the password.")
        return
    grant = notices.act(lambda: ctx.sign_in.change_password(int(session_id), current, new))
    if grant is None:
        return
    _granted(grant)  # every session ended, this one included; this browser carries on in a new one
    st.success(PASSWORD_CHANGED)


def _forced_password_change(ctx: AppContext) -> None:
    st.title("Choose a new password")
    st.info("Your account has a temporary password. Choose your own before you continue.")
    _password_form(ctx, ask_current=False)
