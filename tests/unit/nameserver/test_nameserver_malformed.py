"""Hostile packets never crash the answerer: they get FORMERR (or a proper reply) or silence."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.testing.nameserver import example_config

ANSWERER = Answerer(example_config(rate_limit=0.0), rng=random.Random(1))
VALID = [
    dns.message.make_query("video.netcinema.test", "A").to_wire(),
    dns.message.make_query("movie.video.kingcdn.test", "A", use_edns=0).to_wire(),
    dns.message.make_query(
        "video.kingcdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("127.0.41.0", 24)]
    ).to_wire(),
    dns.message.make_query("big.netcinema.test", "TXT").to_wire(),
]


def check(wire: bytes, transport: Transport = Transport.UDP) -> bytes | None:
    """Answer ``wire`` and check the reply is well-formed and proportionate."""
    reply = ANSWERER.answer(wire, "127.0.41.9", transport, 0.0)
    if reply is None:
        return None
    assert len(wire) >= 12
    response = dns.message.from_wire(reply)  # whatever we send must parse
    assert response.id == struct.unpack("!H", wire[:2])[0]
    assert response.flags & dns.flags.QR
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        # Not a parseable message: a bare FORMERR, never bigger than what came in.
        assert response.rcode() == dns.rcode.FORMERR
        assert len(reply) <= len(wire)
        return reply
    if transport is Transport.UDP:
        limit = 512 if query.edns < 0 else max(512, min(query.payload, 1232))
        assert len(reply) <= limit
    return reply


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(wire: bytes) -> None:
    check(wire)
    check(wire, Transport.TCP)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_truncated_queries(valid: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(valid) - 1))
    reply = check(valid[:cut])
    if cut < 12:
        assert reply is None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
)
def test_corrupted_queries(valid: bytes, edits: list[tuple[int, int]]) -> None:
    wire = bytearray(valid)
    for position, value in edits:
        wire[position % len(wire)] = value
    check(bytes(wire))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.sampled_from(VALID),
)
def test_counts_larger_than_the_packet(
    qd: int, an: int, ns: int, ar: int, flags: int, valid: bytes
) -> None:
    wire = valid[:2] + struct.pack("!HHHHH", flags & 0x7FFF, qd, an, ns, ar) + valid[12:]
    check(wire)


@pytest.mark.parametrize(
    "body",
    [
        b"\xc0\x0c\x00\x01\x00\x01",  # the question's name points at itself
        b"\x01a\xc0\x0c\x00\x01\x00\x01",  # a label, then back to the start
        b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01",  # two pointers pointing at each other
        b"\xc0\xff\x00\x01\x00\x01",  # a pointer past the end
        b"\x40abc\x00\x00\x01\x00\x01",  # reserved label type 01
        b"\x80abc\x00\x00\x01\x00\x01",  # reserved label type 10
        b"\x3f"
        + b"a" * 63
        + b"\x3f"
        + b"b" * 63
        + b"\x3f"
        + b"c" * 63
        + b"\x3f"
        + b"d" * 63
        + b"\x00\x00\x01\x00\x01",  # a name longer than 255 bytes
    ],
)
def test_compression_pointer_loops_and_bad_labels(body: bytes) -> None:
    wire = struct.pack("!HHHHHH", 0xABCD, 0x0100, 1, 0, 0, 0) + body
    reply = check(wire)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


def test_pointer_loop_in_an_answer_record_of_a_query() -> None:
    question = b"\x05video\x0anetcinema\x04test\x00\x00\x01\x00\x01"
    record = b"\xc0\x23" + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
    wire = struct.pack("!HHHHHH", 0x0102, 0x0100, 1, 1, 0, 0) + question + record
    reply = check(wire)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("size", [0, 1, 11])
def test_shorter_than_a_header_is_silence(size: int) -> None:
    assert ANSWERER.answer(b"\x00" * size, "127.0.0.1", Transport.UDP, 0.0) is None
