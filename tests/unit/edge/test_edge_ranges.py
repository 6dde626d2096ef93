"""Range parsing: valid forms, hostile input, resolution against a length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.edge.ranges import ByteRange, Span, parse_range, resolve


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes=-500", ByteRange(None, 500)),
        ("BYTES=5-5", ByteRange(5, 5)),
        ("bytes= 5 - 7", ByteRange(5, 7)),
    ],
)
def test_valid_ranges(value: str, expected: ByteRange) -> None:
    assert parse_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=5",
        "bytes=9-1",
        "bytes=0-1,5-9",
        "items=0-1",
        "bytes=a-b",
        "bytes=0x10-20",
        "bytes=-1-2",
        "bytes=1" + "0" * 40 + "-",
        "bytes=" + "1" * 5000 + "-",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not DIGIT
    ],
)
def test_malformed_ranges_are_ignored(value: str | None) -> None:
    assert parse_range(value) is None


def test_resolve() -> None:
    assert resolve(ByteRange(0, 99), 1000) == Span(0, 100, 1000)
    assert resolve(ByteRange(900, 5000), 1000) == Span(900, 1000, 1000)
    assert resolve(ByteRange(None, 100), 1000) == Span(900, 1000, 1000)
    assert resolve(ByteRange(None, 5000), 1000) == Span(0, 1000, 1000)
    assert resolve(ByteRange(1000, None), 1000) is None
    assert resolve(ByteRange(None, 0), 1000) is None
    assert resolve(ByteRange(0, None), 0) is None
    assert Span(900, 1000, 1000).content_range() == "bytes 900-999/1000"


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**12))
def test_any_text_parses_or_is_ignored_and_resolves_inside_the_object(
    text: str, total: int
) -> None:
    parsed = parse_range(text)
    if parsed is None:
        return
    span = resolve(parsed, total)
    if span is not None:
        assert 0 <= span.start < span.end <= total
        assert span.length > 0
