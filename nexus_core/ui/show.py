"""The one way text that someone else typed, or a provider returned, reaches the screen.

Streamlit 1.67 renders Markdown — images that load from any host, links, bare URLs made into
links — in far more places than ``st.markdown`` (checked in Chromium, listed in the README under
"Safe rendering"): titles, headers, captions, ``st.error``/``warning``/``info``/``success``,
``st.write``, ``st.metric`` (label, value and delta), every widget label and ``help=`` tooltip,
button, expander, popover, tab, status, spinner, progress and dialog labels, radio, segmented
control and pills options, and ``st.table`` cells. Plain: ``st.text``, ``st.code``,
``st.json``, ``st.dataframe`` cells and headers, selectbox and multiselect options,
placeholders and the page title. Plotly draws ``<a href>`` from any text in a figure.

So text goes one of two ways:

- **Plain** (names, titles, descriptions, notes, error messages): ``plain`` turns it into
  Markdown that shows it literally; ``title``, ``caption``, ``error`` … use it, and a label or an
  f-string that mixes our own Markdown with someone's text wraps their part in ``plain``.
- **Markdown where Markdown is the point** (chat messages, model replies, notebook notes):
  ``markdown`` shows it through ``nexus_core.markdown.safe.safe_markdown``.

``tests/test_architecture.py`` walks the pages and ``nexus_core/ui`` and fails on a Markdown
rendering call whose text is neither a literal nor made safe here.
"""

from __future__ import annotations

import html
from collections.abc import Collection
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from nexus_core.analytics.charts import Chart, EmptyChart
from nexus_core.markdown.safe import as_code_block, escape_markdown, safe_markdown
from nexus_core.personas import shown_avatar, with_colour_presentation
from nexus_core.settings import load_settings

# Plotly keys whose strings are our own templates (with <br> and %{…}), not data.
PLOTLY_TEMPLATE_KEYS = frozenset({"hovertemplate", "texttemplate", "template"})
Alert = Literal["error", "warning", "info", "success"]


def plain(text: object) -> str:
    """Markdown that shows ``text`` literally, for any Markdown-rendering widget or label."""
    return escape_markdown(str(text))


def markdown(text: str, *, allowed_image_hosts: Collection[str] | None = None) -> None:
    """Show Markdown someone wrote with only web/mail links and allow-listed images left live."""
    if allowed_image_hosts is None:
        allowed_image_hosts = _image_hosts()
    hosts = allowed_image_hosts
    # Never unsafe_allow_html: Streamlit then shows raw HTML as text, and safe_markdown handles
    # what Markdown itself can do (links, images).
    st.markdown(safe_markdown(text, allowed_image_hosts=hosts))


@st.cache_resource(show_spinner=False)
def _image_hosts() -> tuple[str, ...]:
    """``NEXUS_IMAGE_HOSTS``, read once per process (not on every message drawn)."""
    return tuple(load_settings().allowed_image_hosts)


def text(body: object) -> None:
    """Show ``body`` as plain text in the page's normal font, line breaks kept."""
    st.markdown(plain(body))


def title(text: object) -> None:
    """A page title of plain text."""
    st.title(plain(text), anchor=False)


def subheader(text: object) -> None:
    """A section heading of plain text."""
    st.subheader(plain(text), anchor=False)


def caption(text: object) -> None:
    """A caption of plain text."""
    st.caption(plain(text))


def alert(kind: Alert, text: object, *, icon: str | None = None, verbatim: bool = False) -> None:
    """An error, warning, info or success box of plain text.

    ``verbatim`` shows the text as a code block (a SQL error's caret lines stay aligned).
    """
    body = as_code_block(str(text)) if verbatim else plain(text)
    box = {"error": st.error, "warning": st.warning, "info": st.info, "success": st.success}
    box[kind](body, icon=icon)


def error(text: object, *, icon: str | None = None, verbatim: bool = False) -> None:
    """An error box of plain text (``verbatim``: as a code block)."""
    alert("error", text, icon=icon, verbatim=verbatim)


def warning(text: object) -> None:
    """A warning box of plain text."""
    alert("warning", text)


def info(text: object) -> None:
    """An info box of plain text."""
    alert("info", text)


def success(text: object) -> None:
    """A success box of plain text."""
    alert("success", text)


def avatar(value: str | None) -> str:
    """An avatar that can only be one emoji (a string with a URL or path would load it), in its
    colour form (Streamlit's text font has a small monochrome 🤖 that a bare one is drawn with)."""
    return with_colour_presentation(shown_avatar(value))


def plain_figure(figure: go.Figure) -> go.Figure:
    """``figure`` with every string of data and labels shown literally (no Plotly ``<a href>``)."""
    return go.Figure(_plain_plotly(figure.to_dict()))


def chart(figure: Chart, **options: Any) -> None:
    """``st.plotly_chart`` of ``figure`` whose texts (names, categories, titles) are plain; for an
    ``EmptyChart``, the one empty state: its title and what would appear, in a bordered box."""
    if isinstance(figure, EmptyChart):
        _empty_chart(figure)
        return
    st.plotly_chart(plain_figure(figure), **options)


def _empty_chart(empty: EmptyChart) -> None:
    """A chart that has nothing to draw: its title, and what would appear there and how."""
    with st.container(border=True):
        if empty.title:
            st.markdown(f"**{plain(empty.title)}**")
        st.caption(f"📭 {plain(empty.message)}")


def _plain_plotly(value: object) -> object:
    if isinstance(value, str):
        # Plotly reads tags in text and then decodes entities, so escaped text stays text.
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {
            key: item if key in PLOTLY_TEMPLATE_KEYS else _plain_plotly(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain_plotly(item) for item in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        return [_plain_plotly(item) for item in value.tolist()]
    return value
