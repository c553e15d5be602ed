"""Rules that make markdown-it-py read like micromark where that decides links, images or code.

Each was seen in a browser against Streamlit 1.67: micromark ends an unquoted HTML attribute value
at ``/`` and only counts ASCII space inside tags (so ``<b a=http://x>`` is text, and its contents
are Markdown); GFM footnote definitions hold Markdown, not a link destination; remark-math hides
``$...$`` and ``$$`` blocks; micromark has no nesting limit, so deeper text fails the reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markdown_it.common.html_blocks import block_names
from markdown_it.rules_block import StateBlock
from markdown_it.rules_block.fence import make_fence_rule
from markdown_it.rules_inline import StateInline

from nexus_core.markdown._reading.collector import MAX_NESTING, ReadingFailed, collector_of

BlockRule = Callable[[StateBlock, int, int, bool], bool]
InlineRule = Callable[[StateInline, bool], bool]

OPEN_BRACKETS = "nexus_open_brackets"

_FOOTNOTE_START = re.compile(r"\[\^[^\]\[\s]+\]:")
_SPACE = "[ \\t\\n]"
_ATTRIBUTE = (
    f"(?:{_SPACE}+[A-Za-z_:][A-Za-z0-9:._-]*"
    f"(?:{_SPACE}*={_SPACE}*(?:[^\"'=<>`\\x00-\\x20/]+|'[^']*'|\"[^\"]*\"))?)"
)
_OPEN_TAG = f"<[A-Za-z][A-Za-z0-9-]*{_ATTRIBUTE}*{_SPACE}*/?>"
_CLOSE_TAG = f"</[A-Za-z][A-Za-z0-9-]*{_SPACE}*>"
_TAG = re.compile(f"{_OPEN_TAG}|{_CLOSE_TAG}")
_HTML_BLOCK_STARTS = (
    re.compile(r"^<(?:script|pre|style|textarea)(?=[ \t>]|$)", re.IGNORECASE),
    re.compile(r"^<!--"),
    re.compile(r"^<\?"),
    re.compile(r"^<![A-Za-z]"),
    re.compile(r"^<!\[CDATA\["),
    re.compile(r"^</?(?:" + "|".join(block_names) + r")(?=[ \t]|/?>|$)", re.IGNORECASE),
    re.compile(f"^(?:{_OPEN_TAG}|{_CLOSE_TAG})[ \\t]*$"),
)

math_block = make_fence_rule(
    markers=("$",), token_type="math_block", disallow_marker_in_info=("$",), min_markers=2
)
"""``$$`` blocks as remark-math reads them: fenced like code, at least two dollars."""


def depth_checked(rule: BlockRule) -> BlockRule:
    """``rule``, failing the reading where markdown-it-py would stop following the nesting."""

    def checked(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        if not silent and state.level >= MAX_NESTING - 3:
            raise ReadingFailed("nested too deeply")
        return rule(state, start_line, end_line, silent)

    return checked


def footnote_definition(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """A GFM footnote definition: a container whose lines are indented by four."""
    start = state.bMarks[start_line] + state.tShift[start_line]
    if state.is_code_block(start_line):
        return False
    match = _FOOTNOTE_START.match(state.src, start, state.eMarks[start_line])
    if match is None:
        return False
    if silent:
        return True
    after_colon = pos = match.end()
    initial = offset = state.sCount[start_line] + pos - start
    while pos < state.eMarks[start_line] and state.src[pos] in " \t":
        offset += 4 - offset % 4 if state.src[pos] == "\t" else 1
        pos += 1
    saved = (state.bMarks[start_line], state.tShift[start_line], state.sCount[start_line])
    saved_parent = state.parentType
    state.bMarks[start_line] = after_colon
    state.tShift[start_line] = pos - after_colon
    state.sCount[start_line] = offset - initial
    state.blkIndent += 4
    state.parentType = "footnote"  # type: ignore[assignment]
    if state.sCount[start_line] < state.blkIndent:
        state.sCount[start_line] += state.blkIndent
    opening = state.push("footnote_open", "", 1)
    state.md.block.tokenize(state, start_line, end_line)
    state.push("footnote_close", "", -1)
    opening.map = [start_line, state.line]
    state.blkIndent -= 4
    state.parentType = saved_parent
    state.bMarks[start_line], state.tShift[start_line], state.sCount[start_line] = saved
    return True


def html_inline(rule: InlineRule) -> InlineRule:
    """markdown-it's inline HTML rule, refusing tags that micromark would not take as tags."""

    def micromark_html_inline(state: StateInline, silent: bool) -> bool:
        start, count, link_level = state.pos, len(state.tokens), state.linkLevel
        if not rule(state, silent):
            return False
        consumed = state.src[start : state.pos]
        is_tag = consumed[1:2].isalpha() or consumed.startswith("</")
        if is_tag and not _TAG.fullmatch(consumed):
            state.pos = start
            state.linkLevel = link_level
            if len(state.tokens) > count and state.tokens[-1].type == "html_inline":
                state.tokens.pop()
            return False
        return True

    return micromark_html_inline


def html_block(rule: BlockRule) -> BlockRule:
    """markdown-it's HTML block rule, only for lines micromark starts an HTML block with."""

    def micromark_html_block(
        state: StateBlock, start_line: int, end_line: int, silent: bool
    ) -> bool:
        start = state.bMarks[start_line] + state.tShift[start_line]
        line = state.src[start : state.eMarks[start_line]]
        if line.startswith("<") and not any(p.search(line) for p in _HTML_BLOCK_STARTS):
            return False
        return rule(state, start_line, end_line, silent)

    return micromark_html_block


def count_brackets(state: StateInline, silent: bool) -> bool:
    """Count ``[`` that no link took: micromark makes no GFM literal while one is open."""
    char = state.src[state.pos]
    if silent or char not in "[]":
        return False
    open_brackets = getattr(state, OPEN_BRACKETS, 0)
    open_brackets = open_brackets + 1 if char == "[" else max(open_brackets - 1, 0)
    setattr(state, OPEN_BRACKETS, open_brackets)
    state.append_pending(char)
    state.pos += 1
    return True


def math_inline(state: StateInline, silent: bool) -> bool:
    """``$...$`` as remark-math reads it: like a code span, with ``$`` runs as its fences."""
    src, start, maximum = state.src, state.pos, state.posMax
    if src[start] != "$":
        return False
    opened = start
    while opened < maximum and src[opened] == "$":
        opened += 1
    size = opened - start
    at = opened
    while (at := src.find("$", at, maximum)) >= 0:
        run_end = at
        while run_end < maximum and src[run_end] == "$":
            run_end += 1
        collector_of(state).spend(run_end - at + 1)
        if run_end - at == size:
            if not silent:
                token = state.push("math_inline", "math", 0)
                token.content = src[opened:at]
                token.markup = "$" * size
            state.pos = run_end
            return True
        at = run_end
    if not silent:
        state.append_pending("$" * size)
    state.pos = opened
    return True
