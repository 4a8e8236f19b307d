"""The stream reader of the provider clients (common.sse_data): a body's bytes, in whatever pieces the network
hands them over, to the JSON of each event, as the SSE format delimits them."""

import json

import pytest

from ai_providers.clients.common import SSEReader, sse_data

EVENTS = [{"id": "c1", "choices": [{"delta": {"content": "héllo ✓"}}]}, {"id": "c1", "usage": {"prompt_tokens": 3}}]


def body(newline: str) -> bytes:
    parts = [f"event: chunk{newline}data: {json.dumps(e, ensure_ascii=False)}{newline}{newline}" for e in EVENTS]
    return ("".join(parts) + f": a comment{newline}data: [DONE]{newline}{newline}").encode()


def read(chunks) -> list:
    checks = []
    events = list(sse_data(chunks, lambda: checks.append(1)))
    assert len(checks) == len(chunks)  # the deadline and the stop are checked at every piece received
    return events


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("size", [1, 2, 7, 10_000], ids=lambda size: f"pieces of {size}")
def test_events_whatever_the_line_ends_and_the_pieces(newline, size):
    raw = body(newline)
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]  # CRLF and UTF-8 characters split too
    assert read(chunks) == EVENTS


def test_data_lines_of_one_event_are_joined_and_other_fields_ignored():
    raw = b'id: 7\nretry: 10\ndata: {"a":\ndata:  [1,\ndata: 2]}\n\n'
    assert read([raw]) == [{"a": [1, 2]}]


def test_nothing_after_done_is_parsed_and_the_body_is_read_to_its_end():
    chunks = [b'data: {"n": 1}\n\ndata: [DONE]\n\n', b"data: not json\n\n", b"trailing"]
    assert read(chunks) == [{"n": 1}]


@pytest.mark.parametrize("tail", [b'data: {"n": 2}', b'data: {"n": 2}\n', b'data: {"n": 2}\r'])
def test_a_last_event_without_its_blank_line_still_counts(tail):
    assert read([b'data: {"n": 1}\n\n', tail]) == [{"n": 1}, {"n": 2}]


def test_a_body_that_ends_inside_done_yields_nothing_more():
    reader = SSEReader()
    assert reader.feed(b'data: {"n": 1}\n\ndata: [DO') == [{"n": 1}]
    assert reader.feed(b"NE]") == [] and reader.end() == []
