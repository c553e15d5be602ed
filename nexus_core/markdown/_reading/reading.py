"""One reading of a text: the parser put together, and the spans of its links and images."""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from nexus_core.markdown._reading import literals, locations, micromark
from nexus_core.markdown._reading.collector import (
    ENV_KEY,
    MAX_NESTING,
    Collector,
    ReadingFailed,
    collector_of,
)

_RECORDS = "nexus_records"
_TOKEN_TYPES = {
    "link": "link_open",
    "image": "image",
    "autolink": "link_open",
    "code": "code_inline",
}
_CODE_BLOCKS = ("fence", "code_block", "math_block")


@dataclass(eq=False)
class InlineSpan:
    """A link, image or autolink: source offsets, and the URL as the browser would get it."""

    kind: str
    start: int
    label_end: int
    end: int
    url: str
    token: Token
    in_table: bool
    backtick_run: int
    parent: InlineSpan | None = None
    children: list[InlineSpan] = field(default_factory=list)


@dataclass
class Reading:
    """Every link, image and autolink of one reading, and where code sits in the source."""

    spans: list[InlineSpan]
    code_ranges: list[tuple[int, int]]

    def in_code(self, position: int) -> bool:
        """True when ``position`` lies inside a code block or a code span."""
        index = bisect.bisect_right(self.code_ranges, (position, float("inf"))) - 1
        return index >= 0 and position < self.code_ranges[index][1]


def read_markdown(text: str, *, math: bool, gfm_extras: bool) -> Reading:
    """Parse ``text`` as Streamlit would, with or without math.

    ``gfm_extras`` models GFM literals and footnote definitions as micromark reads them; without
    it the reading is plain CommonMark with tables, a second opinion that finds every link those
    models might hide.
    """
    collector = Collector.for_text(text)
    # Streamlit makes this change before parsing; it keeps every offset where it was.
    source = text.replace(":material/", ":material_")
    try:
        tokens = _parser(math, gfm_extras).parse(source, {ENV_KEY: collector})
    except RecursionError as exc:
        raise ReadingFailed("nested too deeply") from exc

    line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
    spans: list[InlineSpan] = []
    code_ranges: list[tuple[int, int]] = []
    for token in tokens:
        if token.type in _CODE_BLOCKS and token.map:
            first, last = token.map
            end = line_starts[last] if last < len(line_starts) else len(text)
            code_ranges.append((line_starts[first], end))
        records = token.meta.get(_RECORDS) if token.type == "inline" else None
        if not records:
            continue
        offsets = locations.content_offsets(source, token)
        backtick_run = max((len(run) for run in re.findall("`+", token.content)), default=0)
        token_spans = []
        for kind, start, label_end, end, inline_token in records:
            if kind == "code":
                code_ranges.append((offsets[start], offsets[end - 1] + 1))
                continue
            if kind == "link" and label_end < 0:
                raise ReadingFailed("a link whose text end was not seen")
            token_spans.append(
                InlineSpan(
                    kind=kind,
                    start=offsets[start],
                    label_end=offsets[label_end] if label_end >= 0 else -1,
                    end=offsets[end - 1] + 1,
                    url=str(inline_token.attrs.get("src" if kind == "image" else "href", "")),
                    token=inline_token,
                    in_table=bool(token.meta.get(locations.IN_TABLE)),
                    backtick_run=backtick_run,
                )
            )
        spans.extend(_nest(token_spans))
    code_ranges.sort()
    return Reading(spans=spans, code_ranges=code_ranges)


def _nest(spans: list[InlineSpan]) -> list[InlineSpan]:
    spans.sort(key=lambda span: (span.start, -span.end))
    stack: list[InlineSpan] = []
    for span in spans:
        while stack and stack[-1].end <= span.start:
            stack.pop()
        if stack:
            span.parent = stack[-1]
            stack[-1].children.append(span)
        stack.append(span)
    return spans


@functools.cache
def _parser(math: bool, gfm_extras: bool) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING}).enable(["table", "strikethrough"])
    # URLs are judged by the caller, on the decoded form the browser receives.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    md.normalizeLinkText = lambda text: text  # type: ignore[method-assign]

    block = md.block.ruler
    for name, locate in (
        ("paragraph", locations.locate_lines),
        ("lheading", locations.locate_lines),
        ("heading", locations.locate_heading),
        ("table", locations.locate_table),
    ):
        _wrap(block, name, lambda rule, locate=locate: locations.located(rule, locate))
    for name in ("blockquote", "list"):
        _wrap(block, name, micromark.depth_checked)
    _wrap(block, "html_block", micromark.html_block)

    # Later core rules replace each inline token's children list, so claim the records now.
    md.core.ruler.after("inline", "nexus_records", _attach_records)
    md.inline.tokenize = _noting_label_ends(md.inline.tokenize)  # type: ignore[method-assign]
    inline = md.inline.ruler
    for name, kind in (("link", "link"), ("image", "image"), ("autolink", "autolink")):
        _wrap(inline, name, lambda rule, kind=kind: _recorded(rule, kind))
    _wrap(inline, "backticks", lambda rule: _recorded(rule, "code"))
    _wrap(inline, "html_inline", micromark.html_inline)
    inline.push("nexus_brackets", micromark.count_brackets)
    if gfm_extras:
        footnotes = micromark.depth_checked(micromark.footnote_definition)
        block.before(
            "reference", "footnote_definition", footnotes, {"alt": ["paragraph", "reference"]}
        )
        inline.at("text", literals.text_until_literal)
        inline.before("text", "gfm_literal", literals.gfm_literal)
    if math:
        fence_alt = ["paragraph", "reference", "blockquote", "list"]
        block.before("fence", "math_block", micromark.math_block, {"alt": fence_alt})
        inline.after("escape", "math_inline", micromark.math_inline)
    return md


def _wrap(ruler: Any, name: str, wrapper: Any) -> None:
    rule = next(rule for rule in ruler.__rules__ if rule.name == name)
    ruler.at(name, wrapper(rule.fn), {"alt": list(rule.alt)})


def _attach_records(state: Any) -> None:
    collector = collector_of(state)
    for token in state.tokens:
        if token.type == "inline":
            entry = collector.inline.get(id(token.children))
            if entry is not None and entry[0] is token.children:
                token.meta[_RECORDS] = entry[1]


def _recorded(rule: Any, kind: str) -> Any:
    def recorded(state: StateInline, silent: bool) -> bool:
        if state.level >= MAX_NESTING - 1:
            raise ReadingFailed("nested too deeply")
        collector = collector_of(state)
        start, count = state.pos, len(state.tokens)
        labelled = kind in ("link", "image")
        if labelled:
            collector.in_label += 1
            collector.label_ends.append(-1)
        try:
            found = rule(state, silent)
        finally:
            label_end = collector.label_ends.pop() if labelled else -1
            if labelled:
                collector.in_label -= 1
        if found and not silent:
            wanted = _TOKEN_TYPES[kind]
            token = next((t for t in state.tokens[count:] if t.type == wanted), None)
            if token is not None:
                collector.record(state, kind, start, label_end, token)
        return found

    return recorded


def _noting_label_ends(tokenize: Any) -> Any:
    """The inline tokenizer, noting where a link's text ends when the link rule runs it."""

    def tokenize_noting(state: StateInline) -> None:
        collector = collector_of(state)
        if state.linkLevel > 0 and collector.label_ends and collector.label_ends[-1] < 0:
            collector.label_ends[-1] = state.posMax
        tokenize(state)

    return tokenize_noting
