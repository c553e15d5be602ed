"""Markdown from users and models, made safe to show with ``st.markdown`` (OWASP LLM05).

What Streamlit 1.67 already does with ``unsafe_allow_html=False``: raw HTML is shown as text, and
``javascript:``/``vbscript:`` hrefs become ``#``. What it does not do: it loads every Markdown
image from any host (an image URL can carry chat data out the moment the message is shown), and
it keeps ``data:`` and other non-web links clickable.

``safe_markdown`` therefore keeps links only for http, https and mailto, and keeps images only
when they are http(s) and their host is allow-listed; any other link shows its text followed by
the URL as inline code, and any other image becomes a plain ``[🖼 alt](url)`` link (or text).
Everything else is returned byte for byte, so code, tables, math and Streamlit's own syntax still
render as before.

How, and why this way:

1. The text is dedented and stripped exactly as ``st.markdown`` does, since that changes what is
   code (an indented line stops being a code block). Without ``[`` or ``<`` Markdown can make no
   link or image, so such text is returned at once.
2. It is parsed with markdown-it-py (``nexus_core.markdown._reading``), tuned to read Markdown the
   way Streamlit's browser side (micromark with GFM) does. Every difference that was seen to
   decide links, images or code in a real browser is modelled there rather than guessed at: GFM
   bare-URL literals (which swallow backticks), HTML tags with an unquoted ``/``, footnote
   definitions, and ``$`` math, which Streamlit turns on by a heuristic. Texts are read in each
   way the browser might: with the GFM models and, as a second opinion, without them; with math
   and without it when there is a ``$``.
3. Each reading gives the source span of every link, image and autolink, so only disallowed
   spans are rewritten and everything around them stays byte for byte.
4. As a last guard, a ``![`` outside code that is not an allowed image gets a word joiner
   (U+2060) after the ``!``, so no reading at all can make an image of it.
5. Any reading that changes the text starts the round again; the result is returned once every
   reading finds nothing to change. Text nested deeper than the parser follows, text whose spans
   cannot be placed, and text that keeps changing (``MAX_PASSES`` rounds) is shown whole as a code
   block instead: visible, never interpreted.

The work is linear in the text: markdown-it-py is, the GFM literal and math models have a work
budget per character, and running out of it fails the reading (so the text becomes a code block).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass

from markdown_it.token import Token

from nexus_core.markdown._reading import InlineSpan, Reading, ReadingFailed, read_markdown

IMAGE_HOSTS_DEFAULT: tuple[str, ...] = ()
"""Hosts whose images may load in chat messages; none by default."""

ALLOWED_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
ALLOWED_IMAGE_SCHEMES = frozenset({"http", "https"})
IMAGE_MARK = "🖼"
WORD_JOINER = "\u2060"
MAX_PASSES = 4
"""Rounds through all readings before a text that keeps changing is shown as code."""

# What a browser ignores in a URL: tab and newlines anywhere, C0 controls and space at the ends.
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_TRIMMED = "".join(chr(code) for code in range(0x21))
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_WEB_AUTHORITY = re.compile(r"(?i)https?://([^/?#\\]*)(?:[/?#]|$)")
_PORT = re.compile(r":[0-9]*")
_BACKTICK_RUN = re.compile(r"`+")
_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_ENDINGS = re.compile(r"\r\n?")
_EXTRAS_HINT = re.compile(r"(?i)www\.|https?://|@|\[\^")
# Characters without which Markdown can make no link and no image.
_LINK_MARKERS = ("[", "<")


def safe_markdown(text: str, *, allowed_image_hosts: Collection[str] = IMAGE_HOSTS_DEFAULT) -> str:
    """Markdown that shows ``text`` with only web/mail links and allow-listed images left live."""
    hosts = frozenset(host.strip().lower() for host in allowed_image_hosts)
    original = _prepare(text)
    if not any(marker in original for marker in _LINK_MARKERS):
        return original
    readings = _reading_kinds(original)
    current = original
    # Read the text every way the browser might; a reading that changes the text starts the
    # round again, so the result is what every reading found safe.
    settled: set[tuple[bool, bool]] = set()
    try:
        for step in range(MAX_PASSES * len(readings)):
            kind = readings[step % len(readings)]
            if kind in settled:
                continue
            reading = read_markdown(current, math=kind[0], gfm_extras=kind[1])
            rewritten = _rewrite(current, reading, hosts)
            if rewritten == current and kind == readings[0]:
                rewritten = _guard_image_starts(current, reading, hosts)
            rewritten = _as_streamlit_sees(rewritten)
            if rewritten == current:
                settled.add(kind)
                if len(settled) == len(readings):
                    return current
            else:
                current, settled = rewritten, set()
    except ReadingFailed:
        pass
    return as_code_block(original)


def find_unsafe(
    text: str, *, allowed_image_hosts: Collection[str] = IMAGE_HOSTS_DEFAULT
) -> list[str]:
    """The links and images in ``text`` that Streamlit would render but the policy forbids.

    Public on purpose, though the app never calls it: it is the independent check of
    ``safe_markdown``'s output (every reading, no rewriting), which the tests run on every
    hostile text and anyone auditing stored messages can run too.
    """
    hosts = frozenset(host.strip().lower() for host in allowed_image_hosts)
    prepared = _prepare(text)
    found: list[str] = []
    for math, gfm_extras in _reading_kinds(prepared):
        try:
            reading = read_markdown(prepared, math=math, gfm_extras=gfm_extras)
        except ReadingFailed as exc:
            return [f"unreadable: {exc}"]
        found.extend(
            f"{span.kind} {span.url!r}" for span in reading.spans if not _span_allowed(span, hosts)
        )
    return found


def is_allowed_link(url: str) -> bool:
    """True for an http, https or mailto URL as a browser would read it."""
    return _scheme(url) in ALLOWED_LINK_SCHEMES


def is_allowed_image(url: str, allowed_hosts: Collection[str]) -> bool:
    """True for an http(s) URL whose host (no user info, any port) is exactly an allowed host."""
    match = _WEB_AUTHORITY.match(_browser_url(url))
    if match is None:
        return False
    authority = match.group(1)
    if "@" in authority:
        return False
    host = authority
    if not host.endswith("]"):
        head, colon, port = host.rpartition(":")
        if colon:
            if not _PORT.fullmatch(colon + port):
                return False
            host = head
    return host.lower() in {allowed.lower() for allowed in allowed_hosts}


def as_code_block(text: str) -> str:
    """``text`` as a fenced code block no line of it can close."""
    longest = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _reading_kinds(text: str) -> list[tuple[bool, bool]]:
    """(math, gfm_extras) for each way the browser might read ``text``."""
    kinds = [(False, True)]
    if _EXTRAS_HINT.search(text):
        # A second opinion without the GFM literal and footnote models finds what they hide.
        kinds.append((False, False))
    if "$" in text:
        # Streamlit turns math on by a heuristic, so texts with `$` are read both ways.
        kinds.append((True, True))
    return kinds


def _prepare(text: str) -> str:
    return _as_streamlit_sees(_LINE_ENDINGS.sub("\n", str(text)).replace("\0", "\ufffd"))


def _as_streamlit_sees(text: str) -> str:
    # st.markdown runs this on every body before the browser parses it.
    return textwrap.dedent(text).strip()


def _browser_url(url: str) -> str:
    return _URL_IGNORED.sub("", url).strip(_URL_TRIMMED)


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(_browser_url(url))
    return match.group(1).lower() if match else None


def _span_allowed(span: InlineSpan, hosts: frozenset[str]) -> bool:
    if span.kind == "image":
        return is_allowed_image(span.url, hosts)
    return is_allowed_link(span.url)


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    replacement: str


def _rewrite(text: str, reading: Reading, hosts: frozenset[str]) -> str:
    edits: list[_Edit] = []
    for span in reading.spans:
        if span.parent is None:
            edits.extend(_edits_for(span, hosts, in_link=False))
    return _apply(text, edits)


def _edits_for(span: InlineSpan, hosts: frozenset[str], *, in_link: bool) -> list[_Edit]:
    if span.kind == "image":
        if is_allowed_image(span.url, hosts):
            return []
        return [_Edit(span.start, span.end, _image_replacement(span, in_link=in_link))]
    if span.kind == "autolink":
        if is_allowed_link(span.url):
            return []
        return [_Edit(span.start, span.end, _code(span.url, span.backtick_run, span.in_table))]
    # An inline or reference link: keep its text, drop the brackets, show the URL after it.
    allowed = is_allowed_link(span.url)
    edits: list[_Edit] = []
    if not allowed:
        edits.append(_Edit(span.start, span.start + 1, ""))
    for child in span.children:
        edits.extend(_edits_for(child, hosts, in_link=allowed))
    if not allowed:
        shown = f" ({_code(span.url, span.backtick_run, span.in_table)})" if span.url else ""
        edits.append(_Edit(span.label_end, span.end, shown))
    return edits


def _image_replacement(span: InlineSpan, *, in_link: bool) -> str:
    alt = _plain_markdown(_alt_text(span.token.children or []))
    label = f"{IMAGE_MARK} {alt}".rstrip()
    if in_link:
        return label
    if _scheme(span.url) in ALLOWED_IMAGE_SCHEMES:
        return f"[{label}](<{_destination(span.url, span.in_table)}>)"
    shown = f" ({_code(span.url, span.backtick_run, span.in_table)})" if span.url else ""
    return label + shown


def _alt_text(tokens: list[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.type == "image":
            parts.append(_alt_text(token.children or []))
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        else:
            parts.append(token.content)
    return "".join(parts)


def _plain_markdown(text: str) -> str:
    return _ASCII_PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


def _destination(url: str, in_table: bool) -> str:
    escaped = re.sub(r"([\\<>&])", r"\\\1", url)
    return escaped.replace("|", "\\|") if in_table else escaped


def _code(url: str, longest_backtick_run: int, in_table: bool) -> str:
    inner = " ".join(url.split()) or " "
    runs = max((len(run) for run in _BACKTICK_RUN.findall(inner)), default=0)
    fence = "`" * (max(runs, longest_backtick_run) + 1)
    code = f"{fence} {inner} {fence}"
    return code.replace("|", "\\|") if in_table else code


def _apply(text: str, edits: list[_Edit]) -> str:
    if not edits:
        return text
    edits.sort(key=lambda edit: (edit.start, edit.end))
    out: list[str] = []
    cursor = 0
    for edit in edits:
        if edit.start < cursor:
            raise ReadingFailed("overlapping rewrites")
        out.append(text[cursor : edit.start])
        before = next((chunk[-1] for chunk in reversed(out) if chunk), "")
        replacement = edit.replacement
        if replacement.startswith("[") and before == "!":
            replacement = WORD_JOINER + replacement  # `!` + `[...](...)` would be an image
        if replacement.startswith("`") and before == "`":
            replacement = " " + replacement
        if replacement.endswith("`") and text[edit.end : edit.end + 1] == "`":
            replacement += " "
        out.append(replacement)
        cursor = edit.end
    out.append(text[cursor:])
    return "".join(out)


def _guard_image_starts(text: str, reading: Reading, hosts: frozenset[str]) -> str:
    """Put a word joiner in every ``![`` outside code that is not an allowed image."""
    if "![" not in text:
        return text
    allowed = {
        span.start
        for span in reading.spans
        if span.kind == "image" and is_allowed_image(span.url, hosts)
    }
    out: list[str] = []
    cursor = 0
    at = text.find("![")
    while at >= 0:
        if at not in allowed and not reading.in_code(at):
            out.append(text[cursor : at + 1])
            out.append(WORD_JOINER)
            cursor = at + 1
        at = text.find("![", at + 1)
    out.append(text[cursor:])
    return "".join(out)


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and escaping all of
# them leaves no Markdown, directive (``:red[…]``), emoji shortcode or math syntax standing.
_ASCII_PUNCTUATION_CHARS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# GFM turns bare URLs and e-mail addresses into links after parsing, escaped or not (remark-gfm
# finds them in the text): a word joiner inside each start stops that without changing the text
# a reader sees.
_AUTOLINK_STARTS = re.compile(r"(?i)(?<=http)(?=s?://)|(?<=www)(?=\.)|(?<=@)")
_LEADING_BLANKS = re.compile(r"^[ \t]+", re.MULTILINE)
NBSP = "\u00a0"
HARD_BREAK = "  \n"


def escape_markdown(text: str) -> str:
    """Markdown that shows ``text`` exactly as typed: nothing in it becomes markup or a link.

    Every ASCII punctuation character is backslash-escaped, bare URLs and e-mail addresses get a
    word joiner so GFM does not link them, indentation becomes no-break spaces (so it is not a
    code block) and each line break stays a line break.
    """
    normalised = _LINE_ENDINGS.sub("\n", str(text)).replace("\0", "\ufffd")
    unlinked = _AUTOLINK_STARTS.sub(WORD_JOINER, normalised)
    escaped = "".join("\\" + c if c in _ASCII_PUNCTUATION_CHARS else c for c in unlinked)
    indented = _LEADING_BLANKS.sub(lambda m: NBSP * len(m.group().expandtabs(4)), escaped)
    return HARD_BREAK.join(indented.split("\n"))
