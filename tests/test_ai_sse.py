"""The incremental SSE parser survives any chunking of the byte stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus_core.ai.sse import SSEEvent, SSEParser, iter_events


def parse_in_pieces(stream: bytes, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        events += parser.feed(stream[start:cut])
        start = cut
    return events + parser.close()


def parse_byte_by_byte(stream: bytes) -> list[SSEEvent]:
    return parse_in_pieces(stream, list(range(len(stream))))


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_every_line_ending_style_ends_lines_and_events(ending: str) -> None:
    stream = f"data: one{ending}{ending}event: ping{ending}data: two{ending}{ending}".encode()

    assert parse_byte_by_byte(stream) == [
        SSEEvent(data="one"),
        SSEEvent(event="ping", data="two"),
    ]


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    parser = SSEParser()

    first = parser.feed(b"data: a\r")
    second = parser.feed(b"\ndata: b\r")
    third = parser.feed(b"\n\r")
    fourth = parser.feed(b"\n")

    assert first == second == fourth == []
    assert third == [SSEEvent(data="a\nb")]
    assert parser.close() == []


def test_multibyte_characters_split_across_chunks_arrive_whole() -> None:
    stream = "data: naïve café ☕ 🚀\n\n".encode()

    assert parse_byte_by_byte(stream) == [SSEEvent(data="naïve café ☕ 🚀")]


def test_multi_line_data_fields_join_with_newlines() -> None:
    stream = b"data: first\ndata:second\ndata\ndata:  indented\n\n"

    assert parse_byte_by_byte(stream) == [SSEEvent(data="first\nsecond\n\n indented")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": keep-alive\nfoo: bar\ndata: x\n: another\n\n:\n\n"

    assert parse_byte_by_byte(stream) == [SSEEvent(data="x")]


def test_event_without_data_is_not_dispatched_and_its_type_resets() -> None:
    stream = b"event: lonely\n\ndata: y\n\n"

    assert parse_byte_by_byte(stream) == [SSEEvent(data="y")]


def test_final_event_without_trailing_blank_line_is_delivered_on_close() -> None:
    parser = SSEParser()

    assert parser.feed(b'data: {"last": true}') == []
    assert parser.close() == [SSEEvent(data='{"last": true}')]


def test_id_persists_and_retry_must_be_digits() -> None:
    stream = b"id: 7\nretry: 1500\ndata: a\n\nretry: soon\ndata: b\n\n"

    assert parse_byte_by_byte(stream) == [
        SSEEvent(data="a", id="7", retry=1500),
        SSEEvent(data="b", id="7", retry=1500),
    ]


def test_leading_byte_order_mark_is_dropped_even_when_split() -> None:
    stream = "\ufeffdata: x\n\n".encode()

    assert parse_byte_by_byte(stream) == [SSEEvent(data="x")]


def test_invalid_utf8_is_replaced_rather_than_fatal() -> None:
    assert parse_byte_by_byte(b"data: \xff\xfe ok\n\n") == [SSEEvent(data="\ufffd\ufffd ok")]


def test_feeding_after_close_is_a_programming_error() -> None:
    parser = SSEParser()
    parser.close()

    with pytest.raises(ValueError):
        parser.feed(b"data: late\n\n")


def test_iter_events_parses_an_iterable_of_chunks_lazily() -> None:
    chunks = iter([b"data: a\n", b"\ndata: b"])

    assert list(iter_events(chunks)) == [SSEEvent(data="a"), SSEEvent(data="b")]


# --- property: encoding then splitting anywhere never changes what is parsed -------------------

line_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=20,
)
event_types = st.one_of(st.none(), line_text.filter(lambda name: name != ""))
events = st.lists(
    st.tuples(event_types, st.lists(line_text, min_size=1, max_size=4)),
    max_size=6,
)
line_endings = st.sampled_from(["\n", "\r\n", "\r"])


def encode(items: list[tuple[str | None, list[str]]], ending: str, comments: bool) -> bytes:
    lines: list[str] = []
    for event_type, data_lines in items:
        if comments:
            lines.append(": comment")
        if event_type is not None:
            lines.append(f"event: {event_type}")
        lines += [f"data: {line}" for line in data_lines]
        lines.append("")
    return "".join(line + ending for line in lines).encode()


@given(
    items=events,
    ending=line_endings,
    comments=st.booleans(),
    data=st.data(),
)
def test_any_encoded_events_split_at_any_bytes_parse_to_the_same_events(
    items: list[tuple[str | None, list[str]]],
    ending: str,
    comments: bool,
    data: st.DataObject,
) -> None:
    stream = encode(items, ending, comments)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))

    expected = [SSEEvent(event=kind or "message", data="\n".join(lines)) for kind, lines in items]
    assert parse_in_pieces(stream, cuts) == expected
