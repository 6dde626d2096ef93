"""The edge over real loopback sockets: caching flows, coalescing, stale serving, storage."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing
from edge_harness import FakeClock, Resource, ScriptedOrigin, raw_exchange, start_edge
from seedcast.config import ClusterConfig
from seedcast.http11 import HttpClient
from seedcast.units import KiB, MiB

TARGET = "/sample/chunk-0-00001.m4s"


async def get(client: HttpClient, url: str, **headers: str):  # type: ignore[no-untyped-def]
    return await client.request("GET", url, headers=list(headers.items()))


# --- miss -> hit -> expiry -> revalidate ------------------------------------------


async def test_miss_hit_expiry_revalidate(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"segment-1" * 100, "max-age=10", etag='"v1"')
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    url = edge.url + TARGET

    first = await get(client, url)
    assert first.status == 200
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["x-served-by"] == "edge-1"
    assert first.content == b"segment-1" * 100

    clock.advance(4)
    second = await get(client, url)
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["age"] == "4"
    assert second.headers["etag"] == '"v1"'
    assert second.content == first.content
    assert origin.count(TARGET) == 1

    clock.advance(7)  # age 11 > max-age 10: stale
    third = await get(client, url)
    assert third.headers["x-cache"] == "REVALIDATED"
    assert third.headers["age"] == "0"
    assert third.content == first.content
    assert origin.count(TARGET) == 2
    assert origin.seen[-1].headers["if-none-match"] == '"v1"'

    fourth = await get(client, url)
    assert fourth.headers["x-cache"] == "HIT"
    assert origin.count(TARGET) == 2

    # A client's own conditional request is answered by the edge.
    conditional = await get(client, url, **{"If-None-Match": '"v1"'})
    assert conditional.status == 304
    assert origin.count(TARGET) == 2


async def test_revalidation_with_changed_content_replaces_the_copy(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"old", "max-age=5", etag='"v1"')
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    assert (await get(client, edge.url + TARGET)).content == b"old"
    origin.resources[TARGET] = Resource(b"new!", "max-age=5", etag='"v2"')
    clock.advance(6)
    changed = await get(client, edge.url + TARGET)
    assert changed.headers["x-cache"] == "MISS"
    assert changed.content == b"new!"
    again = await get(client, edge.url + TARGET)
    assert again.headers["x-cache"] == "HIT"
    assert again.content == b"new!"


async def test_stale_while_revalidate_answers_at_once_and_refreshes(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"v1", "max-age=5, stale-while-revalidate=30", etag='"1"')
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    await get(client, edge.url + TARGET)
    hold = trio.Event()
    origin.resources[TARGET] = Resource(
        b"v2", "max-age=5, stale-while-revalidate=30", etag='"2"', hold_head=hold
    )
    clock.advance(10)
    stale = await get(client, edge.url + TARGET)
    assert stale.headers["x-cache"] == "STALE"  # answered while upstream is held
    assert stale.content == b"v1"
    assert edge.edge.counters.background_refreshes == 1
    refresh = edge.edge.fills[TARGET]
    hold.set()
    await refresh.wait_done()
    fresh = await get(client, edge.url + TARGET)
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.content == b"v2"


# --- coalescing and read-while-write --------------------------------------------------


async def test_200_concurrent_misses_make_one_upstream_request(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    body = bytes(range(256)) * (4 * KiB)  # 1 MiB
    release = trio.Event()
    origin.resources[TARGET] = Resource(body, hold_body_after=64 * KiB, release_body=release)
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    viewers = 200
    first_bytes_seen = 0
    all_started = trio.Event()
    bodies: list[bytes] = []
    results: list[str] = []

    async def viewer() -> None:
        nonlocal first_bytes_seen
        async with client.stream("GET", edge.url + TARGET) as response:
            results.append(response.headers["x-cache"])
            parts: list[bytes] = []
            async for chunk in response.iter_bytes():
                if not parts:
                    # Bytes arrive before upstream has finished (read-while-write).
                    first_bytes_seen += 1
                    if first_bytes_seen == viewers:
                        all_started.set()
                parts.append(chunk)
            bodies.append(b"".join(parts))

    with trio.fail_after(30):
        async with trio.open_nursery() as viewers_nursery:
            for _ in range(viewers):
                viewers_nursery.start_soon(viewer)
            await all_started.wait()
            assert not release.is_set()
            release.set()
    assert origin.count(TARGET) == 1
    assert len(bodies) == viewers
    assert all(received == body for received in bodies)
    assert results.count("MISS") == viewers
    assert edge.edge.counters.coalesced_waiters == viewers - 1
    hit = await get(client, edge.url + TARGET)
    assert hit.headers["x-cache"] == "HIT"
    assert origin.count(TARGET) == 1


async def test_range_from_a_partly_fetched_object(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    body = bytes(range(256)) * 1024  # 256 KiB
    release = trio.Event()
    origin.resources[TARGET] = Resource(body, hold_body_after=100 * KiB, release_body=release)
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    async with client.stream("GET", edge.url + TARGET) as whole:
        iterator = whole.iter_bytes().__aiter__()
        await iterator.__anext__()  # the fill is under way, first 100 KiB in
        ranged = await get(client, edge.url + TARGET, Range="bytes=1000-1999")
        assert ranged.status == 206
        assert ranged.headers["content-range"] == f"bytes 1000-1999/{len(body)}"
        assert ranged.content == body[1000:2000]
        release.set()
        async for _ in iterator:
            pass
    assert origin.count(TARGET) == 1


async def test_ranges_from_the_cache_and_bad_ranges(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    body = bytes(range(256)) * 40
    origin.resources[TARGET] = Resource(body, etag='"r"')
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    await get(client, edge.url + TARGET)
    suffix = await get(client, edge.url + TARGET, Range="bytes=-100")
    assert suffix.status == 206
    assert suffix.content == body[-100:]
    assert suffix.headers["x-cache"] == "HIT"
    for beyond in (f"bytes={len(body)}-", "bytes=" + "9" * 40 + "-"):  # huge numbers: exact
        unsatisfiable = await get(client, edge.url + TARGET, Range=beyond)
        assert unsatisfiable.status == 416
        assert unsatisfiable.headers["content-range"] == f"bytes */{len(body)}"
    for bad in ("bytes=5-1", "bytes=abc", "lines=1-2", "bytes=0-1,4-5", "bytes=1" + "0" * 300):
        ignored = await get(client, edge.url + TARGET, Range=bad)
        assert ignored.status == 200
        assert ignored.content == body
    stale_validator = await get(client, edge.url + TARGET, Range="bytes=0-9", **{"If-Range": '"x"'})
    assert stale_validator.status == 200
    assert origin.count(TARGET) == 1


# --- upstream failure -------------------------------------------------------------------


async def test_origin_killed_stale_served_and_uncached_gets_502(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"keep me", "max-age=1")
    edge = await start_edge(
        nursery, config, clock, origin=origin.url, stale_if_error=60.0, upstream_timeout=2.0
    )
    assert (await get(client, edge.url + TARGET)).status == 200
    await origin.stop()
    clock.advance(30)  # stale, but inside the stale-if-error window
    stale = await get(client, edge.url + TARGET)
    assert stale.status == 200
    assert stale.headers["x-cache"] == "STALE"
    assert stale.content == b"keep me"
    missing = await get(client, edge.url + "/sample/never-cached.m4s")
    assert missing.status == 502
    assert missing.content.count(b"\n") == 1
    clock.advance(60)  # beyond the window: no stale copy any more
    too_old = await get(client, edge.url + TARGET)
    assert too_old.status == 502


async def test_origin_5xx_serves_stale(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"good", "max-age=1, stale-if-error=100")
    edge = await start_edge(nursery, config, clock, origin=origin.url, stale_if_error=0.0)
    await get(client, edge.url + TARGET)
    origin.resources[TARGET] = Resource(b"oops", None, status=503)
    clock.advance(50)
    answer = await get(client, edge.url + TARGET)
    assert answer.status == 200
    assert answer.headers["x-cache"] == "STALE"
    assert answer.content == b"good"
    fresh_failure = await get(client, edge.url + "/other")
    assert fresh_failure.status == 404  # an origin answer, passed through


async def test_hung_origin_gives_504_and_waiters_never_hang(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"never", hold_head=trio.Event())
    edge = await start_edge(nursery, config, clock, origin=origin.url, upstream_timeout=0.3)
    statuses: list[int] = []

    async def viewer() -> None:
        statuses.append((await get(client, edge.url + TARGET)).status)

    with trio.fail_after(10):
        async with trio.open_nursery() as viewers:
            for _ in range(5):
                viewers.start_soon(viewer)
    assert statuses == [504] * 5
    assert origin.count(TARGET) == 1


async def test_upstream_breaking_off_mid_body_is_not_cached(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    body = b"x" * (200 * KiB)
    origin.resources[TARGET] = Resource(body, abort_body_after=50 * KiB)
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    received = 0
    failed = False
    try:
        async with client.stream("GET", edge.url + TARGET) as response:
            async for chunk in response.iter_bytes():
                received += len(chunk)
    except Exception:
        failed = True
    assert failed or received < len(body)  # truncated, never wrong bytes
    assert edge.edge.store.lookup(TARGET, []) is None
    origin.resources[TARGET] = Resource(body)
    whole = await get(client, edge.url + TARGET)
    assert whole.content == body
    assert whole.headers["x-cache"] == "MISS"


# --- caching rules over the wire -----------------------------------------------------------


async def test_private_no_store_authorization_and_vary(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources["/private"] = Resource(b"mine", "private, max-age=60")
    origin.resources["/nostore"] = Resource(b"gone", "no-store")
    origin.resources["/auth"] = Resource(b"secret", "max-age=60")
    origin.resources["/vary"] = Resource(
        b"varies", "max-age=60", headers=[("Vary", "Accept-Language")]
    )
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    for path in ("/private", "/nostore"):
        await get(client, edge.url + path)
        assert (await get(client, edge.url + path)).headers["x-cache"] != "HIT"
        assert origin.count(path) == 2
    await get(client, edge.url + "/auth", Authorization="Bearer a")
    assert (await get(client, edge.url + "/auth")).headers["x-cache"] == "MISS"
    assert (await get(client, edge.url + "/auth", Authorization="Bearer b")).headers[
        "x-cache"
    ] == "PASS"
    assert origin.seen[-1].headers["authorization"] == "Bearer b"
    await get(client, edge.url + "/vary", **{"Accept-Language": "en"})
    english = await get(client, edge.url + "/vary", **{"Accept-Language": "en"})
    french = await get(client, edge.url + "/vary", **{"Accept-Language": "fr"})
    assert english.headers["x-cache"] == "HIT"
    assert french.headers["x-cache"] == "MISS"
    assert origin.count("/vary") == 2


async def test_budget_holds_under_many_concurrent_fills(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    for number in range(40):
        origin.resources[f"/o/{number}"] = Resource(bytes([number]) * (100 * KiB))
    edge = await start_edge(nursery, config, clock, origin=origin.url, cache_memory=1 * MiB)
    store = edge.edge.store
    samples: list[int] = []

    def sample(_: object) -> None:  # runs at the origin while fills are in flight
        samples.append(store.memory.used + store.memory.reserved)

    origin.on_request = sample
    async with trio.open_nursery() as viewers:
        for number in range(40):
            viewers.start_soon(get, client, f"{edge.url}/o/{number}")
    samples.append(store.memory.used + store.memory.reserved)
    assert max(samples) <= 1 * MiB
    assert store.memory.reserved == 0
    assert store.memory.statistics().evictions > 0


async def test_disk_tier_survives_a_restart(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient, tmp_path: Path,
) -> None:  # fmt: skip
    body = bytes(range(256)) * 1000
    origin.resources[TARGET] = Resource(body, "max-age=3600", etag='"d"')
    disk = {"cache_disk_dir": str(tmp_path / "disk"), "cache_disk": 16 * MiB}
    first = await start_edge(nursery, config, clock, origin=origin.url, **disk)
    assert (await get(client, first.url + TARGET)).headers["x-cache"] == "MISS"
    await first.stop()
    # Debris a crash would leave: must be discarded at start-up.
    (tmp_path / "disk" / "aa").mkdir(parents=True, exist_ok=True)
    (tmp_path / "disk" / "aa" / ("a" * 64 + ".3.partial")).write_bytes(b"half")
    await origin.stop()
    clock.advance(60)
    second = await start_edge(nursery, config, clock, origin=origin.url, **disk)
    hit = await get(client, second.url + TARGET)
    assert hit.status == 200
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["age"] == "60"
    assert hit.content == body
    assert not list((tmp_path / "disk").rglob("*.partial"))
    ranged = await get(client, second.url + TARGET, Range="bytes=10-19")
    assert ranged.content == body[10:20]


async def test_tiered_caching_through_a_parent_edge(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"tiered", "max-age=100")
    parent = await start_edge(nursery, config, clock, origin=origin.url, name="edge-2")
    clock.advance(5)
    await get(client, parent.url + TARGET)  # parent caches at age 0
    clock.advance(10)
    child = await start_edge(nursery, config, clock, origin=origin.url, parent=parent.url)
    answer = await get(client, child.url + TARGET)
    assert answer.headers["x-served-by"] == "edge-1"
    assert answer.headers["x-cache"] == "MISS"
    assert answer.headers["age"] == "10"  # the parent's Age travels down
    assert origin.count(TARGET) == 1
    clock.advance(5)
    assert (await get(client, child.url + TARGET)).headers["age"] == "15"


async def test_prefetch_of_the_next_segment(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    for number in (1, 2):
        origin.resources[f"/v/chunk-0-{number:05d}.m4s"] = Resource(b"seg%d" % number)
    edge = await start_edge(nursery, config, clock, origin=origin.url, prefetch_next=True)
    await get(client, edge.url + "/v/chunk-0-00001.m4s")
    prefetch = edge.edge.fills.get("/v/chunk-0-00002.m4s")
    if prefetch is not None:  # else it has finished already
        assert prefetch.prefetch
        await prefetch.wait_done()
    second = await get(client, edge.url + "/v/chunk-0-00002.m4s")
    assert second.content == b"seg2"
    assert second.headers["x-cache"] == "HIT"
    assert origin.count("/v/chunk-0-00002.m4s") == 1
    assert edge.edge.counters.prefetches == 2  # segment 3 is asked for too (and is a 404)
    assert edge.edge.counters.prefetch_hits == 1


# --- hostile and local requests -------------------------------------------------------------


async def test_hostile_requests(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
) -> None:  # fmt: skip
    origin.resources["/x"] = Resource(b"x")
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    host = edge.host
    absolute = await raw_exchange(
        host, b"GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    )
    assert absolute.startswith(b"HTTP/1.1 400")
    foreign = await raw_exchange(host, b"GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert foreign.startswith(b"HTTP/1.1 421")
    connect = await raw_exchange(
        host, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"
    )
    assert connect.split(b" ")[1] in (b"400", b"405", b"501")
    huge = await raw_exchange(
        host,
        b"GET /x HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
    )
    assert huge.startswith(b"HTTP/1.1 431") or huge.startswith(b"HTTP/1.1 400")
    garbage = await raw_exchange(host, b"\x00\x01\x02 nonsense\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400") or garbage == b""
    post = await raw_exchange(
        host, b"POST /x HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Length: 0\r\n\r\n"
    )
    assert post.startswith(b"HTTP/1.1 405")
    ours = await raw_exchange(
        host,
        b"GET http://" + host.encode() + b"/x HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
    )
    assert ours.startswith(b"HTTP/1.1 200")
    assert [seen.target for seen in origin.seen] == ["/x"]


async def test_health_purge_and_metrics(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    for path in ("/sample/a.m4s", "/sample/b.m4s", "/other/c.m4s"):
        origin.resources[path] = Resource(b"data")
    edge = await start_edge(nursery, config, clock, origin=origin.url, admin_token="s3cret")
    for path in ("/sample/a.m4s", "/sample/b.m4s", "/other/c.m4s"):
        await get(client, edge.url + path)
    health = await get(client, edge.url + "/healthz")
    assert health.status == 200
    load = health.json()
    assert load["status"] == "ok"
    assert load["open_connections"] >= 1
    assert load["bytes_out_per_s"] > 0
    assert load["load"] >= load["open_connections"]
    assert float(health.headers["x-seedcast-load"]) == load["load"]
    denied = await client.request(
        "POST", edge.url + "/_seedcast/purge", body=json.dumps({"id": "sample"}).encode()
    )
    assert denied.status == 403
    purged = await client.request(
        "POST",
        edge.url + "/_seedcast/purge",
        headers=[("Authorization", "Bearer s3cret")],
        body=json.dumps({"id": "sample"}).encode(),
    )
    assert purged.status == 200
    assert purged.json() == {"purged": 2}
    assert (await get(client, edge.url + "/sample/a.m4s")).headers["x-cache"] == "MISS"
    assert (await get(client, edge.url + "/other/c.m4s")).headers["x-cache"] == "HIT"
    assert edge.edge.purge_message({"prefix": "/other/"}) == 1
    bad = await client.request(
        "POST",
        edge.url + "/_seedcast/purge",
        headers=[("Authorization", "Bearer s3cret")],
        body=b"[1, 2",
    )
    assert bad.status == 400
    metrics = (await get(client, edge.url + "/metrics")).text()
    assert 'seedcast_edge_requests_total{cache="HIT"}' in metrics
    assert "seedcast_edge_byte_hit_ratio" in metrics
    assert 'seedcast_edge_cache_bytes{tier="memory"}' in metrics
    assert "seedcast_edge_upstream_latency_seconds_bucket" in metrics
    assert "seedcast_edge_open_connections" in metrics


async def test_egress_cap_keeps_bodies_intact(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    body = bytes(range(256)) * 2048  # 512 KiB
    origin.resources[TARGET] = Resource(body)
    edge = await start_edge(nursery, config, clock, origin=origin.url, upload=64 * MiB)
    miss = await get(client, edge.url + TARGET)
    hit = await get(client, edge.url + TARGET)
    assert miss.content == body
    assert hit.content == body
    assert edge.edge.bucket is not None
    assert edge.edge.bucket.statistics().bytes_consumed == 2 * len(body)


async def test_head_requests_miss_and_hit(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    origin.resources[TARGET] = Resource(b"h" * 5000)
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    miss = await client.request("HEAD", edge.url + TARGET)
    assert miss.status == 200
    assert miss.headers["content-length"] == "5000"
    assert miss.content == b""
    assert origin.seen[-1].method == "GET"  # the edge fetches the object to cache it
    hit = await client.request("HEAD", edge.url + TARGET)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["content-length"] == "5000"
    assert (await get(client, edge.url + TARGET)).content == b"h" * 5000
    assert origin.count(TARGET) == 1


async def test_purge_during_a_fill_keeps_the_old_bytes_out(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    release = trio.Event()
    origin.resources[TARGET] = Resource(b"v1" * 1000, hold_body_after=100, release_body=release)
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    async with client.stream("GET", edge.url + TARGET) as response:
        iterator = response.iter_bytes().__aiter__()
        await iterator.__anext__()
        assert edge.edge.purge(video_id="sample") == 0
        release.set()
        async for _ in iterator:
            pass
    assert edge.edge.store.lookup(TARGET, []) is None
    assert (await get(client, edge.url + TARGET)).headers["x-cache"] == "MISS"


async def test_concurrent_misses_for_two_variants_make_one_fetch_each(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    hold = trio.Event()
    origin.resources["/vary"] = Resource(
        b"body", "max-age=60", headers=[("Vary", "Accept-Language")], hold_head=hold
    )
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    answers: list[tuple[str, str]] = []

    async def viewer(language: str) -> None:
        response = await get(client, edge.url + "/vary", **{"Accept-Language": language})
        answers.append((language, response.headers["x-cache"]))

    async with trio.open_nursery() as viewers:
        for language in ("en", "fr", "en", "fr", "fr"):
            viewers.start_soon(viewer, language)
        # Every viewer waits on the first fill (no Vary is known yet) before upstream answers.
        while "/vary" not in edge.edge.fills or edge.edge.fills["/vary"].waiters < 5:
            await trio.testing.wait_all_tasks_blocked()
        hold.set()
    assert origin.count("/vary") == 2  # one per variant, not one per viewer
    assert sorted(answers) == [("en", "MISS")] * 2 + [("fr", "MISS")] * 3
    again = await get(client, edge.url + "/vary", **{"Accept-Language": "fr"})
    assert again.headers["x-cache"] == "HIT"


async def test_control_handlers_purge_drain_and_status(
    nursery: trio.Nursery, config: ClusterConfig, clock: FakeClock, origin: ScriptedOrigin,
    client: HttpClient,
) -> None:  # fmt: skip
    from seedcast.edge.commands import EdgeRole

    origin.resources[TARGET] = Resource(b"x")
    edge = await start_edge(nursery, config, clock, origin=origin.url)
    role = EdgeRole()
    assert await role.purge({"prefix": "/"}) == {"purged": 0}  # not running yet
    role.on_ready(edge.edge, edge.server)
    await get(client, edge.url + TARGET)
    await get(client, edge.url + TARGET)
    assert role.statistics()["hit_ratio"] == 0.5
    assert await role.purge({"type": "purge", "prefix": "/sample/"}) == {"purged": 1}
    assert await role.drain({"type": "drain"}) == {"drained": True}
    assert edge.edge.draining
    assert edge.edge.load()["status"] == "draining"
