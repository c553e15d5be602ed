"""Navigation by role: only the pages a role may use are registered with ``st.navigation``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from nexus_core.users import UserView, pages_for_role

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"


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
    PageSpec("feedback", "feedback.py", "Feedback", "📝", "Workspace"),
    PageSpec("explorer", "explorer.py", "Feedback explorer", "🔎", "Product"),
    PageSpec("workbench", "workbench.py", "Workbench", "🧪", "Product"),
    PageSpec("dashboard", "dashboard.py", "Dashboard", "📈", "Admin"),
    PageSpec("audit", "audit.py", "Audit", "🧾", "Admin"),
    PageSpec("users", "users.py", "Users", "👥", "Admin"),
    PageSpec("personas", "personas.py", "Personas", "🎭", "Admin"),
)
PAGES_BY_KEY = {p.key: p for p in PAGES}


def page_path(key: str) -> str:
    """The script path of a page, for ``st.switch_page`` and ``st.page_link``."""
    return str(PAGES_DIR / PAGES_BY_KEY[key].file)


def build_navigation(user: UserView) -> st.navigation:  # type: ignore[valid-type]
    """``st.navigation`` with the sections and pages ``user``'s role may open."""
    allowed = set(pages_for_role(user.role))
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
