"""The session-state and widget keys of sign-in, the chat page and error handling.

Most keys are not here: each view names its own keys as constants at its top
(``admin_view.NOTICE``, ``compare_view.FORM``, ``audit_view.ACTOR``, ...), which its page and its
tests use, so no key is repeated as a string literal. ``st.session_state`` holds ids and UI
toggles only; everything else is a database row.
"""

from __future__ import annotations

# Sign-in: this browser session's sign-in session (an ``AuthSession`` id), checked on every run;
# while it is valid, ``AUTH_STATUS`` is True and ``USER_ID`` names the user.
AUTH_STATUS = "nexus_signed_in"
AUTH_SESSION = "nexus_auth_session"
USER_ID = "nexus_user_id"
COOKIE_HANDOFF = "nexus_cookie_handoff"  # (session id, one-time code) until the cookie is claimed
CLEAR_COOKIE = "nexus_clear_cookie"  # signed out: clear a login cookie that no longer works
COOKIE_READ = "nexus_cookie_read"  # the login cookie of the page load was tried (once per tab)
SIGN_IN_NOTE = "nexus_sign_in_note"  # why the login form is back (signed out, ended elsewhere)
LOGIN_FORM = "nexus_login_form"
LOGIN_USERNAME = "nexus_login_username"
LOGIN_PASSWORD = "nexus_login_password"
RETURN_TO = "nexus_return_to"
RETURN_DEFERRED_ON = "nexus_return_deferred_on"  # the page the switch back waits on
JUST_SIGNED_IN = "nexus_just_signed_in"  # this run signed someone in through the form
# Single sign-on: this browser session has used its provider identity (``st.user``) once.
SSO_IDENTITY_USED = "nexus_sso_identity_used"
SSO_BUTTON_PREFIX = "nexus_sso_"
LOGOUT_BUTTON = "nexus_logout"
PASSWORD_FORM = "nexus_password_form"
PASSWORD_OPEN = "nexus_password_open"  # the sidebar's "Change password" expander is open
NEW_PASSWORD = "nexus_new_password"
NEW_PASSWORD_REPEAT = "nexus_new_password_repeat"
CURRENT_PASSWORD = "nexus_current_password"

# Chat page (the open session is in the address: ``links.SESSION_QUERY_PARAM``).
CHAT_SEARCH = "nexus_chat_search"
CHAT_SHOW_ARCHIVED = "nexus_chat_show_archived"
CHAT_INPUT = "nexus_chat_input"
CHAT_REJECTED_DRAFT = "nexus_chat_rejected_draft"
CHAT_SQL_DRAFT = "nexus_chat_sql_draft"  # {"session", "draft"}: the last /sql answer's draft id
CHAT_RENAME = "nexus_chat_rename"
CHAT_NOTICE = "nexus_chat_notice"
NEW_CHAT_BUTTON = "nexus_new_chat"
PERSONA_PICK_PREFIX = "nexus_pick_persona_"
SESSION_PICK_PREFIX = "nexus_open_session_"
RATING_PREFIX = "nexus_rating_"
REPORT_FORM_PREFIX = "nexus_report_"
FREEZE_FORM_PREFIX = "nexus_freeze_"
RETRY_PREFIX = "nexus_retry_"

# The admin pages (Users, Personas): the outcome of the last change, shown once.
ADMIN_NOTICE = "nexus_admin_notice"

# Error handling.
CURRENT_PAGE = "nexus_current_page"
ERROR_REPORT_NOTICE = "nexus_error_report_notice"
REPORT_ERROR_BUTTON = "nexus_report_error"
