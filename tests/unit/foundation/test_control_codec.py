"""The control channel's sans-IO framer and schema: round trips, golden bytes, hostile input."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.control import (
    MAX_FRAME,
    NEED_DATA,
    PROTOCOL_VERSION,
    SCHEMA,
    ConnectionClosed,
    ControlCodec,
    ControlMessage,
    ErrorCode,
    Kind,
    MalformedMessage,
    decode_payload,
    encode,
)
from seedcast.errors import LocalProtocolError, RemoteProtocolError

EXAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"role": "edge", "name": "edge-1", "pid": 4242},
    "ready": {
        "role": "edge",
        "name": "edge-1",
        "pid": 4242,
        "addresses": ["127.0.20.1:8080"],
        "metrics": None,
    },
    "status": {},
    "status-reply": {
        "statistics": {"req_per_s": 12.5, "hit_ratio": 0.9},
        "state": "ready",
        "uptime": 3.0,
    },
    "cluster-status": {},
    "cluster-status-reply": {"processes": [{"role": "edge", "name": "edge-1"}], "cluster": {}},
    "wait-ready": {"name": "edge-1", "after_pid": 17},
    "drain": {},
    "shutdown": {"deadline": 2.5},
    "purge": {"prefix": "/sample/", "video": None},
    "set-rate": {"upload": 1_000_000.0, "download": None},
    "ok": {"result": {"purged": 3}},
    "error": {"code": "malformed", "message": "bad"},
}


def frame(body: Any) -> bytes:
    payload = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


def events(codec: ControlCodec) -> list[Any]:
    found = []
    while True:
        event = codec.next_event()
        if event is NEED_DATA:
            return found
        found.append(event)
        if isinstance(event, ConnectionClosed):
            return found


def test_schema_lists_every_example() -> None:
    assert set(EXAMPLES) == set(SCHEMA)


@pytest.mark.parametrize("message_type", sorted(EXAMPLES))
def test_round_trip_every_type(message_type: str) -> None:
    reply_to = 9 if SCHEMA[message_type][0] is Kind.REPLY else None
    data = encode(message_type, EXAMPLES[message_type], id=5, reply_to=reply_to)
    codec = ControlCodec()
    codec.receive_data(data)
    (message,) = events(codec)
    assert message == ControlMessage(message_type, 5, reply_to, EXAMPLES[message_type])


def test_golden_bytes_of_a_status_request() -> None:
    data = encode("status", id=1)
    body = {"v": 1, "type": "status", "id": 1, "reply_to": None}
    payload = msgpack.packb(body, use_bin_type=True)
    assert data == struct.pack(">I", len(payload)) + payload
    assert data == (
        b"\x00\x00\x00\x1e"  # 30 bytes follow
        b"\x84"  # a map of 4
        b"\xa1v\x01"
        b"\xa4type\xa6status"
        b"\xa2id\x01"
        b"\xa8reply_to\xc0"
    )


def test_byte_at_a_time_gives_the_same_messages() -> None:
    data = encode("hello", EXAMPLES["hello"], id=1) + encode("purge", {"prefix": "/a"}, id=2)
    codec = ControlCodec()
    found = []
    for index in range(len(data)):
        codec.receive_data(data[index : index + 1])
        found += events(codec)
    assert [message.type for message in found] == ["hello", "purge"]


def test_clean_eof_is_connection_closed() -> None:
    codec = ControlCodec()
    codec.receive_data(encode("drain", id=1))
    codec.receive_data(b"")
    assert [type(event) for event in events(codec)] == [ControlMessage, ConnectionClosed]


def test_eof_inside_a_frame_is_fatal() -> None:
    codec = ControlCodec()
    codec.receive_data(encode("drain", id=1)[:-1])
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        codec.next_event()
    with pytest.raises(RemoteProtocolError):
        codec.next_event()


def test_oversized_frame_is_fatal_before_reading_it() -> None:
    codec = ControlCodec(max_frame=64)
    codec.receive_data(struct.pack(">I", 65))
    with pytest.raises(RemoteProtocolError) as caught:
        codec.next_event()
    assert caught.value.reason == "too-large"


def test_default_frame_limit() -> None:
    codec = ControlCodec()
    codec.receive_data(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(RemoteProtocolError):
        codec.next_event()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xc1", ErrorCode.MALFORMED),  # never-used msgpack byte
        (msgpack.packb([1, 2, 3]), ErrorCode.MALFORMED),
        (msgpack.packb({"v": 1, "id": 1}), ErrorCode.MALFORMED),
        (msgpack.packb({"v": 2, "type": "status", "id": 1}), ErrorCode.UNSUPPORTED_VERSION),
        (msgpack.packb({"v": 1, "type": "status", "id": -1}), ErrorCode.MALFORMED),
        (msgpack.packb({"v": 1, "type": "status", "id": True}), ErrorCode.MALFORMED),
        (
            msgpack.packb({"v": 1, "type": "hello", "id": 1, "role": "x", "name": "y"}),
            ErrorCode.MALFORMED,
        ),
        (
            msgpack.packb({"v": 1, "type": "hello", "id": 1, "role": 1, "name": "y", "pid": 1}),
            ErrorCode.MALFORMED,
        ),
        (
            msgpack.packb({"v": 1, "type": "shutdown", "id": 1, "deadline": float("nan")}),
            ErrorCode.MALFORMED,
        ),
        (msgpack.packb({"v": 1, "type": "ok", "id": 1, "result": {}}), ErrorCode.MALFORMED),
        (msgpack.packb({"v": 1, "type": "status", "id": 1, "reply_to": "x"}), ErrorCode.MALFORMED),
        (msgpack.packb({1: 2}), ErrorCode.MALFORMED),
        (b"\x91" * 2000 + b"\x90", ErrorCode.MALFORMED),  # deep nesting
        (b"\xd9\x02\xff\xfe", ErrorCode.MALFORMED),  # str that is not UTF-8
    ],
)
def test_malformed_payloads_become_events(payload: bytes, code: ErrorCode) -> None:
    codec = ControlCodec()
    codec.receive_data(struct.pack(">I", len(payload)) + payload + encode("drain", id=2))
    first, second = events(codec)
    assert isinstance(first, MalformedMessage)
    assert first.code == code
    assert isinstance(second, ControlMessage)  # the stream goes on
    assert second.type == "drain"


def test_malformed_keeps_the_id_for_reply_to() -> None:
    result = decode_payload(msgpack.packb({"v": 1, "type": "purge", "id": 77, "prefix": 5}))
    assert isinstance(result, MalformedMessage)
    assert result.id == 77
    assert "prefix" in result.reason


def test_unknown_types_decode_as_requests_for_the_shell_to_judge() -> None:
    result = decode_payload(msgpack.packb({"v": 1, "type": "warm-cache", "id": 3, "path": "/x"}))
    assert isinstance(result, ControlMessage)
    assert not result.known
    assert result.kind is Kind.REQUEST
    assert result.fields == {"path": "/x"}


def test_extra_fields_are_kept() -> None:
    body = {"v": PROTOCOL_VERSION, "type": "purge", "id": 1, "prefix": "/a", "reason": "test"}
    result = decode_payload(msgpack.packb(body))
    assert isinstance(result, ControlMessage)
    assert result.fields == {"prefix": "/a", "reason": "test"}


@pytest.mark.parametrize(
    ("message_type", "fields", "reply_to"),
    [
        ("hello", {"role": "edge"}, None),
        ("purge", {"prefix": 3}, None),
        ("wait-ready", {}, None),
        ("ok", {"result": {}}, None),
        ("status", {"id": 3}, None),
        ("ok", {"result": {"x": object()}}, 1),
    ],
)
def test_encode_refuses_what_breaks_the_schema(
    message_type: str, fields: dict[str, Any], reply_to: int | None
) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message_type, fields, id=1, reply_to=reply_to)


def test_send_numbers_messages() -> None:
    codec = ControlCodec()
    first, _ = codec.send("status")
    second, _ = codec.send("status")
    assert second == first + 1


# --- hypothesis -----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 2048), max_size=8))
def test_any_bytes_give_events_or_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    codec = ControlCodec(max_frame=4096)
    points = sorted({0, len(data), *[cut % (len(data) + 1) for cut in cuts]})
    try:
        for start, end in itertools.pairwise(points):
            codec.receive_data(data[start:end])
            for event in events(codec):
                assert isinstance(event, ControlMessage | MalformedMessage | ConnectionClosed)
        codec.receive_data(b"")
        for event in events(codec):
            assert isinstance(event, ControlMessage | MalformedMessage | ConnectionClosed)
    except RemoteProtocolError:
        pass


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    message_type=st.sampled_from([*SCHEMA, "other"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "role",
                "name",
                "pid",
                "addresses",
                "statistics",
                "result",
                "prefix",
                "code",
                "message",
                "deadline",
                "upload",
                "processes",
                "x",
            ]
        ),
        values,
        max_size=6,
    ),
    message_id=st.integers(-2, 2**40) | st.none() | st.text(max_size=3),
    reply_to=st.integers(-2, 10) | st.none(),
    version=st.sampled_from([1, 1, 1, 0, 2, "1", None]),
)
def test_any_map_decodes_to_a_message_or_malformed(
    message_type: str, fields: dict[str, Any], message_id: Any, reply_to: Any, version: Any
) -> None:
    body = {**fields, "v": version, "type": message_type, "id": message_id, "reply_to": reply_to}
    codec = ControlCodec()
    codec.receive_data(frame(body))
    (event,) = events(codec)
    assert isinstance(event, ControlMessage | MalformedMessage)
    if isinstance(event, ControlMessage):
        # What was accepted re-encodes: the schema held.
        encode(event.type, event.fields, id=event.id, reply_to=event.reply_to)
