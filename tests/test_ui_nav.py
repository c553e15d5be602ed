"""Which page address a run asks for (``nexus_core.ui.nav.address_path``), read from Streamlit's
``st.context.url``; the browser half (the 404 keeps its address through reloads) is in
tests/browser/test_addresses_journey.py."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.ui.nav import address_path

APP = "http://127.0.0.1:8501"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (APP, ""),
        (f"{APP}/", ""),
        (f"{APP}/dashboard", "dashboard"),
        (f"{APP}/no-such-page", "no-such-page"),
        (f"{APP}/caf%C3%A9%20menu", "café menu"),
        (f"{APP}/a/b", "a/b"),  # nested: no page can answer it
        (f"{APP}/x/x", "x/x"),  # a repeated plain segment is what was typed
    ],
)
def test_the_address_is_the_decoded_path_of_the_url(url: str, path: str) -> None:
    assert address_path(url) == path


@pytest.mark.parametrize(
    ("typed", "path"),
    [
        ("caf%C3%A9%20menu", "café menu"),
        ("100%25", "100%"),
        ("a%23b", "a#b"),  # a decoded "#" is part of the path, not a fragment
        ("%2541", "%41"),
    ],
)
def test_an_escaped_address_reads_the_same_once_its_page_is_current(typed: str, path: str) -> None:
    # Streamlit takes the current page's decoded path off the encoded address, which fails, and
    # then puts it back: "/caf%C3%A9%20menu/café menu". Read as typed, not as a nested path.
    assert address_path(f"{APP}/{typed}/{path}") == path


def _nested_not_found_script() -> None:
    import streamlit as st

    from nexus_core.ui import nav

    home = st.Page(lambda: st.title("Home"), title="Home", default=True)
    page = nav._not_found_page("dashboard/x", home)
    st.navigation([home, page], position="hidden")  # Streamlit takes the nested address
    st.text(f"url_path={page.url_path}")


def test_a_nested_unknown_address_gets_a_404_page_at_that_very_address() -> None:
    # Streamlit refuses a "/" in st.Page's url_path; the page gets it afterwards, and
    # st.navigation finds a page by url_path (the browser half: test_addresses_journey.py).
    at = AppTest.from_function(_nested_not_found_script).run()

    assert not at.exception
    assert [t.value for t in at.text] == ["url_path=dashboard/x"]
