"""Where each inline run's characters sit in the source.

markdown-it-py gives inline tokens only a line range, and their content has container markers and
indentation removed. The block rules that make inline tokens are wrapped to note, while the block
state still knows them, the source offsets of the pieces they join; ``content_offsets`` turns that
into one source offset per content character, checked against the content itself.
"""

from __future__ import annotations

from collections.abc import Callable

from markdown_it.common.utils import MD_TRIM_CHARS
from markdown_it.rules_block import StateBlock
from markdown_it.token import Token

from nexus_core.markdown._reading.collector import ReadingFailed

LOCATION = "nexus_location"
IN_TABLE = "nexus_in_table"

BlockRule = Callable[[StateBlock, int, int, bool], bool]
Locator = Callable[[StateBlock, list[Token]], None]


def located(rule: BlockRule, locate: Locator) -> BlockRule:
    """``rule``, also noting where the inline tokens it makes come from."""

    def with_locations(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        count = len(state.tokens)
        found = rule(state, start_line, end_line, silent)
        if found and not silent:
            locate(state, [t for t in state.tokens[count:] if t.type == "inline" and t.map])
        return found

    return with_locations


def content_offsets(source: str, token: Token) -> list[int]:
    """The source offset of each character of an inline token's content."""
    location = token.meta.get(LOCATION)
    if location is None:
        raise ReadingFailed("inline text without a known source location")
    kind, data = location
    content = token.content
    if kind == "cell":
        offsets = list(data)
        if "".join(source[at] for at in offsets) != content:
            raise ReadingFailed("table cell not found in the source")
        return offsets
    offsets = []
    chunks: list[str] = []
    for pad, first, last in data:
        offsets.extend([first] * pad)
        offsets.extend(range(first, last))
        chunks.append(" " * pad + source[first:last])
    raw = "".join(chunks)
    lead = len(raw) - len(raw.lstrip(MD_TRIM_CHARS))
    if raw[lead : lead + len(content)] != content:
        raise ReadingFailed("inline text not found in the source")
    return offsets[lead : lead + len(content)]


def locate_lines(state: StateBlock, tokens: list[Token]) -> None:
    """Paragraph or setext heading lines, as ``StateBlock.getLines`` joins them."""
    for token in tokens:
        assert token.map is not None
        token.meta[LOCATION] = ("lines", _line_segments(state, token.map[0], token.map[1]))


def locate_heading(state: StateBlock, tokens: list[Token]) -> None:
    """An ATX heading's text, found after its opening hashes."""
    for token in tokens:
        assert token.map is not None
        line = token.map[0]
        low, high = state.bMarks[line] + state.tShift[line], state.eMarks[line]
        while low < high and state.src[low] == "#":
            low += 1
        at = state.src.find(token.content, low, high) if token.content else low
        if at >= 0:
            token.meta[LOCATION] = ("lines", [(0, at, at + len(token.content))])


def locate_table(state: StateBlock, tokens: list[Token]) -> None:
    """Table cells, split the way markdown-it splits a row."""
    cells: dict[int, list[list[int]]] = {}
    used: dict[int, int] = {}
    for token in tokens:
        assert token.map is not None
        line = token.map[0]
        if line not in cells:
            start = state.bMarks[line] + state.tShift[line]
            cells[line] = _table_cells(state.src, start, state.eMarks[line])
        index = used.get(line, 0)
        used[line] = index + 1
        token.meta[LOCATION] = ("cell", cells[line][index] if index < len(cells[line]) else [])
        token.meta[IN_TABLE] = True


def _line_segments(state: StateBlock, begin: int, end: int) -> list[tuple[int, int, int]]:
    """The pieces ``getLines`` joins: (spaces left of a split tab, first offset, end offset)."""
    segments = []
    for line in range(begin, end):
        indent = 0
        line_start = first = state.bMarks[line]
        last = state.eMarks[line] + 1 if line + 1 < end else state.eMarks[line]
        while first < last and indent < state.blkIndent:
            char = state.src[first]
            if char == "\t":
                indent += 4 - (indent + state.bsCount[line]) % 4
            elif char == " " or first - line_start < state.tShift[line]:
                indent += 1
            else:
                break
            first += 1
        segments.append((max(indent - state.blkIndent, 0), first, last))
    return segments


def _table_cells(src: str, low: int, high: int) -> list[list[int]]:
    """Offsets of each cell's characters, as markdown-it's ``escapedSplit`` splits them."""
    while low < high and src[low] in MD_TRIM_CHARS:
        low += 1
    while high > low and src[high - 1] in MD_TRIM_CHARS:
        high -= 1
    columns: list[list[int]] = []
    current: list[int] = []
    escaped = False
    for at in range(low, high):
        char = src[at]
        if char == "|" and not escaped:
            columns.append(current)
            current = []
        else:
            if char == "|":
                current.pop()  # the backslash of an escaped pipe is dropped
            current.append(at)
        escaped = char == "\\"
    columns.append(current)
    if columns and not columns[0]:
        columns.pop(0)
    if columns and not columns[-1]:
        columns.pop()
    return [_trimmed(src, column) for column in columns]


def _trimmed(src: str, column: list[int]) -> list[int]:
    """A cell's offsets without the trimmed characters at either end."""
    start, stop = 0, len(column)
    while start < stop and src[column[start]] in MD_TRIM_CHARS:
        start += 1
    while stop > start and src[column[stop - 1]] in MD_TRIM_CHARS:
        stop -= 1
    return column[start:stop]
