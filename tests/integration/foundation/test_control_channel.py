"""The control channel's trio shell: requests and replies, handlers, hostile peers."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from seedcast.control import (
    ControlChannel,
    ControlCodec,
    ControlError,
    ControlMessage,
    ErrorCode,
    connect_control,
    encode,
    open_control_listener,
    socket_path_for,
)


async def echo_handler(message: ControlMessage) -> Any:
    if message.type == "status":
        return "status-reply", {"statistics": {"answered": 1}, "state": "ready", "uptime": 0.0}
    if message.type == "purge":
        return "ok", {"result": {"prefix": message.get("prefix")}}
    if message.type == "set-rate":
        raise RuntimeError("boom")
    raise ControlError(ErrorCode.UNKNOWN_TYPE, f"no {message.type}")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ControlChannel, ControlChannel]]:
    left_stream, right_stream = trio.testing.memory_stream_pair()
    left, right = (
        ControlChannel(left_stream, label="left"),
        ControlChannel(right_stream, label="right"),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.run)
        nursery.start_soon(right.run, echo_handler)
        yield left, right
        nursery.cancel_scope.cancel()


async def test_request_and_reply(pair: tuple[ControlChannel, ControlChannel]) -> None:
    left, _ = pair
    reply = await left.request("status")
    assert reply.type == "status-reply"
    assert reply.get("statistics") == {"answered": 1}
    reply = await left.request("purge", {"prefix": "/sample/"})
    assert reply.get("result") == {"prefix": "/sample/"}


async def test_concurrent_requests_are_matched_by_id(
    pair: tuple[ControlChannel, ControlChannel],
) -> None:
    left, _ = pair
    results: dict[int, Any] = {}

    async def one(index: int) -> None:
        reply = await left.request("purge", {"prefix": f"/{index}"})
        results[index] = reply.get("result")["prefix"]

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(one, index)
    assert results == {index: f"/{index}" for index in range(20)}


async def test_handler_errors_become_error_replies(
    pair: tuple[ControlChannel, ControlChannel],
) -> None:
    left, right = pair
    with pytest.raises(ControlError) as caught:
        await left.request("set-rate", {"upload": 1.0})
    assert caught.value.code == ErrorCode.FAILED
    assert "boom" in caught.value.message
    with pytest.raises(ControlError) as caught:
        await left.request("no-such-thing")
    assert caught.value.code == ErrorCode.UNKNOWN_TYPE
    assert (await left.request("status")).type == "status-reply"  # still fine
    assert not right.closed


async def test_no_reply_times_out() -> None:
    left_stream, _right_stream = trio.testing.memory_stream_pair()
    left = ControlChannel(left_stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.run)
        with pytest.raises(ControlError) as caught:
            await left.request("status", timeout=0.05)
        assert caught.value.code == ErrorCode.UNAVAILABLE
        nursery.cancel_scope.cancel()


async def test_pending_requests_fail_when_the_other_side_closes() -> None:
    left_stream, right_stream = trio.testing.memory_stream_pair()
    left = ControlChannel(left_stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.run)

        async def close_soon() -> None:
            await right_stream.receive_some()
            await right_stream.aclose()

        nursery.start_soon(close_soon)
        with pytest.raises(ControlError) as caught:
            await left.request("status", timeout=5)
        assert caught.value.code == ErrorCode.CLOSED
    assert left.closed


async def raw_exchange(frames: bytes, replies: int) -> list[ControlMessage]:
    """Send raw bytes to a channel running the echo handler; read ``replies`` messages."""
    ours, theirs = trio.testing.memory_stream_pair()
    channel = ControlChannel(theirs, label="victim")
    codec = ControlCodec()
    received: list[ControlMessage] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run, echo_handler)
        await ours.send_all(frames)
        while len(received) < replies:
            data = await ours.receive_some()
            codec.receive_data(data)
            if not data:
                break
            while True:
                event = codec.next_event()
                if not isinstance(event, ControlMessage):
                    break
                received.append(event)
        nursery.cancel_scope.cancel()
    return received


def raw(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def test_malformed_messages_are_answered_and_the_channel_goes_on() -> None:
    frames = (
        raw(b"\xc1")
        + raw(msgpack.packb({"v": 7, "type": "status", "id": 4}))
        + raw(msgpack.packb({"v": 1, "type": "purge", "id": 5, "prefix": ["/"]}))
        + encode("no-such-type", {}, id=6)
        + encode("status", id=7)
    )
    replies = await raw_exchange(frames, 5)
    # Requests are handled concurrently: replies may come in any order.
    replies.sort(key=lambda reply: -1 if reply.reply_to is None else reply.reply_to)
    assert [(reply.type, reply.get("code"), reply.reply_to) for reply in replies] == [
        ("error", "malformed", None),
        ("error", "unsupported-version", 4),
        ("error", "malformed", 5),
        ("error", "unknown-type", 6),
        ("status-reply", None, 7),
    ]


async def test_oversized_frame_gets_an_error_then_the_connection_closes() -> None:
    replies = await raw_exchange(struct.pack(">I", 1 << 30) + b"x" * 100, 2)
    assert [(reply.type, reply.get("code")) for reply in replies] == [("error", "too-large")]


async def test_a_request_that_is_a_notification_gets_no_reply(
    pair: tuple[ControlChannel, ControlChannel],
) -> None:
    left, _ = pair
    await left.send("hello", {"role": "x", "name": "y", "pid": 1})
    assert (await left.request("status")).type == "status-reply"


async def test_over_a_unix_socket(tmp_path: Path) -> None:
    path = socket_path_for(tmp_path)
    listener = await open_control_listener(path)
    assert os.stat(path).st_mode & 0o777 == 0o600

    async def serve(stream: trio.SocketStream) -> None:
        await ControlChannel(stream).run(echo_handler)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, [listener])
        client = await connect_control(path)
        nursery.start_soon(client.run)
        assert (await client.request("purge", {"prefix": "/x"})).get("result") == {"prefix": "/x"}
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_nobody_listening(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as caught:
        await connect_control(str(tmp_path / "none.sock"))
    assert caught.value.code == ErrorCode.UNAVAILABLE


def test_long_run_dirs_get_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    path = socket_path_for(deep)
    assert len(path.encode()) <= 107
    assert socket_path_for(deep) == path
    assert socket_path_for(tmp_path) == str(tmp_path.resolve() / "control.sock")
