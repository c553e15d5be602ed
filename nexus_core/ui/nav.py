"""Navigation by role: only the pages a role may use are registered with ``st.navigation``."""

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

    The rerun that signs a visitor in (form or cookie) does not carry the page they asked for,
    so the navigation would pick the default page and drop the query; switch back to both.
    """
    remembered = st.session_state.pop(state.RETURN_TO, None)
    if not remembered:
        return
    target, query = remembered
    if target in pages_for(user, env=env) and current.url_path != target:
        st.switch_page(page_path(target), query_params=query)


def show_not_found(path: str) -> None:
    """A friendly 404 for a page that does not exist or that this role may not open."""
    st.title("🧭 Page not found")
    st.write(f"There is no page called “{path}” here, or it is not available to your account.")
    st.page_link(page_path("chat"), label="Back to Chat", icon="💬")


def build_navigation(user: UserView, *, env: str) -> st.navigation:  # type: ignore[valid-type]
    """``st.navigation`` with the sections and pages ``user`` may open (role and features)."""
    allowed = set(pages_for(user, env=env))
    sections: dict[str, list[st.Page]] = {}  # type: ignore[valid-type]
    for spec in PAGES:
        if spec.key not in allowed:
            continue
        page = st.Page(
            str(PAGES_DIR / spec.file),
            title=spec.title,
            icon=spec.icon,
            url_path=spec.key,
            default=spec.key == "chat",
        )
        sections.setdefault(spec.section, []).append(page)
    return st.navigation(sections)
