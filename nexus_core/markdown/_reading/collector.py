"""What one reading collects while markdown-it-py runs, shared by the rules that feed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

ENV_KEY = "nexus_reading"
MAX_NESTING = 40
# Work allowed to the GFM literal and math models per character before the reading gives up.
BUDGET_PER_CHAR = 16
BUDGET_MIN = 4096

Record = tuple[str, int, int, int, Token]
"""(kind, start, label end or -1, end, token), offsets into the inline token's content."""


class ReadingFailed(Exception):
    """The text cannot be read the way the browser would (too deep, or spans not placeable)."""


@dataclass
class Collector:
    """Spans recorded per inline run, the work budget, and the state of link labels."""

    budget: int
    in_label: int = 0
    label_ends: list[int] = field(default_factory=list)
    inline: dict[int, tuple[list[Token], list[Record]]] = field(default_factory=dict)

    @classmethod
    def for_text(cls, text: str) -> Collector:
        """A collector with the work budget for ``text``."""
        return cls(budget=BUDGET_MIN + BUDGET_PER_CHAR * len(text))

    def record(
        self, state: StateInline, kind: str, start: int, label_end: int, token: Token
    ) -> None:
        """Remember a span that ends at the state's current position."""
        _, records = self.inline.setdefault(id(state.tokens), (state.tokens, []))
        records.append((kind, start, label_end, state.pos, token))

    def spend(self, work: int) -> None:
        """Charge ``work`` steps; running out of budget fails the reading at once."""
        self.budget -= work
        if self.budget < 0:
            raise ReadingFailed("too costly to read")


def collector_of(state: Any) -> Collector:
    """The collector riding in a parser state's env."""
    collector = state.env[ENV_KEY]
    assert isinstance(collector, Collector)
    return collector
