"""Read-while-write: readers of a Fill get bytes as they arrive, from any offset."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from seedcast.edge.fill import BodyInterrupted, Fill, FillState


async def collect(fill: Fill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in fill.stream(start, end)])


async def test_readers_follow_the_writer_from_any_offset() -> None:
    fill = Fill("/k", "/k", [])
    results: dict[str, bytes] = {}

    async def read(name: str, start: int, end: int | None) -> None:
        results[name] = await collect(fill, start, end)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "whole", 0, None)
        nursery.start_soon(read, "middle", 3, 9)
        nursery.start_soon(read, "tail", 8, 12)
        fill.publish_head(FillState.RESPONSE)
        for part in (b"abcd", b"efgh", b"ijkl"):
            await trio.testing.wait_all_tasks_blocked()
            fill.append(part)
        fill.finish()
    assert results == {"whole": b"abcdefghijkl", "middle": b"defghi", "tail": b"ijkl"}
    assert await collect(fill, 0, None) == b"abcdefghijkl"  # a late reader


async def test_readers_see_an_interruption() -> None:
    fill = Fill("/k", "/k", [])
    fill.publish_head(FillState.RESPONSE)
    fill.append(b"partial")
    fill.fail(502, "upstream broke off")
    with pytest.raises(BodyInterrupted):
        await collect(fill)
    # Bytes that did arrive are right: a range inside them is still served.
    assert await collect(fill, 0, 4) == b"part"
    assert fill.done
    fill.fail(504, "later failure")  # the first outcome stays
    assert fill.error_status == 502


async def test_a_short_body_is_an_interruption_for_bounded_readers() -> None:
    fill = Fill("/k", "/k", [])
    fill.publish_head(FillState.RESPONSE)
    fill.append(b"123")
    fill.finish()
    with pytest.raises(BodyInterrupted):
        await collect(fill, 0, 10)
    assert await collect(fill, 1, 3) == b"23"


async def test_failure_before_the_head_releases_waiters() -> None:
    fill = Fill("/k", "/k", [])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fill.head_ready.wait)
        await trio.testing.wait_all_tasks_blocked()
        fill.fail(504, "upstream timed out")
    assert fill.state == FillState.FAILED
    assert fill.error_status == 504
    await fill.wait_done()


async def test_a_single_reader_fill_drops_what_was_read() -> None:
    fill = Fill("/k", "/k", [], shared=False)
    fill.single_reader = True
    fill.publish_head(FillState.RESPONSE)
    for part in (b"aa", b"bb", b"cc"):
        fill.append(part)
    fill.finish()
    assert await collect(fill) == b"aabbcc"
    assert fill.chunks == [b"", b"", b""]
    assert fill.received == 6
