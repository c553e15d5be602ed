"""Removing what people typed and models wrote while keeping the numbers.

Erasure (``personal_data``) and retention (``retention``) remove text the same way: the row stays
— with its timestamps, latency, tokens and cost, so counts and sums on the dashboards do not
change — and its text becomes a placeholder that says why it is gone. Text that already holds a
placeholder is left as it is, so removing twice changes (and counts) nothing; erasure goes over
retention's placeholder (see ``ERASED``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import InstrumentedAttribute, Session

ERASED_TEXT: Final = "[erased at the person's request]"
ERASED_TITLE: Final = "Erased session"
REMOVED_TEXT: Final = "[removed by retention policy]"
PLACEHOLDERS: Final = frozenset({ERASED_TEXT, ERASED_TITLE, REMOVED_TEXT})
# Erasure also replaces what retention removed: its rows' other columns (a session's instruction,
# a feedback's context) are cleared with it.
ERASED: Final = frozenset({ERASED_TEXT, ERASED_TITLE})


def is_removed(text: str | None) -> bool:
    """Whether ``text`` is a placeholder for removed content (shown as such, not as words)."""
    return text in PLACEHOLDERS


def replace_text(
    session: Session,
    column: InstrumentedAttribute[str],
    placeholder: str,
    *conditions: ColumnElement[bool],
    keep: frozenset[str] = PLACEHOLDERS,
    **also: Any,
) -> int:
    """Set ``column`` to ``placeholder`` (and the columns in ``also``) in the rows meeting
    ``conditions`` whose text is not one of ``keep`` (by default: not removed yet); returns how
    many rows changed."""
    statement = (
        update(column.class_)
        .where(*conditions, column.not_in(keep))
        .values({column.key: placeholder, **also})
    )
    return session.execute(statement).rowcount
