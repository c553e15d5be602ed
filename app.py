"""Nexus AI — the frame: page config, sign-in, navigation by role. `streamlit run app.py`."""

import streamlit as st

from nexus_core.errors import ConfigError
from nexus_core.ui.auth import sign_in
from nexus_core.ui.nav import build_navigation
from nexus_core.ui.resources import get_context

st.set_page_config(page_title="Nexus AI", page_icon="🧠", layout="wide")

try:
    ctx = get_context()
except ConfigError as exc:
    st.error(str(exc))
    st.stop()

user = sign_in(ctx)
if user is None:
    st.stop()

build_navigation(user).run()
