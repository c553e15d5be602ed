"""A page that deliberately renders an image past the safe renderer, served with Nexus's own
security headers, so tests/browser/test_hostile_text_journey.py can show the Content-Security-
Policy refusing it (and still allowing an allow-listed image and a Plotly chart).

Imported by ``streamlit run`` (no script context) it defines the ASGI ``app`` with the app's
middleware, as ``app.py`` does; run as the page script it draws the images.
"""

from __future__ import annotations

import os

import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

LEAK_ENV = "NEXUS_CSP_LEAK"
ALLOWED_ENV = "NEXUS_CSP_ALLOWED"

if get_script_run_ctx() is None:
    from nexus_core.web import server

    app = st.App(__file__, middleware=server.middleware())
else:
    # Never do this in the app: it is the renderer bug the policy is the last line against.
    st.markdown(f"![slipped](http://{os.environ[LEAK_ENV]}/slipped-past-the-renderer)")
    st.markdown(f"![allowed](http://{os.environ[ALLOWED_ENV]}/allowed.png)")
    st.plotly_chart(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))
