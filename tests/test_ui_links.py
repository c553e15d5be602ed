"""Page links (``nexus_core.ui.links``): every id is quoted, so a link opens what it names."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from nexus_core.ui import links
from nexus_core.ui.nav import PAGES_BY_KEY

SESSION_ID = "3f1c0e9e-0000-4000-8000-000000000000"


def test_each_builder_links_to_its_page_with_its_parameter() -> None:
    assert links.chat_url(SESSION_ID) == f"/chat?session={SESSION_ID}"
    assert links.explorer_url(42) == "/explorer?item=42"
    assert links.compare_url("r1") == "/compare?run=r1"
    assert links.workbench_url("starter-slo") == "/workbench?notebook=starter-slo"


def test_a_page_link_without_a_query_is_the_bare_page_path() -> None:
    assert links.page_url("dashboard") == "/dashboard"


@pytest.mark.parametrize(
    "build", [links.chat_url, links.explorer_url, links.compare_url, links.workbench_url]
)
@pytest.mark.parametrize("value", ["a b", "x&session=evil", "50%#frag", "é/../?", "+plus"])
def test_ids_are_quoted_and_read_back_unchanged(build, value: str) -> None:  # type: ignore[no-untyped-def]
    url = urlsplit(build(value))
    assert url.fragment == ""  # a "#" in an id does not end the query
    assert "/" not in url.path.strip("/")  # nor does a "/" make another path
    query = parse_qs(url.query)
    assert [values for values in query.values()] == [[value]]  # one parameter, the id as given


def test_every_linked_page_is_a_page_of_the_app() -> None:
    for url in (
        links.chat_url(SESSION_ID),
        links.explorer_url(1),
        links.compare_url("r"),
        links.workbench_url("1"),
    ):
        assert urlsplit(url).path.strip("/") in PAGES_BY_KEY
