"""Sign-in, sign-out and password change in the UI, hardened per ``nexus_core.auth``.

streamlit-authenticator draws the login form and writes the cookie; before it runs we refuse a
revoked cookie, and after it runs we record the outcome in the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import extra_streamlit_components as stx
import jwt
import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities.exceptions import LoginError

from nexus_core.app_context import AppContext
from nexus_core.auth import (
    COOKIE_NAME,
    SIGN_IN_FAILED_MESSAGE,
    cookie_issued_at,
    resolve_cookie_key,
)
from nexus_core.errors import NexusError
from nexus_core.rendering import escape_markdown
from nexus_core.ui import state
from nexus_core.users import UserView

LOGIN_FIELDS = {
    "Form name": "Sign in to Nexus AI",
    "Username": "Username",
    "Password": "Password",
    "Login": "Sign in",
}


def _cookie_is_revoked(ctx: AppContext, key: str) -> bool:
    """Whether the browser's login cookie was issued before the user's last logout or reset."""
    token = st.context.cookies.get(COOKIE_NAME) if st.context.cookies else None
    if not token:
        return False
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"])
        username = str(claims["username"])
        issued = cookie_issued_at(float(claims["exp_date"]), ctx.settings.cookie_expiry_days)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return True
    return not ctx.sign_in.cookie_accepted(username, issued)


def _failed_username(credentials: dict[str, Any]) -> str | None:
    """The known user whose password check failed in this run (the authenticator counts it)."""
    for username, entry in credentials["usernames"].items():
        if entry.get("failed_login_attempts", 0) > 0:
            return username
    return None


def _authenticator(ctx: AppContext, credentials: dict[str, Any]) -> stauth.Authenticate:
    return stauth.Authenticate(
        credentials,
        cookie_name=COOKIE_NAME,
        cookie_key=resolve_cookie_key(ctx.settings),
        cookie_expiry_days=ctx.settings.cookie_expiry_days,
        auto_hash=False,
    )


def sign_in(ctx: AppContext) -> UserView | None:
    """Show the login form until someone signs in; returns the signed-in user or None."""
    credentials = ctx.sign_in.credentials()
    authenticator = _authenticator(ctx, credentials)
    if not st.session_state.get(state.AUTH_STATUS):
        if _cookie_is_revoked(ctx, resolve_cookie_key(ctx.settings)):
            st.session_state[state.AUTH_LOGOUT] = True  # the authenticator then ignores the cookie
        # Reset a failure from an earlier run so a False below means "failed just now".
        st.session_state[state.AUTH_STATUS] = None

    signed_in_now: list[str] = []
    st.session_state.pop(state.JUST_SIGNED_IN, None)

    def _on_success(info: dict[str, Any]) -> None:
        user = ctx.sign_in.record_success(info["username"])
        st.session_state[state.USER_ID] = user.id
        signed_in_now.append(user.username)

    form_box = st.empty()
    try:
        with form_box.container():
            authenticator.login(
                location="main", fields=LOGIN_FIELDS, key=state.LOGIN_FORM, callback=_on_success
            )
    except LoginError:
        st.session_state[state.AUTH_STATUS] = None
        st.error(SIGN_IN_FAILED_MESSAGE)
        return None

    status = st.session_state.get(state.AUTH_STATUS)
    if status is False:
        ctx.sign_in.record_failure(_failed_username(credentials))
        st.error(SIGN_IN_FAILED_MESSAGE)
        return None
    if not status:
        st.caption("Accounts are created by an administrator. Ask one if you need access.")
        return None

    if signed_in_now:
        # Take the form away at once, and write the cookie from outside it so it survives.
        form_box.empty()
        write_login_cookie(ctx, signed_in_now[0])
        st.session_state[state.JUST_SIGNED_IN] = True

    user = ctx.sign_in.active_user(str(st.session_state.get(state.AUTH_USERNAME)))
    if user is None:  # disabled or deleted since the cookie was written
        authenticator.logout(location="unrendered")
        st.session_state[state.AUTH_STATUS] = None
        st.rerun()
    st.session_state[state.USER_ID] = user.id
    _account_sidebar(ctx, authenticator, user)
    if not st.session_state.get(state.AUTH_STATUS):
        # Signed out just now. No rerun here: it could stop the cookie deletion reaching the
        # browser; the cookie component's own rerun brings the login form back.
        st.info("You are signed out.")
        return None
    if user.must_change_password:
        _forced_password_change(ctx, authenticator, user)
        return None
    return user


def is_https() -> bool:
    """Whether the browser reached us over HTTPS (directly or through a TLS proxy)."""
    forwarded = (st.context.headers or {}).get("X-Forwarded-Proto", "")
    return forwarded.lower() == "https" or (st.context.url or "").startswith("https://")


def write_login_cookie(ctx: AppContext, username: str) -> None:
    """Write the authenticator's login cookie (same JWT), marked Secure behind HTTPS."""
    expires = datetime.now() + timedelta(days=ctx.settings.cookie_expiry_days)
    token = jwt.encode(
        {"username": username, "exp_date": expires.timestamp()},
        resolve_cookie_key(ctx.settings),
        algorithm="HS256",
    )
    stx.CookieManager(key=state.COOKIE_MANAGER).set(
        COOKIE_NAME,
        token,
        key=state.COOKIE_WRITE,
        expires_at=expires,
        secure=True if is_https() else None,
        same_site="strict",
    )


def _sign_out(ctx: AppContext, info: dict[str, Any]) -> None:
    if info.get("username"):
        ctx.sign_in.record_sign_out(str(info["username"]))
    st.session_state.pop(state.USER_ID, None)


def _account_sidebar(ctx: AppContext, authenticator: stauth.Authenticate, user: UserView) -> None:
    with st.sidebar:
        st.markdown(f"**{escape_markdown(user.display_name)}** · {escape_markdown(user.role)}")
        if ctx.settings.ai_provider == "simulated":
            st.caption("AI: Simulated model (offline)")
        if not user.must_change_password:
            with st.expander("Change password"):
                _password_form(ctx, authenticator, user, ask_current=True)
        authenticator.logout(
            "Sign out",
            location="sidebar",
            key=state.LOGOUT_BUTTON,
            callback=lambda info: _sign_out(ctx, info),
        )


def _password_form(
    ctx: AppContext, authenticator: stauth.Authenticate, user: UserView, *, ask_current: bool
) -> None:
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
    try:
        ctx.users.change_own_password(user.username, current, new, verify_current=ask_current)
    except NexusError as exc:
        st.error(escape_markdown(str(exc)))
        return
    # Older cookies are now revoked; give this browser a fresh one.
    write_login_cookie(ctx, user.username)
    st.success("Password changed. Other browsers signed in as you have been signed out.")


def _forced_password_change(
    ctx: AppContext, authenticator: stauth.Authenticate, user: UserView
) -> None:
    st.title("Choose a new password")
    st.info("Your account has a temporary password. Choose your own before you continue.")
    _password_form(ctx, authenticator, user, ask_current=False)
