"""Seedcast's response headers and telling a byte's source from a response."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.http11 import Headers
from seedcast.provenance import (
    BYTES_HEADERS,
    LOCAL,
    PEER,
    Source,
    agent_split,
    bytes_header,
    cdn_source,
)


def test_four_source_classes_and_their_headers() -> None:
    assert [source.value for source in Source] == ["origin", "edge", "seed", "viewer"]
    assert bytes_header(Source.EDGE) == "X-Seedcast-Bytes-Edge"
    assert bytes_header(Source.SEED) == "X-Seedcast-Bytes-Seed"
    assert bytes_header(PEER) == "X-Seedcast-Bytes-Peer"
    assert bytes_header(LOCAL) == "X-Seedcast-Bytes-Cache"
    assert len(set(BYTES_HEADERS)) == len(BYTES_HEADERS) == 6
    with pytest.raises(ValueError, match="not a byte source"):
        bytes_header("peers")


def test_agent_split_reads_what_the_agent_writes() -> None:
    headers = Headers([(bytes_header(PEER), "700"), ("x-seedcast-bytes-edge", "300")])
    split = agent_split(headers)
    assert split is not None
    assert (split[PEER], split[Source.EDGE], split[Source.ORIGIN], split[Source.VIEWER]) == (
        700,
        300,
        0,
        0,
    )
    assert agent_split(Headers([("X-Served-By", "edge-1"), ("X-Cache", "HIT")])) is None


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=30))
def test_any_count_reads_as_a_number(value: str) -> None:
    split = agent_split(Headers([(bytes_header(Source.ORIGIN), value)]))
    assert split is not None
    assert split[Source.ORIGIN] == (int(value) if value.isascii() and value.isdigit() else 0)


def test_cdn_source() -> None:
    assert cdn_source(Headers([("x-cache", "MISS")])) is Source.EDGE
    assert cdn_source(Headers([("X-Served-By", "origin")])) is Source.ORIGIN
