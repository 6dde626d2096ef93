"""The viewer agent over real loopback sockets: a scriptable CDN, real swarms, real HTTP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio
from agent_harness import (
    VIDEO_ID,
    Video,
    flip,
    make_video,
    running_agent,
    running_cdn,
    running_seed,
    running_tracker,
    wait_until,
)
from seedcast.agent.scheduler import SchedulerSettings
from seedcast.agent.server import Agent, open_agent_for
from seedcast.config import default_config
from seedcast.http11 import HttpClient
from seedcast.peer.storage import Storage
from seedcast.player.abr import make_abr
from seedcast.player.session import PlayerOptions, play


@pytest.fixture
def video(tmp_path: Path) -> Video:
    return make_video(tmp_path)


def byte_headers(response: object) -> dict[str, int]:
    headers = response.headers  # type: ignore[attr-defined]
    return {
        source: int(headers.get(f"x-seedcast-bytes-{source}") or 0)
        for source in ("peer", "edge", "origin")
    }


async def get(agent: Agent, name: str, headers: list[tuple[str, str]] | None = None):  # type: ignore[no-untyped-def]
    async with HttpClient(read_timeout=10.0) as client:
        return await client.request("GET", f"{agent.url}/{VIDEO_ID}/{name}", headers=headers)


async def test_alone_it_streams_from_the_edge_and_shares_what_it_got(
    tmp_path: Path, video: Video
) -> None:
    async with running_cdn(video) as cdn, running_agent(tmp_path / "a", cdn.url, video) as agent:
        manifest = await get(agent, "manifest.mpd")
        assert manifest.status == 200
        assert manifest.content == video.files["manifest.mpd"]
        assert manifest.headers.get("content-type") == "application/dash+xml"
        name = video.segment("0", 1)
        response = await get(agent, name)
        assert response.status == 200
        assert response.content == video.files[name]
        assert byte_headers(response) == {"peer": 0, "edge": len(video.files[name]), "origin": 0}
        assert response.headers.get("x-served-by") == "agent-test"
        session = agent.videos[VIDEO_ID]
        span = session.layout.file(name)
        assert span is not None
        # Verified and stored: the swarm has them, so it announces them to peers.
        assert all(session.swarm.picker.has(index) for index in span.pieces)
        # Asking again is served from here: no new CDN request.
        before = cdn.seen[f"/{VIDEO_ID}/{name}"]
        again = await get(agent, name)
        assert again.content == video.files[name]
        assert cdn.seen[f"/{VIDEO_ID}/{name}"] == before
        assert agent.statistics().requests["local"] >= 1


async def test_with_a_seed_segments_come_from_peers(tmp_path: Path, video: Video) -> None:
    async with (
        running_cdn(video) as cdn,
        running_seed(video) as seed,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
    ):
        session = agent.videos[VIDEO_ID]
        assert seed.listen_address is not None
        session.swarm.add_peer(*seed.listen_address)
        await wait_until(lambda: session.swarm.statistics().peers_unchoking_us > 0)
        # The first segment is due at once (the edge's); the next has the peers' time.
        await get(agent, "manifest.mpd")
        await get(agent, video.segment("0", 1))
        name = video.segment("0", 2)
        response = await get(agent, name)
        assert response.content == video.files[name]
        assert byte_headers(response) == {"peer": len(video.files[name]), "edge": 0, "origin": 0}
        assert cdn.seen[f"/{VIDEO_ID}/{name}"] == 0
        assert seed.statistics().bytes_uploaded >= len(video.files[name])


async def test_segments_ahead_of_the_player_are_prefetched_from_peers(
    tmp_path: Path, video: Video
) -> None:
    async with (
        running_cdn(video) as cdn,
        running_seed(video) as seed,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
    ):
        session = agent.videos[VIDEO_ID]
        assert seed.listen_address is not None
        session.swarm.add_peer(*seed.listen_address)
        await wait_until(lambda: session.swarm.statistics().peers_unchoking_us > 0)
        await get(agent, "manifest.mpd")
        await get(agent, video.segment("0", 1))
        # Segments 2 and 3 were not asked for, yet they arrive from the seed.
        for number in (2, 3):
            span = session.layout.file(video.segment("0", number))
            assert span is not None
            with trio.fail_after(5):
                for index in span.pieces:
                    await session.swarm.wait_piece(index)
        assert session.piece_source[span.first_piece] == "peer"
        # Nothing of the other track was fetched: a viewer only takes what it will play.
        audio = session.layout.file(video.segment("1", 3))
        assert audio is not None
        assert not any(session.swarm.picker.has(index) for index in audio.pieces)


async def test_corrupt_edge_bytes_are_refetched_and_never_served(
    tmp_path: Path, video: Video
) -> None:
    name = video.segment("0", 1)
    async with (
        running_cdn(video, corrupt={name: 1}) as cdn,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
    ):
        response = await get(agent, name)
        assert response.status == 200
        assert response.content == video.files[name]
        assert cdn.seen[f"/{VIDEO_ID}/{name}"] >= 2
        statistics = agent.statistics()
        assert statistics.edge_hash_failures >= 1
        # The bad bytes never reached the disk.
        stored = Storage(video.metainfo, tmp_path / "a")
        span = agent.videos[VIDEO_ID].layout.file(name)
        assert span is not None
        assert stored.read_range(span.offset, span.length) == video.files[name]
        stored.close()


async def test_an_edge_that_always_lies_gets_a_502_not_its_bytes(
    tmp_path: Path, video: Video
) -> None:
    name = video.segment("0", 1)
    async with (
        running_cdn(video, corrupt={name: -1}) as cdn,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
    ):
        with trio.fail_after(10):
            response = await get(agent, name)
        assert response.status == 502
        assert b"do not match the torrent" in response.content
        assert flip(video.files[name])[:100] not in response.content


async def test_edge_down_and_no_peers_is_a_clear_error_not_a_hang(
    tmp_path: Path, video: Video
) -> None:
    quick = SchedulerSettings(give_up_seconds=1.5)
    async with (
        running_cdn(video, down=True) as cdn,
        running_agent(tmp_path / "a", cdn.url, video, scheduler=quick) as agent,
    ):
        with trio.fail_after(10):
            response = await get(agent, video.segment("0", 1))
        assert response.status in (502, 504)
        assert b"CDN" in response.content
        assert agent.statistics().requests["error"] == 1
    # Nothing listens there at all.
    async with running_agent(tmp_path / "b", "http://127.0.0.1:9", video, scheduler=quick) as agent:
        with trio.fail_after(10):
            response = await get(agent, video.segment("0", 1))
        assert response.status in (502, 504)


async def test_the_edge_taking_over_a_stalled_peer(tmp_path: Path, video: Video) -> None:
    """A seed that never sends anything: at the handover the edge delivers."""
    async with (
        running_cdn(video) as cdn,
        running_seed(video) as seed,
        running_agent(
            tmp_path / "a",
            cdn.url,
            video,
            scheduler=SchedulerSettings(give_up_seconds=5),
        ) as agent,
    ):
        seed.set_rates(upload=1)  # one byte per second: it accepts requests and stalls
        session = agent.videos[VIDEO_ID]
        assert seed.listen_address is not None
        session.swarm.add_peer(*seed.listen_address)
        await wait_until(lambda: session.swarm.statistics().peers_unchoking_us > 0)
        await get(agent, "manifest.mpd")
        await get(agent, video.segment("0", 2))  # anchors the playhead: 3 is due 2 s later
        name = video.segment("0", 3)
        with trio.fail_after(5):
            response = await get(agent, name)
        assert response.content == video.files[name]
        assert byte_headers(response)["edge"] > 0


async def test_ranges(tmp_path: Path, video: Video) -> None:
    name = video.segment("1", 2)
    data = video.files[name]
    async with running_cdn(video) as cdn, running_agent(tmp_path / "a", cdn.url, video) as agent:
        response = await get(agent, name, [("Range", "bytes=20000-40000")])
        assert response.status == 206
        assert response.content == data[20000:40001]
        assert response.headers.get("content-range") == f"bytes 20000-40000/{len(data)}"
        assert byte_headers(response)["edge"] == 20001
        # Only the pieces holding the range were fetched.
        session = agent.videos[VIDEO_ID]
        span = session.layout.file(name)
        assert span is not None
        assert not session.swarm.picker.has(span.first_piece)
        tail = await get(agent, name, [("Range", "bytes=-10")])
        assert tail.content == data[-10:]
        bad = await get(agent, name, [("Range", f"bytes={len(data) + 5}-")])
        assert bad.status == 416


async def test_other_paths_are_relayed_to_the_cdn(tmp_path: Path, video: Video) -> None:
    page = b"<!doctype html><title>watch</title>"
    async with (
        running_cdn(video, pages={f"/watch/{VIDEO_ID}": page}) as cdn,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
        HttpClient() as client,
    ):
        response = await client.request("GET", f"{agent.url}/watch/{VIDEO_ID}")
        assert response.status == 200
        assert response.content == page
        assert response.headers.get("x-served-by") == "agent-test"
        assert response.headers.get("x-seedcast-upstream") == "fake-edge"
        torrent = await client.request("GET", f"{agent.url}/{VIDEO_ID}/{VIDEO_ID}.torrent")
        assert torrent.content == video.torrent
        missing = await client.request("GET", f"{agent.url}/nothing/here")
        assert missing.status == 404
        health = await client.request("GET", f"{agent.url}/healthz")
        assert health.json()["videos"] == [VIDEO_ID]


async def test_a_video_is_opened_from_the_cdns_torrent(tmp_path: Path, video: Video) -> None:
    async with running_cdn(video) as cdn, running_agent(tmp_path / "a", cdn.url, None) as agent:
        assert agent.videos == {}
        response = await get(agent, "manifest.mpd")
        assert response.status == 200
        assert response.content == video.files["manifest.mpd"]
        assert VIDEO_ID in agent.videos
        async with HttpClient() as client:
            unknown = await client.request("GET", f"{agent.url}/other/manifest.mpd")
        assert unknown.status == 404


async def test_the_headless_player_through_an_in_process_agent(
    tmp_path: Path, video: Video
) -> None:
    """``open_agent_for`` (what ``seedcast play --via-peer`` uses): tracker, seed, CDN."""
    async with running_tracker() as announce, running_cdn(video) as cdn:
        base = default_config()
        tracker_listen = announce.removeprefix("http://").removesuffix("/announce")
        config = dataclasses.replace(
            base, tracker=dataclasses.replace(base.tracker, listen=tracker_listen)
        )
        async with (
            running_seed(video, announce=announce) as seed,
            open_agent_for(
                f"{cdn.url}/{VIDEO_ID}/manifest.mpd",
                config,
                resolver=None,
                local_address="127.0.0.1",
            ) as agent_url,
            HttpClient() as client,
        ):
            assert agent_url.endswith(f"/{VIDEO_ID}/manifest.mpd")
            # The seed announced before the agent, so the tracker names it to the agent.
            await wait_until(lambda: seed.statistics().peers_connected > 0)
            report = await play(
                agent_url,
                make_abr("throughput"),
                client,
                options=PlayerOptions(startup_seconds=0.5, max_buffer_seconds=4.0),
            )
    assert report.segments == 3
    assert report.stall_count == 0
    assert report.bytes_from_peers > 0
    total = report.bytes_from_peers + report.bytes_from_edges + report.bytes_from_origin
    assert report.served_by == {"agent": total}


async def test_hostile_requests_get_answers_and_the_agent_goes_on(
    tmp_path: Path, video: Video
) -> None:
    async with (
        running_cdn(video) as cdn,
        running_agent(tmp_path / "a", cdn.url, video) as agent,
        HttpClient(read_timeout=10.0) as client,
    ):
        name = video.segment("0", 1)
        for target, headers in [
            (f"/{VIDEO_ID}/{name}", [("Range", "bytes=" + "9" * 40 + "-")]),
            (f"/{VIDEO_ID}/{name}", [("Range", "bytes=5-1")]),
            (f"/{VIDEO_ID}/{name}", [("Range", "items=0-5")]),
            (f"/{VIDEO_ID}/{name}", [("Range", "bytes=0-1,5-9")]),
            (f"/{VIDEO_ID}/..%2F..%2Fetc%2Fpasswd", []),
            ("/..%2F/manifest.mpd", []),
            (f"/{'x' * 300}/manifest.mpd", []),
            (f"/{VIDEO_ID}/" + "a/" * 50 + "b.m4s", []),
            ("/%00/manifest.mpd", []),
        ]:
            response = await client.request("GET", agent.url + target, headers=headers)
            assert 200 <= response.status < 600, target
            assert response.headers.get("x-served-by") == "agent-test"
            if response.status in (200, 206):
                assert response.content in video.files[name]
        # Still serving.
        response = await client.request("GET", f"{agent.url}/{VIDEO_ID}/{name}")
        assert response.content == video.files[name]
