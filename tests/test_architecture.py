"""The layering rules of the README's Architecture section that a machine can check.

Function size and complexity are ruff's (C901, PLR0915 in pyproject.toml, run by `make lint`):
a module may be as long as its concept needs; pages and the frame stay thin.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.constants import ROOT

CORE = ROOT / "nexus_core"
UI = CORE / "ui"
PAGE_MAX_LINES = 120
APP_MAX_LINES = 100


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_in_nexus_core_outside_ui_imports_streamlit() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in CORE.rglob("*.py")
        if "ui" not in path.relative_to(CORE).parts
        and any(
            m == "streamlit" or m.startswith(("streamlit.", "streamlit_"))
            for m in imported_modules(path)
        )
    ]
    assert offenders == []


def test_pages_reach_the_core_only_through_services_not_sql_or_http() -> None:
    forbidden = ("sqlalchemy", "httpx", "duckdb", "nexus_core.db")
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.startswith(forbidden)
        )
        for path in (ROOT / "app_pages").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pages_and_the_frame_stay_thin() -> None:
    too_long = {}
    for path in (ROOT / "app_pages").glob("*.py"):
        if len(path.read_text().splitlines()) > PAGE_MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = PAGE_MAX_LINES
    if len((ROOT / "app.py").read_text().splitlines()) > APP_MAX_LINES:
        too_long["app.py"] = APP_MAX_LINES
    assert too_long == {}


def _view_imports(path: Path) -> list[str]:
    """The ``*_view`` modules that ``path`` imports, however the import is written."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.rsplit(".", 1)[-1] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.rsplit(".", 1)[-1])
            names.update(alias.name for alias in node.names)  # from nexus_core.ui import x_view
    return sorted(name for name in names if name.endswith("_view") and name != path.stem)


def test_no_view_imports_another_view() -> None:
    """What two views share lives in ``nexus_core/ui/widgets/``, not in one of them."""
    offenders = {path.name: _view_imports(path) for path in UI.rglob("*_view.py")}
    assert {name: views for name, views in offenders.items() if views} == {}


def test_the_view_import_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    view = tmp_path / "one_view.py"
    for line in (
        "from nexus_core.ui.chat_view import open_session",
        "from nexus_core.ui import chat_view",
        "import nexus_core.ui.chat_view",
    ):
        view.write_text(line + "\n")
        assert _view_imports(view) == ["chat_view"], line


# --- every place text is shown goes through the safe renderer (nexus_core/ui/show.py) -----------

UI_SOURCES = (
    ROOT / "app.py",
    *sorted((ROOT / "app_pages").glob("*.py")),
    *sorted(UI.rglob("*.py")),
)
# What Streamlit 1.67 renders as Markdown, checked in Chromium (README, "Safe rendering").
MARKDOWN_BODIES = frozenset(
    {"title", "header", "subheader", "caption", "markdown", "write", "error", "warning", "info",
     "success", "toast", "badge", "latex"}
)  # fmt: skip
MARKDOWN_LABELS = frozenset(
    {"button", "download_button", "link_button", "form_submit_button", "page_link", "checkbox",
     "toggle", "text_input", "text_area", "number_input", "slider", "select_slider", "selectbox",
     "multiselect", "radio", "segmented_control", "pills", "date_input", "time_input",
     "datetime_input", "color_picker", "file_uploader", "camera_input", "audio_input", "expander",
     "popover", "status", "spinner", "dialog", "metric", "progress", "tabs", "feedback"}
)  # fmt: skip
MARKDOWN_OPTIONS = frozenset({"radio", "segmented_control", "pills", "select_slider"})
# Text shown by these is checked whatever it is: each use needs a reviewed reason.
ALWAYS_REVIEWED = frozenset(
    {"html", "table", "iframe", "LinkColumn", "ImageColumn", "plotly_chart"}
)
LABEL_KEYWORDS = ("label", "body", "text", "value", "delta", "title", "help")
# Loggers, and the app context whose services have methods such as ``progress``.
NOT_STREAMLIT = frozenset({"log", "logger", "logging", "ctx"})
SAFE_HELPERS = frozenset(
    {"plain", "escape_markdown", "safe_markdown", "as_code_block", "plain_figure", "len"}
)
NAMED_CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*")
# A format spec a str would refuse: the value is a number or a date.
NUMERIC_OR_DATE_SPEC = re.compile(r"[bcdeEfFgGnoxX%]$|[,_]|%[A-Za-z]")
REVIEWED: dict[tuple[str, str, str], str] = {
    ("nexus_core/ui/widgets/persona.py", "persona_header", "html"): (
        "the persona's name is html.escape'd; its colour is validated as #RRGGBB by the service"
    ),
    ("nexus_core/ui/audit_view.py", "audit_table", "LinkColumn"): (
        "the links are app paths built by target_link from quoted ids, shown as 'Open ↗'"
    ),
    ("nexus_core/ui/dashboard_view.py", "synthetic_panel", "metric"): (
        "constant labels; values are counts, a rate and a cost formatted here from numbers"
    ),
    ("nexus_core/ui/dashboard_view.py", "_tile_row", "metric"): (
        "labels, values, changes and help come from analytics.dashboard_tiles, which formats "
        "them from numbers and its own constant texts; the change must stay unescaped for "
        "Streamlit to read its sign"
    ),
    ("nexus_core/ui/notebook_view.py", "_toolbar", "button"): (
        "label (a Material icon) and help come from the constant table of cell actions"
    ),
    ("nexus_core/ui/workbench_view.py", "empty_state", "markdown"): (
        "one line per starter notebook from the code's own starter table (_starter_line), "
        "its title and description through plain"
    ),
    ("nexus_core/ui/workbench_view.py", "schema_panel", "markdown"): (
        "view and column names come from the code's own schema table (view_schemas)"
    ),
    ("nexus_core/ui/auth.py", "_frame", "iframe"): (
        "loads the app's own cookie hand-off or clearing URL (session_cookie), built from a "
        "random one-time code; the frame shows no text"
    ),
    ("nexus_core/ui/alerts_view.py", "history_table", "LinkColumn"): (
        "the links are app paths built from an alert's id, shown as 'Open ↗'"
    ),
    ("nexus_core/ui/dashboard_view.py", "feedback_panel", "LinkColumn"): (
        "the links are app paths built from a session UUID or a feedback id, shown as 'Open ↗'"
    ),
}


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names - {"st"}


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def is_safe_text(node: ast.expr | None) -> bool:
    """Whether ``node`` can only be a literal, a named constant or text made safe by a helper."""
    if node is None or isinstance(node, ast.Constant):
        return True
    for kind, check in SAFE_TEXT_CHECKS.items():
        if isinstance(node, kind):
            return check(node)
    return False


