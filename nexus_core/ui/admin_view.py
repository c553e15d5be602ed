"""Widgets of the Users page.

Every change runs in a widget callback, before the script draws the page, so the table and the
controls always show what is stored. A callback leaves its outcome as a notice
(``state.ADMIN_NOTICE``, shared with the Personas page) that the next draw shows once and forgets
(a temporary password is never shown twice).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.cost.budgets import BudgetView
from nexus_core.ui import notices, show, state
from nexus_core.users import KNOWN_FEATURES, ROLE_PAGES, UserView, feature_state

# Widget and session keys of the Users page.
NOTICE = state.ADMIN_NOTICE
CREATE_FORM = "nexus_users_create"
NEW_USERNAME = "nexus_users_new_username"
NEW_DISPLAY_NAME = "nexus_users_new_display_name"
NEW_EMAIL = "nexus_users_new_email"
NEW_ROLE = "nexus_users_new_role"
PICK_USER = "nexus_users_pick"
ROLE_FORM_PREFIX = "nexus_users_role_form_"
ROLE_PREFIX = "nexus_users_role_"
DISABLE_PREFIX = "nexus_users_disable_"
UNLOCK_PREFIX = "nexus_users_unlock_"
EXPORT_PREFIX = "nexus_users_export_"
ERASE_FORM_PREFIX = "nexus_users_erase_form_"
ERASE_CONFIRM_PREFIX = "nexus_users_erase_confirm_"
RESET_PREFIX = "nexus_users_reset_"
FEATURE_PREFIX = "nexus_users_feature_"

TEMPORARY_PASSWORD_BYTES = 12
ROLE_NAMES = tuple(ROLE_PAGES)
NEVER = "never"
# Wide enough for "2026-12-04 03:19 UTC" and "on — default in development" in full.
LAST_SIGN_IN_WIDTH = "medium"
FEATURE_WIDTH = "medium"
DEVELOPMENT_NOTE = (
    "This app runs in development (NEXUS_ENV=development): every user has every feature here. "
    "The flags set below count in test and production."
)
FEATURES_NOTE = "Whether each user has each feature now, and why."


def temporary_password() -> str:
    """A random password for the user to replace at first sign-in."""
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


# --- users table --------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else NEVER


def _status(user: UserView) -> str:
    if user.disabled:
        return "disabled"
    if user.locked_until is not None:
        return f"locked until {_when(user.locked_until)}"
    return "must change password" if user.must_change_password else "active"


def users_table(users: list[UserView], budgets: dict[int, BudgetView] | None = None) -> None:
    """Every account with its role, status, last sign-in and monthly budget."""
    budgets = budgets or {}
    rows = [
        {
            "Username": u.username,
            "Name": u.display_name,
            "Role": u.role,
            "Status": _status(u),
            "Last sign-in": _when(u.last_login_at),
            "Budget": budgets[u.id].summary() if u.id in budgets else "—",
        }
        for u in users
    ]
    columns = {"Last sign-in": st.column_config.TextColumn(width=LAST_SIGN_IN_WIDTH)}
    st.dataframe(rows, hide_index=True, width="stretch", column_config=columns)


def features_table(users: list[UserView], *, env: str) -> None:
    """Per user and feature, whether the user has it in environment ``env`` and why."""
    rows = [
        {
            "Username": u.username,
            **{name: feature_state(u, name, env=env).reason for name in KNOWN_FEATURES},
        }
        for u in users
    ]
    columns = {
        name: st.column_config.TextColumn(width=FEATURE_WIDTH, help=show.plain(description))
        for name, description in KNOWN_FEATURES.items()
    }
    st.dataframe(rows, hide_index=True, width="stretch", column_config=columns)
    show.caption(FEATURES_NOTE + (" " + DEVELOPMENT_NOTE if env == "development" else ""))


# --- create -------------------------------------------------------------------------------


def create_user_form(ctx: AppContext, actor: UserView) -> None:
    """A form for a new account; its temporary password is shown once, after creation."""
    with st.form(CREATE_FORM):
        st.markdown("**Create a user**")
        left, right = st.columns(2)
        left.text_input("Username", key=NEW_USERNAME, max_chars=64)
        right.text_input("Display name", key=NEW_DISPLAY_NAME, max_chars=120)
        left.text_input("Email (optional)", key=NEW_EMAIL, max_chars=254)
        right.selectbox("Role", ROLE_NAMES, key=NEW_ROLE)
        st.form_submit_button("Create user", on_click=_create_user, args=(ctx, actor))


def _create_user(ctx: AppContext, actor: UserView) -> None:
    password = temporary_password()
    username = st.session_state[NEW_USERNAME]
    created = notices.act(
        lambda: ctx.users.create(
            username,
            password,
            role=st.session_state[NEW_ROLE],
            display_name=st.session_state[NEW_DISPLAY_NAME] or None,
            email=st.session_state[NEW_EMAIL].strip() or None,
            must_change_password=True,
            actor=actor,
        ),
        key=NOTICE,
    )
    if created is None:
        return
    for key in (NEW_USERNAME, NEW_DISPLAY_NAME, NEW_EMAIL):
        st.session_state[key] = ""
    notices.leave(
        NOTICE,
        f"Created {created.username} ({created.role}). Give them this temporary password; "
        "it is shown only now and must be changed at first sign-in:",
        secret=password,
    )


# --- change -------------------------------------------------------------------------------


def user_actions(ctx: AppContext, actor: UserView, users: list[UserView]) -> None:
    """Disable or enable, change role, reset the password and toggle features of one user."""
    st.markdown("**Change a user**")
    by_name = {u.username: u for u in users}
    picked = st.selectbox("User", list(by_name), key=PICK_USER)
    if picked is None:
        return
    target = by_name[picked]
    show.caption(f"{target.display_name} · {target.role} · {_status(target)}")
    disable, reset = st.columns(2)
    disable.button(
        "Enable" if target.disabled else "Disable",
        key=DISABLE_PREFIX + target.username,
        icon="✅" if target.disabled else "⛔",
        on_click=_set_disabled,
        args=(ctx, actor, target.username, not target.disabled),
    )
    reset.button(
        "Reset password",
        key=RESET_PREFIX + target.username,
        icon="🔑",
        on_click=_reset_password,
        args=(ctx, actor, target.username),
    )
    if target.locked_until is not None:
        st.button(
            "Unlock",
            key=UNLOCK_PREFIX + target.username,
            icon="🔓",
            help="Too many failed sign-ins locked this account; let them try again now.",
            on_click=_unlock,
            args=(ctx, actor, target.username),
        )
    with st.form(ROLE_FORM_PREFIX + target.username):
        st.selectbox(
            "Role",
            ROLE_NAMES,
            index=ROLE_NAMES.index(target.role),
            key=ROLE_PREFIX + target.username,
        )
        st.form_submit_button("Change role", on_click=_set_role, args=(ctx, actor, target))
    _personal_data(ctx, actor, target)
    st.markdown("Features (the switch is this user's own flag)")
    for name, description in KNOWN_FEATURES.items():
        key = f"{FEATURE_PREFIX}{target.username}.{name}"
        feature = feature_state(target, name, env=ctx.settings.env)
        # Drawn from the stored flag every time, so a refused change flips back.
        st.session_state[key] = feature.stored
        st.toggle(
            show.plain(name),
            key=key,
            help=show.plain(description),
            on_change=_set_feature,
            args=(ctx, actor, target.username, name, key),
        )
        show.caption(f"Has it now: {feature.reason}")


def _set_disabled(ctx: AppContext, actor: UserView, username: str, disabled: bool) -> None:
    notices.act(
        lambda: ctx.users.set_disabled(username, disabled, actor=actor),
        success=f"{username} is {'disabled' if disabled else 'enabled'}.",
        key=NOTICE,
    )


def _personal_data(ctx: AppContext, actor: UserView, target: UserView) -> None:
    """Download everything held about ``target``; erase it after typing their name."""
    st.download_button(
        "Export their data (JSON)",
        data=lambda: json.dumps(
            ctx.personal_data.export(target.username, actor=actor), ensure_ascii=False, indent=2
        ),
        file_name=f"nexus-{target.username}.json",
        mime="application/json",
        key=EXPORT_PREFIX + target.username,
        icon="📦",
        on_click="ignore",
    )
    with st.form(ERASE_FORM_PREFIX + target.username):
        st.markdown("**Erase this person's data** (cannot be undone)")
        show.caption(ERASE_NOTE)
        st.text_input("Type their username to confirm", key=ERASE_CONFIRM_PREFIX + target.username)
        st.form_submit_button(
            "Erase for good", icon="🧹", on_click=_erase, args=(ctx, actor, target.username)
        )


ERASE_NOTE = (
    "Removes the text of their messages and the replies to them, their feedback and notes, "
    "session titles, notebooks and test sets, and anonymises the account; counts, latencies "
    "and costs stay on the dashboards. The audit trail keeps its record."
)


def _erase(ctx: AppContext, actor: UserView, username: str) -> None:
    typed = st.session_state.get(ERASE_CONFIRM_PREFIX + username, "")
    st.session_state[ERASE_CONFIRM_PREFIX + username] = ""
    if typed.strip() != username:
        notices.leave(NOTICE, f"Nothing erased: type {username} exactly to confirm.", kind="error")
        return
    report = notices.act(
        lambda: ctx.personal_data.erase(username, actor=actor),
        success=lambda report: (
            f"Erased {username}'s data: {report.messages} messages, {report.feedback} feedback "
            f"items, {report.notebooks} notebooks; the account is now {report.account}."
        ),
        key=NOTICE,
    )
    if report is not None:
        st.session_state[PICK_USER] = report.account


def _unlock(ctx: AppContext, actor: UserView, username: str) -> None:
    notices.act(
        lambda: ctx.users.unlock(username, actor=actor),
        success=f"{username} is unlocked and can sign in again.",
        key=NOTICE,
    )


def _set_role(ctx: AppContext, actor: UserView, target: UserView) -> None:
    key = ROLE_PREFIX + target.username
    role = st.session_state[key]
    changed = notices.act(
        lambda: ctx.users.set_role(target.username, role, actor=actor),
        success=f"{target.username} is now {role}.",
        key=NOTICE,
    )
    if changed is None:
        st.session_state[key] = target.role


def _reset_password(ctx: AppContext, actor: UserView, username: str) -> None:
    password = temporary_password()
    changed = notices.act(
        lambda: ctx.users.set_password(username, password, actor=actor, must_change=True),
        key=NOTICE,
    )
    if changed is None:
        return
    notices.leave(
        NOTICE,
        f"New temporary password for {username}; it is shown only now and must be changed "
        "at the next sign-in:",
        secret=password,
    )


def _set_feature(ctx: AppContext, actor: UserView, username: str, feature: str, key: str) -> None:
    enabled = bool(st.session_state[key])
    notices.act(
        lambda: ctx.users.set_feature(username, feature, enabled, actor=actor),
        success=f"{feature} is {'on' if enabled else 'off'} for {username}.",
        key=NOTICE,
    )
