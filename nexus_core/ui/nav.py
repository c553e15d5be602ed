"""Navigation by role: signed in, only the pages a role may use are registered with
``st.navigation``; signed out, every page is registered hidden (none is run) so a link keeps its
page through sign-in."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import streamlit as st

from nexus_core.ui import state
from nexus_core.ui.show import plain
from nexus_core.users import UserView, pages_for

# Not "pages/": Streamlit treats a folder of that name as the legacy multipage layout and serves
# its scripts (and a navigation listing them) before st.navigation runs.
PAGES_DIR = Path(__file__).resolve().parents[2] / "app_pages"


@dataclass(frozen=True)
class PageSpec:
    """One screen of the app."""

    key: str
    file: str
    title: str
    icon: str
    section: str


PAGES: tuple[PageSpec, ...] = (
    PageSpec("chat", "chat.py", "Chat", "💬", "Workspace"),
    PageSpec("compare", "compare.py", "Compare", "⚖️", "Workspace"),
    PageSpec("feedback", "feedback.py", "Feedback", "📝", "Workspace"),
    PageSpec("personas", "personas.py", "Personas", "🎭", "Workspace"),
    PageSpec("usage", "usage.py", "Usage", "💰", "Workspace"),
    PageSpec("explorer", "explorer.py", "Feedback explorer", "🔎", "Product"),
    PageSpec("workbench", "workbench.py", "Workbench", "🧪", "Product"),
    PageSpec("boards", "boards.py", "Boards", "📌", "Product"),
    PageSpec("evals", "evals.py", "Evals", "🎯", "Product"),
    PageSpec("dashboard", "dashboard.py", "Dashboard", "📈", "Admin"),
    PageSpec("alerts", "alerts.py", "Alerts", "🚨", "Admin"),
    PageSpec("alert_history", "alert_history.py", "Alert history", "🕰️", "Admin"),
    PageSpec("audit", "audit.py", "Audit", "🧾", "Admin"),
    PageSpec("users", "users.py", "Users", "👥", "Admin"),
)
PAGES_BY_KEY = {p.key: p for p in PAGES}
# Chat is the default page, served at the root; Streamlit still wants a unique name for it.
ROOT_URL_PATH = "home"
NOT_FOUND_TITLE = "Page not found"
SCHEME_AND_HOST = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")


def page_path(key: str) -> str:
    """The script path of a page, for ``st.switch_page`` and ``st.page_link``."""
    return str(PAGES_DIR / PAGES_BY_KEY[key].file)


def requested_path() -> str:
    """The page address the browser asked for, decoded as Streamlit reads it ("" for the root)."""
    return address_path(st.context.url or "")


def address_path(url: str) -> str:
    """The decoded page path of ``st.context.url`` ("" for the root).

    Streamlit builds ``st.context.url`` from the browser's address with the current page's path
    taken off and put back, but it takes off the page's decoded path from the encoded address:
    once the 404 page of ``/caf%C3%A9`` is current, the URL reads ``/caf%C3%A9/café``. Left so,
    the next run would ask for a page called "café/café" and Streamlit would fall back to the
    root, losing the address; the decoded copy is dropped here.
    """
    path = SCHEME_AND_HOST.sub("", url).strip("/")  # not urlparse: a decoded "#" is no fragment
    encoded, _, decoded = path.rpartition("/")
    last = encoded.rpartition("/")[2]
    if last != decoded and unquote(last) == decoded:
        path = encoded
    return unquote(path).strip("/")


def remember_requested_page() -> None:
    """Before sign-in: note which page (and query, e.g. ``?notebook=7``) the visitor asked for."""
    path = requested_path()
    if path in PAGES_BY_KEY:
        st.session_state[state.RETURN_TO] = (path, st.query_params.to_dict())


def return_to_requested_page(current: st.Page, user: UserView, *, env: str) -> None:  # type: ignore[valid-type]
    """After sign-in: go to the page asked for before it, if this user may open it.

    A run that signs a visitor in can land on the default page and drop the query; switch back to
    both. Not in the run that has just signed someone in through the form: switching would cut
    that run short before the login cookie's hand-off frame reaches the browser; the next run
    switches instead, if the user is still on the page it was deferred on.
    """
    remembered = st.session_state.get(state.RETURN_TO)
    deferred_on = st.session_state.pop(state.RETURN_DEFERRED_ON, None)
    if not remembered:
        return
    target, query = remembered
    if (
        target not in pages_for(user, env=env)
        or current.url_path == target
        or (deferred_on is not None and deferred_on != current.url_path)  # gone elsewhere since
    ):
        st.session_state.pop(state.RETURN_TO, None)
        return
    if st.session_state.get(state.JUST_SIGNED_IN):
        st.session_state[state.RETURN_DEFERRED_ON] = current.url_path
        return
    st.session_state.pop(state.RETURN_TO, None)
    st.switch_page(page_path(target), query_params=query)


def show_not_found(path: str, home: st.Page) -> None:  # type: ignore[valid-type]
    """A friendly 404 for a page that does not exist or that this role may not open, with a
    link to ``home`` (the page at the root: Chat)."""
    st.title("🧭 Page not found")
    st.write(
        f"There is no page called “{plain(path)}” here, or it is not available to your account."
    )
    st.page_link(home, label="Back to Chat", icon="💬")


def build_navigation(user: UserView, *, env: str) -> st.navigation:  # type: ignore[valid-type]
    """``st.navigation`` with the sections and pages ``user`` may open (role and features).

    The address is always one of them: the root opens Chat, and a path that is no page of this
    user's opens the friendly 404 at that same address.
    """
    allowed = set(pages_for(user, env=env))
    sections: dict[str, list[st.Page]] = {}  # type: ignore[valid-type]
    for spec in PAGES:
        if spec.key in allowed:
            sections.setdefault(spec.section, []).append(_page(spec))
    home = sections[PAGES_BY_KEY["chat"].section][0]
    last = list(sections.values())[-1]
    last.extend(_catch_all_pages(lambda path: path in allowed, home))
    # Every page listed: a collapsed menu ("View 3 more") hid the admin pages behind a click.
    return st.navigation(sections, expanded=True)


def hide_navigation() -> None:
    """Signed out: no menu in the sidebar (not even the last user's), the address left as it is.

    Every page is registered, hidden and never run, so the page a link names stays the current
    page through the login form and the cookie's reruns; ``build_navigation`` then decides what
    the user may open (an unknown address keeps its hidden 404 page until then).
    """
    pages = [_page(spec, visibility="hidden") for spec in PAGES]
    pages += _catch_all_pages(lambda path: path in PAGES_BY_KEY, pages[0])
    st.navigation(pages, position="hidden")


def _page(spec: PageSpec, *, visibility: str = "visible") -> st.Page:  # type: ignore[valid-type]
    default = spec.key == "chat"
    return st.Page(
        str(PAGES_DIR / spec.file),
        title=spec.title,
        icon=spec.icon,
        url_path=ROOT_URL_PATH if default else spec.key,
        default=default,
        visibility=visibility,  # type: ignore[arg-type]
    )


def _catch_all_pages(is_page: Callable[[str], bool], home: st.Page) -> list[st.Page]:  # type: ignore[valid-type]
    """The hidden pages that answer the root and an unknown address.

    Streamlit serves its default page (Chat) at ``/`` only, so ``/chat`` would show Streamlit's
    own "Page not found" over it: a hidden page runs the same script at ``/chat``. An address
    that is no page gets a hidden page of its own, so the friendly 404 answers it without
    Streamlit's dialog and the address (and a reload) stays where it was.
    """
    chat = PAGES_BY_KEY["chat"]
    pages = [
        st.Page(
            str(PAGES_DIR / chat.file),
            title=chat.title,
            icon=chat.icon,
            url_path=chat.key,
            visibility="hidden",
        )
    ]
    path = requested_path()
    # No surrounding blanks in a page's address (Streamlit strips them): such an address falls
    # back to Chat under Streamlit's own "page not found" notice.
    if path and path != ROOT_URL_PATH and path == path.strip() and not is_page(path):
        pages.append(_not_found_page(path, home))
    return pages


def _not_found_page(path: str, home: st.Page) -> st.Page:  # type: ignore[valid-type]
    """The hidden page that answers the unknown address ``path`` with the friendly 404.

    Streamlit refuses an ``url_path`` with a "/" because its HTML would load its scripts relative
    to it; ``nexus_core.web.nested_addresses`` serves that HTML with the root as its base, so a
    nested address (``/a/b``) gets its 404 page too: the path is set after Streamlit's check (a
    page is found by, and hashed from, ``_url_path``; pinned by ``tests/test_ui_nav.py``).
    """
    page = st.Page(
        lambda: show_not_found(path, home),
        title=NOT_FOUND_TITLE,
        icon="🧭",
        url_path=path.replace("/", "_"),
        visibility="hidden",
    )
    if "/" in path:
        page._url_path = path  # see above
    return page
