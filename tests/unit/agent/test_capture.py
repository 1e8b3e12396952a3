"""`StreamCapture`: limits and sentinels, whatever the read boundaries."""

from __future__ import annotations

import pytest

from sandbox.agent.capture import StreamCapture

SENTINEL = b"__SBX_0123456789__"


@pytest.mark.parametrize("chunk_size", [1, 3, 7, len(SENTINEL), 1000])
def test_sentinel_split_across_reads(chunk_size: int) -> None:
    stream = b"out" + SENTINEL + b"0\x00/tmp\x00"
    capture = StreamCapture(100, SENTINEL, trailer_fields=2)

    for start in range(0, len(stream), chunk_size):
        assert not capture.complete
        capture.feed(stream[start : start + chunk_size])

    assert capture.complete
    assert bytes(capture.output) == b"out"
    assert capture.trailer_fields_text() == ["0", "/tmp"]


def test_incomplete_until_every_trailer_field_arrives() -> None:
    capture = StreamCapture(100, SENTINEL, trailer_fields=2)

    capture.feed(b"x" + SENTINEL + b"0\x00/tm")

    assert not capture.complete
    capture.feed(b"p\x00")
    assert capture.complete


def test_limit_keeps_the_first_bytes_and_finds_a_late_sentinel() -> None:
    capture = StreamCapture(10, SENTINEL)

    for _ in range(100):
        capture.feed(b"a" * 1000)
    capture.feed(SENTINEL)

    assert capture.complete
    assert capture.truncated
    assert capture.text() == "a" * 10


def test_output_exactly_at_the_limit_is_not_truncated() -> None:
    capture = StreamCapture(10, SENTINEL)

    capture.feed(b"a" * 10 + SENTINEL)

    assert capture.text() == "a" * 10
    assert not capture.truncated


def test_end_of_file_keeps_a_held_back_partial_sentinel() -> None:
    capture = StreamCapture(100, SENTINEL)

    capture.feed(b"abc" + SENTINEL[:5])
    capture.close()

    assert bytes(capture.output) == b"abc" + SENTINEL[:5]
    assert not capture.complete


def test_without_sentinel_complete_at_end_of_file() -> None:
    capture = StreamCapture(100)

    capture.feed(b"abc")
    assert not capture.complete
    capture.close()

    assert capture.complete
    assert capture.text() == "abc"
