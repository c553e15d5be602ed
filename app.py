"""Nexus AI — the frame: page config, sign-in, navigation by role. `streamlit run app.py`.

Imported by `streamlit run` (no script context) this file defines the ASGI ``app``: the pages plus
``/health`` and ``/metrics`` on one port. Run as each visitor's script, it draws the frame.
"""

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

if get_script_run_ctx(suppress_warning=True) is None:  # no warning: this check is the point
    from nexus_core.ui.errors_view import on_script_error
    from nexus_core.web import server

    server.refuse_misconfigured_start()
    server.withhold_exception_text_from_logs()
    app = st.App(
        __file__,
        routes=server.routes(),
        middleware=server.middleware(base_path=st.get_option("server.baseUrlPath") or ""),
        exception_handlers=server.exception_handlers(),
        on_script_error=on_script_error,
    )
else:
    from nexus_core.errors import ConfigError
    from nexus_core.ui import nav, show, state
    from nexus_core.ui.auth import sign_in
    from nexus_core.ui.errors_view import show_report_notice
    from nexus_core.ui.resources import get_context

    st.set_page_config(page_title="Nexus AI", page_icon="🧠", layout="wide")
    try:
        ctx = get_context()
    except ConfigError as exc:
        show.error(exc)
        st.stop()

    if not st.session_state.get(state.AUTH_STATUS):
        # Before sign-in, so that the page asked for (and its query) survives the login form.
        nav.remember_requested_page()
        nav.hide_navigation()
    user = sign_in(ctx)
    if user is None:
        nav.hide_navigation()  # also right after signing out: no stale menu
        st.stop()
    show_report_notice()
    navigation = nav.build_navigation(user, env=ctx.settings.env)  # an unknown path: the 404
    nav.return_to_requested_page(navigation, user, env=ctx.settings.env)
    navigation.run()  # an unknown address has a hidden page of its own: the friendly 404
