"""RFC 9110 semantics shared by origin, edge and agent: ranges, dates, entity-tags, conditionals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.http11.semantics import (
    MAX_RANGE_HEADER,
    ByteRange,
    ContentRange,
    Span,
    Unsatisfiable,
    entity_tags,
    http_date,
    if_range_allows,
    parse_content_range,
    parse_http_date,
    parse_range,
    preconditions,
    range_answer,
    resolve,
    strong_match,
    weak_match,
)

MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
MODIFIED_AT = 1_700_000_000.0
ETAG = '"v1"'

# --- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes=-500", ByteRange(None, 500)),
        ("BYTES=5-5", ByteRange(5, 5)),
        ("bytes= 5 - 7", ByteRange(5, 7)),
        (" bytes = 10 - 19 ", ByteRange(10, 19)),
        ("bytes=1" + "0" * 40 + "-", ByteRange(10**40, None)),
        ("bytes=0-" + "9" * 60, ByteRange(0, int("9" * 60))),
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
        "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000)),
        "items=0-1",
        "0-5",
        "bytes=a-b",
        "bytes=abc",
        "bytes=0x10-20",
        "bytes=-1-2",
        "bytes=" + "1" * 5000 + "-",
        "bytes=0-" + "1" * MAX_RANGE_HEADER,
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
    assert resolve(ByteRange(0, 10**40), 1000) == Span(0, 1000, 1000)
    assert resolve(ByteRange(None, 10**40), 1000) == Span(0, 1000, 1000)
    assert resolve(ByteRange(1000, None), 1000) == Unsatisfiable(1000)
    assert resolve(ByteRange(10**40, None), 1000) == Unsatisfiable(1000)
    assert resolve(ByteRange(None, 0), 1000) == Unsatisfiable(1000)
    assert resolve(ByteRange(0, None), 0) == Unsatisfiable(0)
    assert resolve(ByteRange(None, 5), 0) == Unsatisfiable(0)
    assert Span(900, 1000, 1000).content_range() == "bytes 900-999/1000"
    assert Unsatisfiable(1000).content_range() == "bytes */1000"


def test_byte_range_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="first or a last"):
        ByteRange(None, None)
    with pytest.raises(ValueError, match="before first"):
        ByteRange(5, 4)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**12))
def test_any_text_parses_or_is_ignored_and_resolves_inside_the_object(
    text: str, total: int
) -> None:
    parsed = parse_range(text)
    if parsed is None:
        return
    span = resolve(parsed, total)
    if isinstance(span, Span):
        assert 0 <= span.start < span.end <= total
        assert span.length > 0
    else:
        assert span == Unsatisfiable(total)


range_texts = st.builds(
    lambda unit, first, last: f"{unit}={first}-{last}",
    st.sampled_from(["bytes", "BYTES", " bytes", "items"]),
    st.one_of(st.just(""), st.integers(0, 10**30).map(str)),
    st.one_of(st.just(""), st.integers(0, 10**30).map(str)),
)


@given(range_texts, st.integers(min_value=0, max_value=10**6))
def test_well_formed_ranges_resolve_like_the_rfc_says(text: str, total: int) -> None:
    parsed = parse_range(text)
    if parsed is None:
        return
    span = resolve(parsed, total)
    if parsed.first is not None:
        assert isinstance(span, Unsatisfiable) == (parsed.first >= total)
    else:
        assert isinstance(span, Unsatisfiable) == (parsed.last == 0 or total == 0)


@given(st.binary(max_size=300))
def test_any_bytes_as_latin1_never_raise(raw: bytes) -> None:
    text = raw.decode("latin-1")  # what an HTTP parser hands over for obs-text
    parse_range(text)
    parse_content_range(text)
    parse_http_date(text)
    entity_tags(text)
    if_range_allows(text, ETAG, MODIFIED_AT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
        (" bytes 5-5/*", ContentRange(5, 5, None)),
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 0-100/100", None),  # last beyond the length
        ("bytes 9-1/100", None),
        ("bytes */100", None),  # an unsatisfied range is no content
        ("bytes 0-1" + "0" * 30 + "/*", None),
        ("items 0-1/2", None),
        ("bytes=0-1/2", None),
        ("", None),
        (None, None),
    ],
)
def test_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


# --- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_http_date_accepts_the_three_formats(text: str) -> None:
    assert parse_http_date(text) == 784111777.0


def test_http_dates_round_trip() -> None:
    assert http_date(MODIFIED_AT + 0.5) == MODIFIED
    assert parse_http_date(MODIFIED) == MODIFIED_AT
    for bad in (None, "", "yesterday", "0", "Tue, 99 Nov 2023 99:99:99 GMT", "x" * 100):
        assert parse_http_date(bad) is None


@given(st.text(max_size=80))
def test_http_date_parser_never_raises(text: str) -> None:
    parse_http_date(text)


# --- entity-tags ----------------------------------------------------------------------------


def test_entity_tag_lists() -> None:
    assert entity_tags("*") is None
    assert entity_tags(' "a", W/"b" ,"c,d"') == ['"a"', 'W/"b"', '"c,d"']
    assert entity_tags('garbage, "a"') == ['"a"']
    assert entity_tags("") == []
    assert entity_tags("x" * 10_000) == []


def test_comparisons() -> None:
    assert strong_match('"a"', '"a"')
    assert not strong_match('W/"a"', '"a"')
    assert not strong_match('W/"a"', 'W/"a"')
    assert weak_match('W/"a"', '"a"')
    assert not weak_match('"a"', '"b"')


# --- conditionals ---------------------------------------------------------------------------


def request_fields(**fields: str) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in fields.items()}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"if_match": '"other"'}, 412),
        ({"if_match": 'W/"v1"'}, 412),  # If-Match compares strongly
        ({"if_match": '"v0", "v1"'}, None),
        ({"if_match": "*"}, None),
        ({"if_unmodified_since": "Mon, 13 Nov 2023 00:00:00 GMT"}, 412),
        ({"if_unmodified_since": MODIFIED}, None),
        ({"if_unmodified_since": "garbage"}, None),
        ({"if_match": '"v1"', "if_unmodified_since": "Mon, 13 Nov 2023 00:00:00 GMT"}, None),
        ({"if_none_match": '"v0", W/"v1"'}, 304),  # If-None-Match compares weakly
        ({"if_none_match": '"v2"'}, None),
        ({"if_none_match": "*"}, 304),
        ({"if_modified_since": MODIFIED}, 304),
        ({"if_modified_since": "Mon, 13 Nov 2023 00:00:00 GMT"}, None),
        ({"if_modified_since": "garbage"}, None),
        ({"if_none_match": '"v2"', "if_modified_since": MODIFIED}, None),  # INM wins
        ({"if_match": '"other"', "if_none_match": '"v1"'}, 412),  # 412 comes first
    ],
)
def test_preconditions_in_the_rfc_order(fields: dict[str, str], expected: int | None) -> None:
    get = request_fields(**fields).get
    assert preconditions("GET", get, ETAG, MODIFIED_AT) == expected
    assert preconditions("HEAD", get, ETAG, MODIFIED_AT) == expected


def test_preconditions_without_validators() -> None:
    assert preconditions("GET", {"if-match": "*"}.get, None, None) is None
    assert preconditions("GET", {"if-match": '"a"'}.get, None, None) == 412
    assert preconditions("GET", {"if-none-match": '"a"'}.get, None, None) is None
    assert preconditions("GET", {"if-modified-since": MODIFIED}.get, None, None) is None


def test_if_range() -> None:
    assert if_range_allows(None, ETAG, MODIFIED_AT)
    assert if_range_allows('"v1"', ETAG, MODIFIED_AT)
    assert not if_range_allows('W/"v1"', ETAG, MODIFIED_AT)  # If-Range compares strongly
    assert not if_range_allows('"v2"', ETAG, MODIFIED_AT)
    assert not if_range_allows('"v1"', None, MODIFIED_AT)
    assert if_range_allows(MODIFIED, ETAG, MODIFIED_AT)
    assert not if_range_allows("Mon, 13 Nov 2023 00:00:00 GMT", ETAG, MODIFIED_AT)
    assert not if_range_allows(MODIFIED, ETAG, None)
    assert not if_range_allows("garbage", ETAG, MODIFIED_AT)


def test_range_answer_is_for_get_only_and_guarded_by_if_range() -> None:
    ranged = {"range": "bytes=0-9"}
    assert range_answer("GET", ranged.get, ETAG, MODIFIED_AT, 100) == Span(0, 10, 100)
    assert range_answer("HEAD", ranged.get, ETAG, MODIFIED_AT, 100) is None
    stale = {**ranged, "if-range": '"old"'}
    assert range_answer("GET", stale.get, ETAG, MODIFIED_AT, 100) is None
    huge = {"range": "bytes=" + "9" * 40 + "-"}
    assert range_answer("GET", huge.get, ETAG, MODIFIED_AT, 100) == Unsatisfiable(100)
    assert range_answer("GET", {}.get, ETAG, MODIFIED_AT, 100) is None
