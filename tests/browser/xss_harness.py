"""Renders each payload of ``$NEXUS_XSS_PAYLOADS`` (a JSON list) the way the chat page does.

Run by tests/browser/test_xss_corpus.py with ``streamlit run``; ``$NEXUS_XSS_IMAGE_HOSTS`` (a
JSON list, optional) is the image allow-list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from nexus_core.ui import show

PAYLOADS_ENV = "NEXUS_XSS_PAYLOADS"
IMAGE_HOSTS_ENV = "NEXUS_XSS_IMAGE_HOSTS"

payloads = json.loads(Path(os.environ[PAYLOADS_ENV]).read_text(encoding="utf-8"))
image_hosts = json.loads(os.environ.get(IMAGE_HOSTS_ENV, "[]"))
for payload in payloads:
    with st.chat_message("assistant"):
        show.markdown(payload, allowed_image_hosts=image_hosts)
