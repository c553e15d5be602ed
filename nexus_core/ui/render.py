"""Showing user- and model-written text: every chat message goes through ``render_message``."""

from __future__ import annotations

from collections.abc import Collection

import streamlit as st

from nexus_core.rendering import IMAGE_HOSTS_DEFAULT, safe_markdown


def render_message(
    text: str, *, allowed_image_hosts: Collection[str] = IMAGE_HOSTS_DEFAULT
) -> None:
    """Show ``text`` as Markdown with only web/mail links and allow-listed images left live."""
    # Never unsafe_allow_html: Streamlit then shows raw HTML as text, and safe_markdown handles
    # what Markdown itself can do (links, images).
    st.markdown(safe_markdown(text, allowed_image_hosts=allowed_image_hosts))
