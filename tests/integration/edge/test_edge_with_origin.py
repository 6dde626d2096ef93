"""The edge in front of the real Seedcast origin (in-process), with a synthetic video."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import trio
from edge_harness import FakeClock, start_edge
from seedcast.config import ClusterConfig
from seedcast.http11 import HttpClient
from seedcast.origin.library import Library
from seedcast.origin.server import serve as serve_origin
from seedcast.testing.origin import SYNTHETIC_VERSION, segment_bytes, write_synthetic_video


async def _start_origin(nursery: trio.Nursery, config: ClusterConfig, tmp_path: Path) -> str:
    """The real origin serving a synthetic video "sample"; its host:port."""
    data = tmp_path / "library"
    write_synthetic_video(Library.for_data_dir(data), "sample")
    origin_config = dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, data_dir=str(data))
    )
    addresses: list[str] = await nursery.start(
        lambda task_status: serve_origin(
            origin_config, "origin", listen="127.0.0.1:0", task_status=task_status
        )
    )
    return addresses[0]


async def test_segments_and_manifest_through_the_edge(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, client: HttpClient,
    tmp_path: Path,
) -> None:  # fmt: skip
    origin = await _start_origin(nursery, config, tmp_path)
    clock.now = time.time()  # the origin's Date is the real clock
    edge = await start_edge(nursery, config, clock, origin=f"http://{origin}", prefetch_next=True)
    segment = f"/sample/chunk-{SYNTHETIC_VERSION}-0-00001.m4s"
    first = await client.request("GET", edge.url + segment)
    assert first.status == 200
    assert first.headers["x-cache"] == "MISS"
    assert first.content == segment_bytes("0", 1)
    assert "immutable" in first.headers["cache-control"]
    hit = await client.request("GET", edge.url + segment)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["etag"] == first.headers["etag"]
    ranged = await client.request("GET", edge.url + segment, headers=[("Range", "bytes=0-99")])
    assert ranged.status == 206
    assert ranged.content == segment_bytes("0", 1)[:100]
    # Prefetch asked the origin for segment 2 already.
    following = f"/sample/chunk-{SYNTHETIC_VERSION}-0-00002.m4s"
    pending = edge.edge.fills.get(following)
    if pending is not None:
        await pending.wait_done()
    assert (await client.request("GET", edge.url + following)).headers["x-cache"] == "HIT"

    manifest = await client.request("GET", edge.url + "/sample/manifest.mpd")
    assert manifest.status == 200
    assert manifest.headers["x-cache"] == "MISS"
    clock.advance(config.origin.manifest_max_age + 1)
    revalidated = await client.request("GET", edge.url + "/sample/manifest.mpd")
    assert revalidated.headers["x-cache"] == "REVALIDATED"
    assert revalidated.content == manifest.content
    assert edge.edge.counters.revalidations == 1


async def test_origin_and_edge_answer_ranges_alike(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, client: HttpClient,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Huge numbers, HEAD with Range, conditionals: the same status and Content-Range."""
    origin = await _start_origin(nursery, config, tmp_path)
    clock.now = time.time()
    edge = await start_edge(nursery, config, clock, origin=f"http://{origin}")
    segment = f"/sample/chunk-{SYNTHETIC_VERSION}-0-00001.m4s"
    origin_url = f"http://{origin}{segment}"
    etag = (await client.request("GET", origin_url)).headers["etag"]
    huge = "9" * 40
    cases: list[tuple[str, list[tuple[str, str]]]] = [
        ("GET", [("Range", f"bytes=0-{huge}")]),
        ("GET", [("Range", f"bytes={huge}-")]),
        ("GET", [("Range", f"bytes=-{huge}")]),
        ("GET", [("Range", "bytes=" + "1" * 300 + "-")]),
        ("GET", [("Range", "bytes=0-1,4-5")]),
        ("HEAD", [("Range", "bytes=0-9")]),
        ("GET", [("Range", "bytes=0-9"), ("If-Range", '"stale"')]),
        ("GET", [("If-None-Match", etag)]),
        ("GET", [("If-Match", '"stale"')]),
    ]
    for _ in range(2):  # the edge's first answer streams its fill, the second is a hit
        for method, headers in cases:
            at_origin = await client.request(method, origin_url, headers=headers)
            at_edge = await client.request(method, edge.url + segment, headers=headers)
            assert (at_edge.status, at_edge.headers.get("content-range")) == (
                at_origin.status,
                at_origin.headers.get("content-range"),
            ), (method, headers)
            assert at_edge.content == at_origin.content, (method, headers)
