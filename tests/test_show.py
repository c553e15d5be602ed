"""The one safe path for shown text (nexus_core/ui/show.py): plain text, avatars, Plotly figures,
and the Streamlit version the renderer was verified against."""

from __future__ import annotations

import re
from importlib.metadata import version

import plotly.express as px
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.personas import DEFAULT_AVATAR, EMOJI_PRESENTATION, is_avatar
from nexus_core.ui.show import avatar, plain_figure
from tests.constants import ROOT

# The minor versions of Streamlit whose Markdown rendering was checked in Chromium (README,
# "Safe rendering"). A new one needs that check again, then its place here and in pyproject.
VERIFIED_STREAMLIT = ("1.67",)
LINK = "<a href='http://evil.example/x'>persona & co</a>"


def test_streamlit_is_a_version_the_renderer_was_verified_against() -> None:
    installed = ".".join(version("streamlit").split(".")[:2])
    assert installed in VERIFIED_STREAMLIT


def test_pyproject_pins_streamlit_to_the_verified_minor_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = re.findall(r'"streamlit>=([0-9.]+),<([0-9.]+)"', pyproject)
    assert pins and all(low in VERIFIED_STREAMLIT for low, _high in pins)
    assert all(high == f"{low.split('.')[0]}.{int(low.split('.')[1]) + 1}" for low, high in pins)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("🧑‍💻", "🧑‍💻"),
        ("✍️", "✍️"),
        ("🤖", "🤖" + EMOJI_PRESENTATION),  # drawn in colour, not from the text font
        ("http://x", DEFAULT_AVATAR + EMOJI_PRESENTATION),  # a URL would be loaded as an image
        ("app.py", DEFAULT_AVATAR + EMOJI_PRESENTATION),  # a path would be read from the disk
        ("//e.co/x", DEFAULT_AVATAR + EMOJI_PRESENTATION),
        ("", DEFAULT_AVATAR + EMOJI_PRESENTATION),
        (None, DEFAULT_AVATAR + EMOJI_PRESENTATION),
    ],
)
def test_an_avatar_can_only_be_an_emoji(value: str | None, shown: str) -> None:
    assert avatar(value) == shown


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("🤖", "🤖" + EMOJI_PRESENTATION),  # Streamlit's text font has a small monochrome 🤖
        ("🤖" + EMOJI_PRESENTATION, "🤖" + EMOJI_PRESENTATION),
        ("✍", "✍️"),  # text presentation by default: asked for in colour too
        ("✍️", "✍️"),
        ("🧑‍💻", "🧑‍💻"),  # a sequence is drawn whole by the emoji font
        ("👍🏽", "👍🏽"),
        ("🇩🇪", "🇩🇪"),
        ("1️⃣", "1️⃣"),
    ],
)
def test_a_lone_emoji_avatar_is_shown_with_the_colour_presentation_selector(
    stored: str, shown: str
) -> None:
    assert avatar(stored) == shown
    assert is_avatar(shown)  # still exactly one emoji


def test_a_figure_shows_html_in_its_data_and_labels_as_text() -> None:
    frame = pl.DataFrame({"persona": [LINK, "b"], "n": [1, 2]})
    figure = px.bar(frame.to_pandas(), x="persona", y="n", color="persona", title=LINK)

    shown = plain_figure(figure).to_plotly_json()

    text = repr(shown)
    assert "<a href" not in text
    assert "&lt;a href='http://evil.example/x'&gt;persona &amp; co&lt;/a&gt;" in text
    # Our own hover templates keep their markup.
    assert any("<br>" in str(trace.get("hovertemplate", "")) for trace in shown["data"])


def _titles_script() -> None:
    from nexus_core.ui import show

    show.title("![i](http://evil.example/t) www.evil.example")
    show.error("**bold** <http://evil.example/e>")
    show.error("LINE 1: SELECT x\n         ^", verbatim=True)


def test_helpers_send_plain_text_to_streamlit() -> None:
    at = AppTest.from_function(_titles_script).run()

    assert at.title[0].value.startswith("\\!\\[i\\]\\(http\u2060\\:")
    assert at.error[0].value.startswith("\\*\\*bold\\*\\* \\<http\u2060")
    assert at.error[1].value == "```\nLINE 1: SELECT x\n         ^\n```"
