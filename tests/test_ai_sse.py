"""The incremental SSE parser survives any chunking of the byte stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus_core.ai.sse import EventTooLarge, SSEEvent, SSEParser, iter_events


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


# --- bounds: linear work, and lines and events no longer than the limit -----------------------

MULTI_MB_LINE_BYTES = 16 * 1024 * 1024
SMALL_PIECE_BYTES = 1024


@pytest.mark.timeout(60)
def test_a_multi_megabyte_line_fed_in_many_small_pieces_is_parsed_in_linear_time() -> None:
    # 16 MiB in 16,384 pieces: rescanning the unfinished line on every piece (the old parser)
    # is ~137 GB of scanning, hours; scanning each piece once is 16 MiB, well under a second.
    parser = SSEParser(max_event_bytes=None)
    piece = b"x" * SMALL_PIECE_BYTES

    assert parser.feed(b"data: ") == []
    for _ in range(MULTI_MB_LINE_BYTES // SMALL_PIECE_BYTES):
        assert parser.feed(piece) == []
    (event,) = parser.feed(b"\n\n")

    assert len(event.data) == MULTI_MB_LINE_BYTES and set(event.data) == {"x"}


def test_a_line_past_the_limit_fails_at_the_byte_that_passes_it() -> None:
    parser = SSEParser(max_event_bytes=100)
    fed = 0

    with pytest.raises(EventTooLarge) as caught:
        for byte in b"data: " + b"y" * 10_000:
            parser.feed(bytes([byte]))
            fed += 1

    assert fed == 100  # the 101st byte of the unfinished line raised
    assert caught.value.limit == 100


def test_a_long_line_that_arrives_in_one_piece_is_refused_too() -> None:
    parser = SSEParser(max_event_bytes=100)

    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"z" * 200 + b"\n\n")


def test_the_data_lines_of_one_event_are_bounded_together() -> None:
    parser = SSEParser(max_event_bytes=100)
    short_line = b"data: " + b"d" * 20 + b"\n"  # 26 bytes: each line is fine on its own

    assert parser.feed(short_line * 3 + b"\n") == [SSEEvent(data="\n".join(["d" * 20] * 3))]
    with pytest.raises(EventTooLarge):
        parser.feed(short_line * 4)


def test_comments_and_events_within_the_limit_are_never_refused() -> None:
    parser = SSEParser(max_event_bytes=100)
    stream = (b": " + b"c" * 90 + b"\n" + b"data: " + b"e" * 90 + b"\n\n") * 1_000

    assert parser.feed(stream) == [SSEEvent(data="e" * 90)] * 1_000


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


@given(
    items=events,
    ending=line_endings,
    data=st.data(),
)
def test_with_a_limit_any_chunking_parses_the_same_or_refuses_the_same(
    items: list[tuple[str | None, list[str]]],
    ending: str,
    data: st.DataObject,
) -> None:
    stream = encode(items, ending, comments=False)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    limit = data.draw(st.integers(min_value=1, max_value=200))

    def parse(pieces: list[int]) -> list[SSEEvent] | str:
        parser = SSEParser(max_event_bytes=limit)
        events: list[SSEEvent] = []
        start = 0
        try:
            for cut in [*sorted(pieces), len(stream)]:
                events += parser.feed(stream[start:cut])
                start = cut
            return events + parser.close()
        except EventTooLarge:
            return "refused"

    assert parse(cuts) == parse([])
