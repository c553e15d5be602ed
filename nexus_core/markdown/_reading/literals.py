"""GFM bare-URL literals (``www.x``, ``https://x``, ``a@b.c``) as micromark tokenizes them.

micromark-extension-gfm-autolink-literal, as bundled in Streamlit 1.67, makes these tokens while it
reads the text, so a literal's path runs to the next space and can swallow a backtick, leaving an
image that follows outside the code span it would otherwise be in. This is a port of that
tokenizer; the literals themselves always point at http, https or mailto URLs, so only the text
they consume matters. The rules consume the literal as plain text.
"""

from __future__ import annotations

import re
import unicodedata

from markdown_it.rules_inline import StateInline

from nexus_core.markdown._reading.collector import collector_of
from nexus_core.markdown._reading.micromark import OPEN_BRACKETS

_TRAIL_MEMO = "nexus_trail_memo"
# JavaScript's \s, which micromark uses for Unicode whitespace.
_WHITESPACE = set("\t\n\x0b\x0c\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(code) for code in range(0x2000, 0x200B)
}
_LINE_SPACE = set(" \t\n\r")
_ATEXT = set("+-._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_TRAIL = set("!\"')*,.:;?_~")
_PATH_TRAIL = _TRAIL | set("&<]")
_ENTITY_NAME = re.compile(r"&[A-Za-z]+;")
# Where a literal may start: an email after a non-atext character, http after a non-letter,
# www after a space, one of `(*_[]~`, or at the start.
_LITERAL_START = re.compile(
    r"(?<![A-Za-z0-9+\-._/])[A-Za-z0-9+\-._]|(?<![A-Za-z])[hH]|(?:^|(?<=[ \t\n\r(*_\[\]~]))[wW]"
)


def text_until_literal(state: StateInline, silent: bool) -> bool:
    """markdown-it's text rule, also stopping where a GFM literal may start."""
    src, pos = state.src, state.pos
    terminator = state.md.inline.terminator_re.search(src, pos, state.posMax)
    stop = terminator.start() if terminator else state.posMax
    if stop == pos:
        return False
    literal = _LITERAL_START.search(src, pos + 1, stop)
    if literal:
        stop = literal.start()
    if not silent:
        state.append_pending(src[pos:stop])
    state.pos = stop
    return True


def gfm_literal(state: StateInline, silent: bool) -> bool:
    """Consume a GFM literal starting here, as plain text."""
    src, pos, end = state.src, state.pos, state.posMax
    char = src[pos]
    if char not in _ATEXT:
        return False
    collector = collector_of(state)
    # micromark makes no literal inside a link label or after a `[` that is still open.
    if collector.in_label or getattr(state, OPEN_BRACKETS, 0):
        return False
    previous = src[pos - 1] if pos > 0 else None
    stop = _email_end(src, pos, end, previous)
    if stop is None and char in "wW":
        stop = _www_end(state, pos, end, previous)
    if stop is None and char in "hH":
        stop = _protocol_end(state, pos, end, previous)
    if stop is None:
        return False
    collector.spend(stop - pos)
    if not silent:
        state.append_pending(src[pos:stop])
    state.pos = stop
    return True


def _ascii_alpha(char: str | None) -> bool:
    return char is not None and char.isascii() and char.isalpha()


def _ascii_alnum(char: str | None) -> bool:
    return char is not None and char.isascii() and char.isalnum()


def _punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def _email_end(src: str, pos: int, end: int, previous: str | None) -> int | None:
    if previous is not None and (previous == "/" or previous in _ATEXT):
        return None
    at = pos
    while at < end and src[at] in _ATEXT:
        at += 1
    if at >= end or src[at] != "@":
        return None
    at += 1
    has_dot = seen = False
    while at < end:
        char = src[at]
        if char == ".":
            if not _ascii_alnum(src[at + 1] if at + 1 < end else None):
                break
            has_dot = True
        elif char in "-_" or _ascii_alnum(char):
            seen = True
        else:
            break
        at += 1
    return at if seen and has_dot and _ascii_alpha(src[at - 1]) else None


def _www_end(state: StateInline, pos: int, end: int, previous: str | None) -> int | None:
    src = state.src
    if previous is not None and previous not in _LINE_SPACE and previous not in "(*_[]~":
        return None
    if src[pos : pos + 4].lower() != "www." or pos + 4 >= end:
        return None
    domain_end = _domain_end(state, pos, end)
    return None if domain_end is None else _path_end(state, domain_end, end)


def _protocol_end(state: StateInline, pos: int, end: int, previous: str | None) -> int | None:
    src = state.src
    if _ascii_alpha(previous):
        return None
    at = pos
    while at < end and at - pos < 5 and _ascii_alpha(src[at]):
        at += 1
    if src[pos:at].lower() not in ("http", "https") or src[at : at + 3] != "://":
        return None
    at += 3
    char = src[at] if at < end else None
    if char is None or ord(char) < 32 or ord(char) == 127 or char in _WHITESPACE:
        return None
    if _punctuation(char):
        return None
    domain_end = _domain_end(state, at, end)
    return None if domain_end is None else _path_end(state, domain_end, end)


def _domain_end(state: StateInline, pos: int, end: int) -> int | None:
    src = state.src
    underscore_last = underscore_before = seen = False
    at = pos
    while True:
        char = src[at] if at < end else None
        if char is not None and char in "._":
            if _ends_in_trail(state, at, end):
                break
            if char == "_":
                underscore_last = True
            else:
                underscore_before, underscore_last = underscore_last, False
            at += 1
            continue
        if char is None or char in _WHITESPACE or (char != "-" and _punctuation(char)):
            break
        seen = True
        at += 1
    collector_of(state).spend(at - pos + 1)
    return None if underscore_last or underscore_before or not seen else at


def _path_end(state: StateInline, pos: int, end: int) -> int:
    src = state.src
    opened = closed = 0
    at = pos
    while True:
        char = src[at] if at < end else None
        if char == "(":
            opened += 1
        elif char == ")" and closed < opened:
            closed += 1
        elif char is not None and char in _PATH_TRAIL:
            if _ends_in_trail(state, at, end):
                break
            closed += char == ")"
        elif char is None or char in _WHITESPACE:
            break
        at += 1
    collector_of(state).spend(at - pos + 1)
    return at


def _ends_in_trail(state: StateInline, pos: int, end: int) -> bool:
    """True when only trailing punctuation lies between ``pos`` and the end of the literal."""
    memo: dict[int, bool] | None = getattr(state, _TRAIL_MEMO, None)
    if memo is None:
        memo = {}
        setattr(state, _TRAIL_MEMO, memo)
    src = state.src
    walked: list[int] = []
    at = pos
    while True:
        if at in memo:
            result = memo[at]
            break
        char = src[at] if at < end else None
        if char is None or char == "<" or char in _WHITESPACE:
            result = True
            break
        walked.append(at)
        if char in _TRAIL:
            at += 1
        elif char == "&" and (entity := _ENTITY_NAME.match(src, at, end)):
            at = entity.end()
        elif char == "]":
            after = src[at + 1] if at + 1 < end else None
            if after is None or after in "([" or after in _WHITESPACE:
                result = True
                break
            at += 1
        else:
            result = False
            break
    for position in walked:
        memo[position] = result
    collector_of(state).spend(len(walked) + 1)
    return result