def _safe_formatted(node: ast.FormattedValue) -> bool:
    spec = ast.unparse(node.format_spec)[2:-1] if node.format_spec else ""
    numeric = node.conversion == -1 and bool(NUMERIC_OR_DATE_SPEC.search(spec))
    return numeric or is_safe_text(node.value)


def _safe_call(node: ast.Call) -> bool:
    if _last_name(node.func) in SAFE_HELPERS:
        return True
    if isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        arguments = [*node.args, *(k.value for k in node.keywords)]
        return is_safe_text(node.func.value) and all(map(is_safe_text, arguments))
    return False


SAFE_TEXT_CHECKS: dict[type, Callable[[Any], bool]] = {
    ast.Name: lambda node: bool(NAMED_CONSTANT.fullmatch(_last_name(node) or "")),
    ast.Attribute: lambda node: bool(NAMED_CONSTANT.fullmatch(_last_name(node) or "")),
    ast.JoinedStr: lambda node: all(is_safe_text(value) for value in node.values),
    ast.FormattedValue: _safe_formatted,
    ast.Call: _safe_call,
    ast.BinOp: lambda node: (
        isinstance(node.op, ast.Add) and is_safe_text(node.left) and is_safe_text(node.right)
    ),
    ast.IfExp: lambda node: is_safe_text(node.body) and is_safe_text(node.orelse),
    ast.BoolOp: lambda node: all(map(is_safe_text, node.values)),
    # a lookup in a named table of our own texts
    ast.Subscript: lambda node: is_safe_text(node.value),
    ast.List: lambda node: all(map(is_safe_text, node.elts)),
    ast.Tuple: lambda node: all(map(is_safe_text, node.elts)),
    ast.Set: lambda node: all(map(is_safe_text, node.elts)),
    ast.Starred: lambda node: is_safe_text(node.value),
}


def _safe_options(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Call) and _last_name(node.func) in ("list", "tuple", "range"):
        return _last_name(node.func) == "range" or all(map(_safe_options, node.args))
    return is_safe_text(node)


def _safe_format_func(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Lambda):
        return is_safe_text(node.body)
    if isinstance(node, ast.Attribute) and node.attr == "__getitem__":
        return is_safe_text(node.value)
    return _last_name(node) in SAFE_HELPERS if node is not None else False


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == keyword:
            return item.value
    return call.args[index] if len(call.args) > index else None


def _shown_texts(call: ast.Call, name: str) -> list[ast.expr | None]:
    """The arguments of a Markdown-rendering call that reach the screen as Markdown."""
    if name == "write":
        return list(call.args)
    if name == "metric":
        return [
            _argument(call, 0, "label"),
            _argument(call, 1, "value"),
            _argument(call, 2, "delta"),
        ]
    if name == "page_link":
        return [_argument(call, 1, "label")]
    if name == "progress":
        return [_argument(call, 1, "text")]
    if name == "dialog":
        return [_argument(call, 0, "title")]
    first = "body" if name in MARKDOWN_BODIES else "label"
    return [_argument(call, 0, first)]


