"""Navigation by role: signed in, only the pages a role may use are registered with
``st.navigation``; signed out, every page is registered hidden (none is run) so a link keeps its
page through sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import streamlit as st

from nexus_core.ui import state
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
    PageSpec("explorer", "explorer.py", "Feedback explorer", "🔎", "Product"),
    PageSpec("workbench", "workbench.py", "Workbench", "🧪", "Product"),
    PageSpec("dashboard", "dashboard.py", "Dashboard", "📈", "Admin"),
    PageSpec("audit", "audit.py", "Audit", "🧾", "Admin"),
    PageSpec("users", "users.py", "Users", "👥", "Admin"),
)
PAGES_BY_KEY = {p.key: p for p in PAGES}
NOT_FOUND_TITLE = "Page not found"


def page_path(key: str) -> str:
    """The script path of a page, for ``st.switch_page`` and ``st.page_link``."""
    return str(PAGES_DIR / PAGES_BY_KEY[key].file)


def requested_path() -> str:
    """The first path segment the browser asked for ("" for the root)."""
    url = st.context.url or ""
    path = urlparse(url).path.strip("/")
    return path.split("/")[-1] if path else ""


def is_known_page(path: str, user: UserView, *, env: str) -> bool:
    """Whether ``path`` is the root or a page this user may open."""
    return path == "" or path in pages_for(user, env=env)


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


def show_not_found(path: str) -> None:
    """A friendly 404 for a page that does not exist or that this role may not open."""
    st.title("🧭 Page not found")
    st.write(f"There is no page called “{path}” here, or it is not available to your account.")
    st.page_link(page_path("chat"), label="Back to Chat", icon="💬")


def build_navigation(user: UserView, *, env: str) -> st.navigation:  # type: ignore[valid-type]
    """``st.navigation`` with the sections and pages ``user`` may open (role and features).

    A path that is no page for this user is registered too, hidden, as the friendly 404 (see
    ``show_not_found``): without a page of its own, ``st.navigation`` would also open Streamlit's
    "Page not found" dialog over it, which only a later rerun from the browser closes.
    """
    allowed = set(pages_for(user, env=env))
    sections: dict[str, list[st.Page]] = {}  # type: ignore[valid-type]
    for spec in PAGES:
        if spec.key in allowed:
            sections.setdefault(spec.section, []).append(_page(spec))
    first_section = next(iter(sections))
    for path in _not_found_paths(user, env=env):
        sections[first_section].append(_not_found_page(path))
    return st.navigation(sections)


def _not_found_paths(user: UserView, *, env: str) -> list[str]:
    """The paths asked for in this browser session that are no page for ``user``: the one asked
    for now and earlier ones (a rerun on a 404 page must find that page again)."""
    paths = set(st.session_state.get(state.NOT_FOUND_PATHS, ()))
    paths.add(requested_path())
    unknown = sorted(p for p in paths if not is_known_page(p, user, env=env))
    st.session_state[state.NOT_FOUND_PATHS] = unknown
    return unknown


def _not_found_page(path: str) -> st.Page:  # type: ignore[valid-type]
    def page_not_found() -> None:
        show_not_found(path)

    return st.Page(page_not_found, title=NOT_FOUND_TITLE, url_path=path, visibility="hidden")


def hide_navigation() -> None:
    """Signed out: no menu in the sidebar (not even the last user's), the address left as it is.

    Every page is registered, hidden and never run, so the page a link names stays the current
    page through the login form; ``build_navigation`` then decides what
    the user may open. Not at an unknown path (it would raise Streamlit's own page-not-found;
    the friendly 404 answers it after sign-in), where the sidebar can keep the last menu.
    """
    path = requested_path()
    if path == "" or path in PAGES_BY_KEY:
        st.navigation([_page(spec) for spec in PAGES], position="hidden")


def _page(spec: PageSpec) -> st.Page:  # type: ignore[valid-type]
    return st.Page(
        str(PAGES_DIR / spec.file),
        title=spec.title,
        icon=spec.icon,
        url_path=spec.key,
        default=spec.key == "chat",
    )
