"""What the workbench leaves out of audit details for everyone but admins: text people wrote for
themselves, which the audit trail carries — session titles (the first line of a conversation),
private notebook titles, board and pin titles, test-set names, and what was asked of Ask — the
question, the SQL drafted from it (which repeats its values) and the errors sent back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

PRIVATE_DETAILS: Final[dict[str, frozenset[str]]] = {
    "session.": frozenset({"title", "from", "to"}),
    "notebook.": frozenset({"title"}),
    "board.": frozenset({"title", "pin"}),
    "test_set.": frozenset({"name", "test_set"}),
    "ask.": frozenset({"question", "error", "sql", "title", "note"}),
}


def public_audit_details(actions: Sequence[str], details: Sequence[Any]) -> list[Any]:
    """Audit details without the titles and names people wrote (``PRIVATE_DETAILS``)."""
    return [_public_details(action, d) for action, d in zip(actions, details, strict=True)]


def _public_details(action: str, details: Any) -> Any:
    if not isinstance(details, dict):
        return details
    for prefix, keys in PRIVATE_DETAILS.items():
        if action.startswith(prefix):
            return {k: v for k, v in details.items() if k not in keys}
    return details