def _problems(call: ast.Call, name: str) -> list[str]:
    problems = []
    first = call.args[0] if call.args else None
    if name in ALWAYS_REVIEWED and (name != "plotly_chart" or not is_safe_text(first)):
        problems.append("needs a reviewed reason")
    if name in MARKDOWN_BODIES | MARKDOWN_LABELS:
        problems += [ast.unparse(t) for t in _shown_texts(call, name) if not is_safe_text(t)]
    options = _argument(call, 1, "options")
    if (
        name in MARKDOWN_OPTIONS
        and not _safe_options(options)
        and not _safe_format_func(_argument(call, 99, "format_func"))
    ):
        problems.append("options shown as Markdown: " + ast.unparse(options or call.func))
    for item in call.keywords:
        if item.arg == "help" and not is_safe_text(item.value):
            problems.append("help=" + ast.unparse(item.value))
        if item.arg == "unsafe_allow_html" and not (
            isinstance(item.value, ast.Constant) and item.value.value is False
        ):
            problems.append("unsafe_allow_html")
        if item.arg == "avatar" and not (
            is_safe_text(item.value) or _last_name(getattr(item.value, "func", None)) == "avatar"
        ):
            problems.append("avatar=" + ast.unparse(item.value))
    return problems


def _called_names(func: ast.expr) -> list[ast.Attribute]:
    if isinstance(func, ast.IfExp):  # (st.success if ok else st.error)(text)
        return _called_names(func.body) + _called_names(func.orelse)
    return [func] if isinstance(func, ast.Attribute) else []


def unsafe_calls(source: str, path: str = "snippet.py") -> list[str]:
    """Markdown-rendering Streamlit calls in ``source`` whose text is not known to be safe."""
    tree = ast.parse(source)
    imported = _imported_names(tree)
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for func in _called_names(node.func):
            receiver = _base_name(func.value)
            if receiver in imported or receiver in NOT_STREAMLIT:
                continue  # one of our modules (show.title, workbench_view.header) or a logger
            within = next(
                (f.name for f in functions if f.lineno <= node.lineno <= (f.end_lineno or 0)),
                "<module>",
            )
            if (path, within, func.attr) in REVIEWED:
                continue
            found += [
                f"{path}:{node.lineno} {func.attr}() in {within}: {problem}"
                for problem in _problems(node, func.attr)
            ]
    return found


def test_every_text_shown_is_a_literal_or_made_safe() -> None:
    offenders = [
        problem
        for path in UI_SOURCES
        for problem in unsafe_calls(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert offenders == []


def test_each_reviewed_exception_still_exists() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in UI_SOURCES}
    stale = [
        key
        for key in REVIEWED
        if key[0] not in sources or f"def {key[1]}(" not in sources[key[0]]
        or f".{key[2]}(" not in sources[key[0]]
    ]  # fmt: skip
    assert stale == []


@pytest.mark.parametrize(
    "snippet",
    [
        "st.title(chat.title)",
        "st.caption(f'By {name}')",
        "st.sidebar.caption(description)",
        "st.button(label, key='k')",
        "left.metric('Assignee', item.assignee)",
        "st.metric('A', 1, delta)",
        "st.radio('Best', [*letters, NO_BEST])",
        "st.text_input('Name', help=persona.description)",
        "st.markdown('**x**', unsafe_allow_html=True)",
        "st.expander(f'Conversation: {title}')",
        "st.tabs([name, 'Other'])",
        "(st.success if ok else st.error)(message)",
        "st.plotly_chart(figure)",
        "st.chat_message('assistant', avatar=persona.avatar)",
        "st.html(page)",
        "st.column_config.LinkColumn('Open')",
        "bar.progress(0.5, text=label)",
        "st.write(f'Nothing at {path}')",
        "st.error(FRIENDLY.format(reference=reference))",
        "st.caption(f'{title!r:d}')",
        "st.table(rows)",
    ],
)
def test_the_walk_finds_unsafe_text(snippet: str) -> None:
    assert unsafe_calls(f"import streamlit as st\n{snippet}\n") != []


@pytest.mark.parametrize(
    "snippet",
    [
        "st.title('💬 Chat')",
        "st.caption(f'{count:,} rows in {elapsed:.0f} ms on {day:%Y-%m-%d}')",
        "show.title(chat.title)",
        "st.button(plain(label), key='k')",
        "st.radio('Best', letters, format_func=plain)",
        "st.radio('Window', WINDOWS, format_func=WINDOW_LABELS.__getitem__)",
        "st.segmented_control('Variants', list(range(2, 5)))",
        "log.error(message)",
        "st.error(FRIENDLY.format(reference=plain(reference)))",
        "st.markdown(f'**{plain(name)}** · {ROLE}')",
        "st.chat_message('assistant', avatar=show.avatar(persona.avatar))",
        "st.text(instruction)",
        "st.code(sql)",
        "st.dataframe(rows)",
        "st.selectbox('Persona', names)",
        "st.plotly_chart(plain_figure(figure))",
    ],
)
def test_the_walk_accepts_literals_and_helpers(snippet: str) -> None:
    source = f"import streamlit as st\nfrom nexus_core.ui import show\n{snippet}\n"
    assert unsafe_calls(source) == []
