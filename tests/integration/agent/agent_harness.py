"""In-process helpers for viewer agent tests: a synthetic video torrent, a scriptable CDN.

The video is the origin's synthetic MPD (two 2 s-segment tracks, video and
audio, 3 segments each) with random segment bytes, packed in a BEP 47
torrent with 16 KiB pieces, so a segment spans several pieces. The CDN is a
real HTTP server (seedcast.http11) on 127.0.0.1 that serves those files like
an edge (ranges, ``X-Cache``, ``X-Served-By``) and can be told to fail,
corrupt bytes, or count what it was asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from seedcast.agent.scheduler import SchedulerSettings
from seedcast.agent.server import Agent, AgentSettings
from seedcast.agent.sources import CdnClient
from seedcast.http11 import HttpClient, HttpServer, Request, Response, Router
from seedcast.http11.semantics import Span, parse_range, resolve
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.peer.storage import Storage
from seedcast.peer.swarm import Swarm, SwarmSettings
from seedcast.testing.origin import MANIFEST

VIDEO_ID = "vid"
PIECE = 16 * 1024


@dataclass
class Video:
    metainfo: Metainfo
    torrent: bytes
    folder: Path
    """seed_dir / VIDEO_ID: the files themselves."""
    seed_dir: Path
    files: dict[str, bytes]

    def segment(self, track: str, number: int) -> str:
        return f"chunk-abcd1234-{track}-{number:05d}.m4s"

    def init(self, track: str) -> str:
        return f"init-abcd1234-{track}.m4s"


def make_video(tmp: Path, *, segment_size: int = 50_000) -> Video:
    seed_dir = tmp / "seed"
    folder = seed_dir / VIDEO_ID
    folder.mkdir(parents=True)
    rng = random.Random(7)
    files: dict[str, bytes] = {"manifest.mpd": MANIFEST}
    for track in ("0", "1"):
        files[f"init-abcd1234-{track}.m4s"] = rng.randbytes(700)
        for number in (1, 2, 3):
            size = segment_size + rng.randrange(0, PIECE)
            files[f"chunk-abcd1234-{track}-{number:05d}.m4s"] = rng.randbytes(size)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    torrent = create_torrent(folder, list(files), announce="", name=VIDEO_ID, piece_length=PIECE)
    (folder / f"{VIDEO_ID}.torrent").write_bytes(torrent)
    return Video(Metainfo.parse(torrent), torrent, folder, seed_dir, files)


@dataclass
class FakeCdn:
    """An edge-like HTTP server over the video's folder; see the module docstring."""

    video: Video
    name: str = "fake-edge"
    down: bool = False
    corrupt: dict[str, int] = field(default_factory=dict)
    """File name -> how many more responses for it carry flipped bytes (-1 = always)."""
    seen: Counter[str] = field(default_factory=Counter)
    ranges: list[str] = field(default_factory=list)
    pages: dict[str, bytes] = field(default_factory=dict)
    url: str = ""
    on_request: Callable[[str], None] | None = None

    async def handle(self, request: Request) -> Response:
        path = request.path
        self.seen[path] += 1
        if self.on_request is not None:
            self.on_request(path)
        if self.down:
            return Response.text(503, "down\n")
        if path in self.pages:
            return Response(
                200,
                [("Content-Type", "text/html"), ("X-Served-By", self.name), ("X-Cache", "MISS")],
                self.pages[path],
            )
        prefix = f"/{VIDEO_ID}/"
        name = path[len(prefix) :] if path.startswith(prefix) else ""
        file = self.video.folder / name
        if not name or "/" in name or not file.is_file():
            return Response.text(404, "no such file\n")
        data = file.read_bytes()
        remaining = self.corrupt.get(name, 0)
        if remaining:
            data = bytes(byte ^ 0xFF for byte in data)
            if remaining > 0:
                self.corrupt[name] = remaining - 1
        headers = [("X-Served-By", self.name), ("X-Cache", "HIT"), ("Accept-Ranges", "bytes")]
        value = request.headers.get("range")
        if value:
            self.ranges.append(f"{name} {value}")
            parsed = parse_range(value)
            span = resolve(parsed, len(data)) if parsed is not None else None
            if isinstance(span, Span):
                headers.append(("Content-Range", span.content_range()))
                return Response(206, headers, data[span.start : span.end])
        return Response(200, headers, data)


@contextlib.asynccontextmanager
async def running_cdn(video: Video, **options: object) -> AsyncIterator[FakeCdn]:
    cdn = FakeCdn(video, **options)  # type: ignore[arg-type]
    router = Router()
    router.add("GET", "/{rest:path}", cdn.handle)
    server = HttpServer(router, component="fake-edge")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve, ["127.0.0.1:0"])
        cdn.url = f"http://127.0.0.1:{bound[0][1]}"
        yield cdn
        nursery.cancel_scope.cancel()


def agent_settings(tmp: Path, **changes: object) -> AgentSettings:
    scheduler = changes.pop("scheduler", None) or SchedulerSettings(give_up_seconds=3.0)
    return AgentSettings(
        storage_dir=tmp,
        name=str(changes.pop("name", "agent-test")),
        listen="127.0.0.1:0",
        peer_host="127.0.0.1",
        announce_urls=(),
        scheduler=scheduler,  # type: ignore[arg-type]
        swarm=SwarmSettings(local_address="127.0.0.1", request_timeout=2.0),
        edge_run_timeout=3.0,
        cdn_read_timeout=2.0,
        relay_timeout=2.0,
        **changes,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running_agent(
    tmp: Path, cdn_url: str, video: Video | None, **changes: object
) -> AsyncIterator[Agent]:
    async with HttpClient(connect_timeout=1.0, read_timeout=2.0) as http:
        agent = Agent(agent_settings(tmp, **changes), CdnClient(cdn_url, http=http))
        if video is not None:
            agent.add_video(video.metainfo)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.serve)
                yield agent
                nursery.cancel_scope.cancel()
        finally:
            agent.close()


@contextlib.asynccontextmanager
async def running_seed(
    video: Video, *, storage: Storage | None = None, announce: str = ""
) -> AsyncIterator[Swarm]:
    metainfo = video.metainfo
    swarm = Swarm(
        metainfo,
        storage or Storage(metainfo, video.seed_dir),
        settings=SwarmSettings(local_address="127.0.0.1"),
        listen=("127.0.0.1", 0),
        announce_urls=[announce] if announce else [],
        rng=random.Random(1),
        name="seed",
        have=range(metainfo.piece_count),
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(swarm.serve)
            yield swarm
            nursery.cancel_scope.cancel()
    finally:
        swarm.storage.close()


@contextlib.asynccontextmanager
async def running_tracker() -> AsyncIterator[str]:
    """A Seedcast tracker on 127.0.0.1; yields its announce URL."""
    from seedcast.config import default_config
    from seedcast.tracker.server import TrackerService

    base = default_config()
    config = dataclasses.replace(
        base, tracker=dataclasses.replace(base.tracker, listen="127.0.0.1:0", udp=False)
    )
    service = TrackerService(config, "tracker")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(service.serve)
        yield f"http://{bound[0]}/announce"
        nursery.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (a state the code under test reaches by itself) until true."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - a swarm state has no event to wait on
            await trio.sleep(0.01)


def flip(data: bytes) -> bytes:
    return bytes(byte ^ 0xFF for byte in data)


__all__ = [
    "PIECE",
    "VIDEO_ID",
    "FakeCdn",
    "Video",
    "agent_settings",
    "flip",
    "make_video",
    "running_agent",
    "running_cdn",
    "running_seed",
    "running_tracker",
    "wait_until",
]
