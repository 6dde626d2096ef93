"""The viewer agent: a local HTTP server any DASH player points at, fed by peers and the CDN.

A player asks ``http://<agent>/<id>/manifest.mpd`` and then segments relative
to it. For each video the agent runs a :class:`~seedcast.peer.swarm.Swarm`
on the video's torrent (its files are the MPD and every segment, each a whole
set of pieces) and a :class:`~seedcast.agent.scheduler.StreamScheduler`
that decides, piece by piece, who delivers: see that module for the policy.
This module is the trio shell around them:

* **Serving** (:meth:`VideoSession.serve_file`): pieces already here are
  served at once, from the verified files on disk (``sendfile``). Otherwise
  the request is registered with the scheduler and waits until every piece it
  covers is verified, or the scheduler gives up (502/504 with a one-line
  reason). Ranges are honoured (206). Every response says where its bytes came
  from: ``X-Seedcast-Bytes-Peer`` / ``-Edge`` / ``-Origin`` (and ``-Cache``
  for pieces found on disk at start), and ``X-Served-By: <agent name>``.
* **Planning** (``_planner``): after every event (a request, a verified
  piece, an edge fetch ending) and at least every ``idle_check_seconds``, the
  scheduler's :class:`~seedcast.agent.scheduler.Plan` is applied: piece
  deadlines and the prefetch window go to the swarm's picker (which then
  requests rarest first within the window, time-critical pieces from two
  peers), edge runs start, expired requests are answered.
* **The edge** (``_edge_run``): one HTTP range request per run through the
  :class:`~seedcast.agent.sources.CdnClient` (DNS-steered, from the viewer's
  address). Each piece is cut from the stream as it arrives and handed to
  :meth:`Swarm.add_verified_piece`, which checks its SHA-1 and announces it to
  the swarm (``have``), so viewers seed each other. A mismatch is never
  stored nor served; the piece is planned again. A failure makes the DNS
  answer be asked again (another edge when health checks took this one out).
* **Other paths** (``/watch/<id>``, ``/static/...``, the ``.torrent``,
  ``/catalog``) are relayed to the CDN as they are, so the origin's player
  page works through the agent.

A video the agent has no torrent for is opened on first request: its
``/<id>/<id>.torrent`` is fetched from the CDN. :func:`open_agent_for` runs
an agent inside another program (``seedcast play --via-peer``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import trio
from seedcast.agent.scheduler import (
    EdgeRun,
    FileSpan,
    Plan,
    SchedulerSettings,
    StreamScheduler,
    Timeline,
    TorrentLayout,
)
from seedcast.agent.sources import CDN_ERRORS, CdnClient, CdnUnavailable, PieceCutter, PieceSlot
from seedcast.agent.sources import source_of as response_source
from seedcast.config import ClusterConfig
from seedcast.errors import RemoteProtocolError
from seedcast.http11 import FileBody, Headers, HttpClient, HttpServer, Request, Response, Router
from seedcast.http11.semantics import Unsatisfiable, parse_content_range, parse_range, resolve
from seedcast.peer.metainfo import Metainfo
from seedcast.peer.storage import Storage
from seedcast.peer.swarm import PieceCompleted, Swarm, SwarmSettings
from seedcast.provenance import LOCAL, PEER, SERVED_BY, UPSTREAM, Source, bytes_header
from seedcast.units import parse_host_port

__all__ = [
    "DEFAULT_CDN_HOST",
    "SOURCES",
    "WASTE_REASONS",
    "Agent",
    "AgentSettings",
    "AgentStatistics",
    "VideoSession",
    "agent_settings_from_config",
    "default_cdn_url",
    "open_agent_for",
]

log = logging.getLogger("seedcast.agent.server")

DEFAULT_CDN_HOST = "video.netcinema.test"
"""The content provider's name; its CNAME leads to the CDN's steered name."""
SOURCES = (PEER, Source.EDGE.value, Source.ORIGIN.value, LOCAL)
"""Where a piece came from: a peer, an edge, the origin (DNS fallback), or our disk at start."""
WASTE_REASONS = ("duplicate", "hash", "skipped")
"""Why downloaded bytes were not needed: they arrived for a block or piece already here (or
of a piece never finished), failed verification, or lay outside the range asked for."""
_EDGE_RUN_ERRORS: tuple[type[BaseException], ...] = (*CDN_ERRORS, trio.TooSlowError)
_VIDEO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EXPOSED = ", ".join([SERVED_BY, *(bytes_header(label) for label in SOURCES[:3])])
_RELAYED_HEADERS = frozenset(
    {
        "content-type",
        "cache-control",
        "etag",
        "last-modified",
        "location",
        "content-range",
        "accept-ranges",
        "set-cookie",
        "vary",
        "x-cache",
        "age",
    }
)
_FORWARDED_REQUEST_HEADERS = frozenset(
    {"accept", "accept-language", "cookie", "if-none-match", "if-modified-since", "range"}
)


def default_cdn_url(config: ClusterConfig) -> str:
    """``peers.cdn_url``, else ``http://video.netcinema.test:<first edge's port>``."""
    configured = getattr(config.peers, "cdn_url", "")
    if configured:
        return str(configured)
    port = parse_host_port(config.edges[0].listen)[1] if config.edges else 80
    return f"http://{DEFAULT_CDN_HOST}:{port}"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    storage_dir: Path
    """Where the videos' files are kept (``<dir>/<id>/...``); never the origin's library."""
    name: str = "agent"
    listen: str = "127.0.0.1:0"
    """HTTP address for players."""
    peer_host: str = "127.0.0.1"
    """BitTorrent address of swarms opened on demand (port chosen by the system)."""
    announce_urls: tuple[str, ...] | None = None
    """Trackers; None = each torrent's own announce URL."""
    extra_announce_urls: tuple[str, ...] = ()
    """Tried after the torrent's own (when ``announce_urls`` is None)."""
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    swarm: SwarmSettings = field(default_factory=lambda: SwarmSettings(request_timeout=8.0))
    """A block a peer is slow with is asked elsewhere only after ``request_timeout``: a
    piece due soon goes to the edge first, and asking again early costs duplicates."""
    restrict_to_window: bool = True
    """Only fetch what the player will need (a viewer), not the whole torrent."""
    edge_run_timeout: float = 8.0
    """Longest a single edge range request may take."""
    cdn_read_timeout: float = 3.0
    relay_timeout: float = 8.0
    """How long a relayed request (page, script, torrent) keeps retrying the CDN."""
    max_videos: int = 16


@dataclass(frozen=True, slots=True)
class AgentStatistics:
    name: str
    videos: int
    peers: int
    bytes_up: int
    bytes_down: int
    served_bytes: dict[str, int]
    fetched_bytes: dict[str, int]
    requests: dict[str, int]
    wait_seconds_total: float
    waits: int
    edge_runs: int
    edge_failures: int
    edge_hash_failures: int
    peer_hash_failures: int
    bans: int
    waiting_requests: int
    last_edge: str
    downloaded_bytes: int = 0
    """Bytes received for the videos: piece data from peers plus the edge's response bodies."""
    played_bytes: int = 0
    """File bytes served to players from the videos' pieces."""
    wasted_bytes: dict[str, int] = field(default_factory=dict)
    """Downloaded bytes not needed, by reason (:data:`WASTE_REASONS`)."""

    @property
    def download_ratio(self) -> float | None:
        """Bytes downloaded per byte played (None before anything was played)."""
        return self.downloaded_bytes / self.played_bytes if self.played_bytes else None

    @property
    def p2p_share(self) -> float:
        """Share of the media bytes served that came from peers (0 when nothing served)."""
        total = sum(self.served_bytes.get(source, 0) for source in ("peer", "edge", "origin"))
        return self.served_bytes.get("peer", 0) / total if total else 0.0

    def as_status(self) -> dict[str, Any]:
        """Scalar figures for ``seedcast status``."""
        served = self.served_bytes
        ratio = self.download_ratio
        return {
            "peers": self.peers,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "bytes_peer": served.get("peer", 0),
            "bytes_edge": served.get("edge", 0),
            "bytes_origin": served.get("origin", 0),
            "p2p_share": round(self.p2p_share, 3),
            "requests": sum(self.requests.values()),
            "edge_failures": self.edge_failures,
            "hash_failures": self.edge_hash_failures + self.peer_hash_failures,
            "bans": self.bans,
            "downloaded_bytes": self.downloaded_bytes,
            "played_bytes": self.played_bytes,
            "wasted_bytes": sum(self.wasted_bytes.values()),
            "download_ratio": None if ratio is None else round(ratio, 4),
        }


class _Waiter:
    """How a waiting player request is woken (the scheduler knows which pieces it waits for)."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.error: tuple[int, str] | None = None

    def fail(self, status: int, message: str) -> None:
        if not self.event.is_set():
            self.error = (status, message)
            self.event.set()


class _Wakeup:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class _SwarmView:
    """The scheduler's window on a swarm, snapshotted once per plan."""

    __slots__ = ("_picker", "_unchoking")

    def __init__(self, swarm: Swarm) -> None:
        self._picker = swarm.picker
        self._unchoking = swarm.statistics().peers_unchoking_us

    def has(self, index: int) -> bool:
        return self._picker.has(index)

    def availability(self, index: int) -> int:
        return self._picker.availability(index)

    def unchoking_peers(self) -> int:
        return self._unchoking


class VideoSession:
    """One video: its swarm, scheduler and waiting requests. Runs in the agent's nursery."""

    def __init__(self, agent: Agent, video_id: str, metainfo: Metainfo, swarm: Swarm) -> None:
        self.agent = agent
        self.video_id = video_id
        self.metainfo = metainfo
        self.swarm = swarm
        self.storage = swarm.storage
        self.layout = TorrentLayout(metainfo)
        self.scheduler = StreamScheduler(
            self.layout, agent.settings.scheduler, rng=random.Random(agent.rng.random())
        )
        self.piece_source: dict[int, str] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._wakeup = _Wakeup()
        self._nursery: trio.Nursery | None = None
        self.manifest_name = next(
            (name for name in self.layout.names if name.endswith(".mpd")), None
        )
        self.edge_runs = 0
        self.edge_failures = 0
        self.edge_hash_failures = 0
        self.edge_bytes = 0
        """Body bytes of the edge's answers to this video's runs."""
        self.played_bytes = 0
        self.peer_payload = 0
        """Bytes of the pieces the peers completed (trailing padding left out)."""
        """File bytes served to players from verified pieces."""
        self.wasted: Counter[str] = Counter({reason: 0 for reason in WASTE_REASONS})
        """Edge bytes that were not needed, by reason (the peers' share: :meth:`waste`)."""
        self.last_error = ""
        swarm.picker.restrict_to_priority = agent.settings.restrict_to_window
        # Never ask a second peer for a block: a piece the peers are late with goes to
        # the edge (once), so no byte arrives twice.
        swarm.picker.critical_seconds = -math.inf
        swarm.add_piece_listener(self._on_piece)

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.swarm.serve)
            self._load_timeline()
            nursery.start_soon(self._planner)
            task_status.started()

    def _on_piece(self, event: PieceCompleted) -> None:
        source = "cache" if event.source == "disk" else event.source
        payload = self.metainfo.piece_payload(event.index)
        if source == "peer":
            self.peer_payload += payload
        self.piece_source.setdefault(event.index, source)
        self.agent.fetched_bytes[source] += payload
        for request_id in self.scheduler.piece_arrived(event.index, trio.current_time(), source):
            waiter = self._waiters.get(request_id)
            if waiter is not None:
                waiter.event.set()
        self._wakeup.set()

    def _load_timeline(self) -> None:
        if self.scheduler.timeline is not None or self.manifest_name is None:
            return
        span = self.layout.file(self.manifest_name)
        if span is None or not all(self.swarm.picker.has(index) for index in span.pieces):
            return
        from seedcast.dash import parse_manifest

        try:
            manifest = parse_manifest(self.storage.read_range(span.offset, span.length))
        except (RemoteProtocolError, OSError) as error:
            log.warning(
                "manifest unusable for scheduling",
                extra={"fields": {"video": self.video_id, "error": error}},
            )
            self.manifest_name = None
            return
        self.scheduler.set_timeline(Timeline.from_manifest(manifest))

    async def _planner(self) -> None:
        while True:
            now = trio.current_time()
            self._load_timeline()
            plan = self.scheduler.plan(now, _SwarmView(self.swarm))
            self._apply(plan)
            with trio.move_on_at(plan.next_check):
                await self._wakeup.wait()

    def _apply(self, plan: Plan) -> None:
        self.swarm.prioritise(plan.deadlines, plan.window)
        assert self._nursery is not None
        for run in plan.edge_runs:
            self.edge_runs += 1
            self._nursery.start_soon(self._edge_run, run)
        for expired in plan.expired:
            waiter = self._waiters.get(expired.request_id)
            if waiter is not None:
                waiter.fail(expired.status, expired.message)

    @property
    def downloaded_bytes(self) -> int:
        """Every byte received for this video: piece data from peers plus the edge's bodies."""
        return self.swarm.bytes_downloaded + self.edge_bytes

    def waste(self) -> dict[str, int]:
        """Downloaded bytes that were not needed, by reason (see :data:`WASTE_REASONS`)."""
        wasted = dict(self.wasted)
        peer_failures = max(0, self.swarm.hash_failures - self.edge_hash_failures)
        peer_hash = min(peer_failures * self.metainfo.piece_length, self.swarm.bytes_downloaded)
        wasted["hash"] += peer_hash
        wasted["duplicate"] += max(0, self.swarm.bytes_downloaded - self.peer_payload - peer_hash)
        return wasted

    # -- the edge ---------------------------------------------------------------------------

    async def _edge_run(self, run: EdgeRun) -> None:
        agent = self.agent
        cdn = agent.cdn
        span = self.layout.file(run.name)
        assert span is not None
        slots = []
        for index in run.pieces:
            start, end = span.file_range(index)
            slots.append(PieceSlot(index, end - start, self.layout.piece_size(index)))
        path = f"/{self.video_id}/{quote(run.name)}"
        headers = [("Range", f"bytes={run.file_start}-{run.file_end - 1}")]
        try:
            with trio.fail_after(agent.settings.edge_run_timeout):
                async with cdn.stream(
                    path, headers, read_timeout=agent.settings.cdn_read_timeout
                ) as response:
                    self.scheduler.edge_first_byte(run.run_id, trio.current_time())
                    source = response_source(response)
                    skip = _skip_for(response.status, response.headers, run)
                    self.wasted["skipped"] += skip
                    cutter = PieceCutter(slots, skip=skip)
                    async for chunk in response.iter_bytes():
                        self.edge_bytes += len(chunk)
                        for index, data in cutter.feed(chunk):
                            self._take_edge_piece(index, data, source)
                        if cutter.done:
                            break
                    if not cutter.done:
                        raise RemoteProtocolError(
                            f"response ended {cutter.expected_bytes} bytes short",
                            reason="truncated",
                        )
            self.scheduler.edge_run_done(run.run_id, trio.current_time())
        except _EDGE_RUN_ERRORS as error:
            reason = _describe(error)
            self.edge_failures += 1
            self.last_error = reason
            cdn.forget()
            self.scheduler.edge_run_failed(run.run_id, trio.current_time(), reason)
            log.info(
                "edge fetch failed",
                extra={"fields": {"video": self.video_id, "file": run.name, "error": reason}},
            )
        finally:
            self._wakeup.set()

    def _take_edge_piece(self, index: int, data: bytes, source: str) -> None:
        payload = self.metainfo.piece_payload(index)
        if self.swarm.picker.has(index):
            self.wasted["duplicate"] += payload  # the peers were faster after all
            self.scheduler.edge_piece_done(index)
            return
        if self.swarm.add_verified_piece(index, data, source=source):
            self.scheduler.edge_piece_done(index)
            return
        self.wasted["hash"] += payload
        self.edge_hash_failures += 1
        self.scheduler.edge_piece_mismatch(index, trio.current_time())
        log.warning(
            "edge bytes failed verification",
            extra={"fields": {"video": self.video_id, "piece": index, "source": source}},
        )

    # -- serving ------------------------------------------------------------------------------

    async def serve_file(self, request: Request, span: FileSpan) -> Response:
        agent = self.agent
        wanted = _wanted_range(request.headers.get("range"), span.length)
        if wanted is None:
            return agent.error(
                416,
                f"range not satisfiable for {span.name} ({span.length} bytes)",
                [("Content-Range", f"bytes */{span.length}")],
            )
        start, end, partial = wanted
        pieces = span.pieces_for(start, end)
        now = trio.current_time()
        scheduler = self.scheduler
        request_id = scheduler.request(span.name, pieces, now, have=self.swarm.picker.has)
        try:
            if not scheduler.ready(request_id):
                waiter = self._waiters[request_id] = _Waiter()
                self._wakeup.set()
                limit = agent.settings.scheduler.give_up_seconds + 2.0
                with trio.move_on_after(limit):
                    await waiter.event.wait()
                agent.waits += 1
                agent.wait_seconds += trio.current_time() - now
                if waiter.error is not None:
                    agent.requests["error"] += 1
                    return agent.error(*waiter.error)
                if not scheduler.ready(request_id):
                    agent.requests["error"] += 1
                    return agent.error(504, f"{span.name}: not delivered within {limit:g} s")
                agent.requests["waited"] += 1
            else:
                agent.requests["local"] += 1
        finally:
            scheduler.finish(request_id)
            self._waiters.pop(request_id, None)
        if span.name == self.manifest_name:
            self._load_timeline()
        return self._file_response(span, start, end, partial)

    def _file_response(self, span: FileSpan, start: int, end: int, partial: bool) -> Response:
        agent = self.agent
        by_source: Counter[str] = Counter()
        for index in span.pieces_for(start, end):
            low, high = span.file_range(index)
            overlap = min(high, end) - max(low, start)
            if overlap > 0:
                by_source[self.piece_source.get(index, "cache")] += overlap
        for source, count in by_source.items():
            agent.served_bytes[source] += count
        self.played_bytes += end - start
        entry = self.metainfo.file(span.name)
        headers = Headers(
            [
                ("Content-Type", _content_type(span.name)),
                ("Cache-Control", "no-cache" if span.name.endswith(".mpd") else "max-age=3600"),
                ("Accept-Ranges", "bytes"),
                (SERVED_BY, agent.settings.name),
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Expose-Headers", _EXPOSED),
            ]
        )
        for source in SOURCES[:3]:
            headers.add(bytes_header(source), str(by_source.get(source, 0)))
        if by_source.get(LOCAL):
            headers.add(bytes_header(LOCAL), str(by_source[LOCAL]))
        status = 200
        if partial:
            status = 206
            headers.add("Content-Range", f"bytes {start}-{end - 1}/{span.length}")
        body = FileBody(self.storage.path_of(entry), start, end - start)
        return Response(status, headers, body)


def _skip_for(status: int, headers: Headers, run: EdgeRun) -> int:
    """Bytes to drop before the run's first byte, from the response's status and Content-Range."""
    if status == 206:
        content_range = headers.get("content-range")
        parsed = parse_content_range(content_range)
        if parsed is None or parsed.first != run.file_start:
            raise RemoteProtocolError(
                f"unexpected Content-Range {content_range!r} (asked from {run.file_start})",
                reason="range",
            )
        return 0
    if status == 200:
        return run.file_start
    raise CdnUnavailable(f"the CDN answered HTTP {status}", reason=f"http-{status}")


def _wanted_range(value: str | None, length: int) -> tuple[int, int, bool] | None:
    """(start, end, partial) for a Range header over ``length`` bytes; None = unsatisfiable."""
    if not value:
        return 0, length, False
    parsed = parse_range(value)
    if parsed is None:
        return 0, length, False  # ignore what we don't understand (RFC 9110 14.2)
    span = resolve(parsed, length)
    if isinstance(span, Unsatisfiable):
        return None
    return span.start, span.end, True


def _content_type(name: str) -> str:
    if name.endswith(".mpd"):
        return "application/dash+xml"
    if name.endswith((".m4s", ".mp4")):
        return "video/mp4"
    if name.endswith(".m4a"):
        return "audio/mp4"
    return "application/octet-stream"


def _describe(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return "timed out"
    if isinstance(error, CdnUnavailable):
        return str(error)
    return f"{type(error).__name__}: {error}"


class Agent:
    """The viewer agent: HTTP for players, one :class:`VideoSession` per video. See the module doc.

    Start it with :meth:`serve` (in a nursery, ``await nursery.start(agent.serve)``).
    Videos given to :meth:`add_video` before serving start with it; others open on demand.
    """

    def __init__(
        self,
        settings: AgentSettings,
        cdn: CdnClient,
        *,
        registry: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.cdn = cdn
        self.registry = registry
        self.rng = rng or random.Random()
        self.videos: dict[str, VideoSession] = {}
        self._preload: list[tuple[Metainfo, tuple[str, int] | None, list[int] | None]] = []
        self._opening: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.server: HttpServer | None = None
        self.address: tuple[str, int] | None = None
        self.served_bytes: Counter[str] = Counter({source: 0 for source in SOURCES})
        self.fetched_bytes: Counter[str] = Counter({source: 0 for source in SOURCES})
        self.requests: Counter[str] = Counter({"local": 0, "waited": 0, "error": 0, "relay": 0})
        self.waits = 0
        self.wait_seconds = 0.0
        self.router = Router()
        self.router.add("GET", "/healthz", self._healthz)
        self.router.add("GET", "/{video_id}/{name:path}", self._video_file)
        self.router.add("GET", "/{rest:path}", self._relay)
        if registry is not None:
            from seedcast.agent.metrics import register_agent_metrics

            register_agent_metrics(registry, self)

    def add_video(
        self,
        metainfo: Metainfo,
        *,
        listen: tuple[str, int] | None = None,
        have: Iterable[int] | None = None,
    ) -> None:
        """Open this torrent's swarm when :meth:`serve` starts (``listen``: its BitTorrent address)."""
        self._preload.append((metainfo, listen, None if have is None else list(have)))

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the preloaded videos, listen for players; reports [agent address, peer addresses]."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            peer_addresses: list[str] = []
            for metainfo, listen, have in self._preload:
                session = await self._start_session(metainfo, listen=listen, have=have)
                bound = session.swarm.listen_address
                if bound is not None:
                    peer_addresses.append(f"{bound[0]}:{bound[1]}")
            self.server = HttpServer(self._handle, registry=self.registry, component="agent")
            bound_http = await nursery.start(self.server.serve, [self.settings.listen])
            self.address = bound_http[0]
            log.info(
                "agent ready",
                extra={
                    "fields": {
                        "name": self.settings.name,
                        "address": f"{self.address[0]}:{self.address[1]}",
                        "cdn": self.cdn.base_url,
                        "videos": ",".join(self.videos) or "-",
                    }
                },
            )
            task_status.started([f"{self.address[0]}:{self.address[1]}", *peer_addresses])

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host}:{port}"

    async def _start_session(
        self,
        metainfo: Metainfo,
        *,
        listen: tuple[str, int] | None = None,
        have: list[int] | None = None,
    ) -> VideoSession:
        settings = self.settings
        video_id = metainfo.name
        storage = Storage(metainfo, settings.storage_dir)
        if settings.announce_urls is not None:
            announce: list[str] = list(settings.announce_urls)
        else:
            announce = [metainfo.announce] if metainfo.announce else []
            announce += [url for url in settings.extra_announce_urls if url not in announce]
        swarm = Swarm(
            metainfo,
            storage,
            settings=settings.swarm,
            listen=listen or (settings.peer_host, 0),
            announce_urls=announce,
            rng=random.Random(self.rng.random()),
            name=f"{settings.name}/{video_id}",
            have=have,
        )
        session = VideoSession(self, video_id, metainfo, swarm)
        assert self._nursery is not None
        self.videos[video_id] = session
        try:
            await self._nursery.start(session.run)
        except BaseException:
            self.videos.pop(video_id, None)
            storage.close()
            raise
        return session

    async def open_video(self, video_id: str) -> VideoSession:
        """The session of ``video_id``, opening it (torrent from the CDN) if needed.

        Raises CdnUnavailable when the CDN can't be reached, LookupError when it
        has no such video, RemoteProtocolError when the torrent is unusable.
        """
        while True:
            session = self.videos.get(video_id)
            if session is not None:
                return session
            opening = self._opening.get(video_id)
            if opening is None:
                break
            await opening.wait()
        if len(self.videos) >= self.settings.max_videos:
            raise CdnUnavailable(
                f"this agent already streams {len(self.videos)} videos", reason="busy"
            )
        event = self._opening[video_id] = trio.Event()
        try:
            response = await self._relay_get(f"/{video_id}/{quote(video_id)}.torrent", [])
            if response.status == 404:
                raise LookupError(f"the CDN has no video {video_id!r}")
            if response.status != 200:
                raise CdnUnavailable(
                    f"torrent of {video_id!r}: the CDN answered HTTP {response.status}",
                    reason=f"http-{response.status}",
                )
            metainfo = Metainfo.parse(response.content)
            if metainfo.name != video_id:
                raise RemoteProtocolError(
                    f"the torrent at /{video_id}/ is named {metainfo.name!r}", reason="metainfo"
                )
            return await self._start_session(metainfo)
        finally:
            del self._opening[video_id]
            event.set()

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        response = await self.router(request)
        if SERVED_BY not in response.headers:
            response.headers.set(SERVED_BY, self.settings.name)
        return response

    def error(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return Response.text(
            status,
            f"{message}\n",
            [
                *headers,
                (SERVED_BY, self.settings.name),
                ("Cache-Control", "no-store"),
                ("Access-Control-Allow-Origin", "*"),
            ],
        )

    async def _healthz(self, request: Request) -> Response:
        statistics = self.statistics()
        return Response.json(
            200,
            {
                "status": "ok",
                "name": self.settings.name,
                "videos": sorted(self.videos),
                "cdn": self.cdn.base_url,
                "cdn_address": self.cdn.last_address,
                "cdn_served_by": self.cdn.last_served_by,
                **statistics.as_status(),
                "served_bytes": dict(statistics.served_bytes),
                "wasted_by_reason": dict(statistics.wasted_bytes),
            },
            [("Cache-Control", "no-store")],
        )

    async def _video_file(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        name = request.path_params["name"]
        if not _VIDEO_ID.match(video_id) or video_id in ("watch", "static"):
            return await self._relay(request)
        session = self.videos.get(video_id)
        span = session.layout.file(name) if session is not None else None
        if span is None and session is None and name.endswith((".mpd", ".m4s")):
            try:
                session = await self.open_video(video_id)
            except LookupError as error:
                return self.error(404, str(error))
            except CDN_ERRORS as error:
                return self.error(502, f"cannot open {video_id!r}: {_describe(error)}")
            span = session.layout.file(name)
        if session is None or span is None:
            return await self._relay(request)
        return await session.serve_file(request, span)

    async def _relay_get(self, target: str, headers: list[tuple[str, str]]) -> Any:
        """GET ``target`` from the CDN, asking the DNS again after each failure, until the
        relay deadline. Raises CdnUnavailable when it runs out."""
        settings = self.settings
        deadline = trio.current_time() + settings.relay_timeout
        delay = 0.1
        last = "no attempt"
        while True:
            try:
                response = await self.cdn.get(
                    target, headers, read_timeout=settings.cdn_read_timeout
                )
            except CDN_ERRORS as error:
                last = _describe(error)
                self.cdn.forget()
            else:
                if response.status not in (502, 503, 504):
                    return response
                last = f"HTTP {response.status}"
                self.cdn.forget()
            if trio.current_time() + delay >= deadline:
                raise CdnUnavailable(f"the CDN failed for {settings.relay_timeout:g} s: {last}")
            await trio.sleep(delay)  # back off before asking the DNS again
            delay = min(delay * 2, 1.0)

    async def _relay(self, request: Request) -> Response:
        self.requests["relay"] += 1
        headers = [
            (key, value)
            for key, value in request.headers.items()
            if key.lower() in _FORWARDED_REQUEST_HEADERS
        ]
        try:
            response = await self._relay_get(request.target, headers)
        except CdnUnavailable as error:
            return self.error(502, f"{request.path}: {error}")
        relayed = Headers(
            [(key, value) for key, value in response.headers.items() if key in _RELAYED_HEADERS]
        )
        upstream = response.headers.get(SERVED_BY)
        if upstream:
            relayed.add(UPSTREAM, upstream)
        relayed.set(SERVED_BY, self.settings.name)
        source = response_source(response)
        relayed.add(bytes_header(source), str(len(response.content)))
        self.served_bytes[source] += len(response.content)
        return Response(response.status, relayed, response.content)

    def close(self) -> None:
        """Close the videos' files (after :meth:`serve` has ended)."""
        for session in self.videos.values():
            session.storage.close()

    # -- statistics --------------------------------------------------------------------

    def statistics(self) -> AgentStatistics:
        peers = bytes_up = bytes_down = peer_failures = bans = waiting = 0
        edge_runs = edge_failures = edge_hash_failures = downloaded = played = 0
        wasted: Counter[str] = Counter({reason: 0 for reason in WASTE_REASONS})
        for session in self.videos.values():
            downloaded += session.downloaded_bytes
            played += session.played_bytes
            wasted.update(session.waste())
            snapshot = session.swarm.statistics()
            peers += snapshot.peers_connected
            bytes_up += snapshot.bytes_uploaded
            bytes_down += snapshot.bytes_downloaded
            bans += snapshot.bans
            peer_failures += snapshot.hash_failures - session.edge_hash_failures
            waiting += session.scheduler.waiting
            edge_runs += session.edge_runs
            edge_failures += session.edge_failures
            edge_hash_failures += session.edge_hash_failures
        return AgentStatistics(
            name=self.settings.name,
            videos=len(self.videos),
            peers=peers,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            served_bytes=dict(self.served_bytes),
            fetched_bytes=dict(self.fetched_bytes),
            requests=dict(self.requests),
            wait_seconds_total=self.wait_seconds,
            waits=self.waits,
            edge_runs=edge_runs,
            edge_failures=edge_failures,
            edge_hash_failures=edge_hash_failures,
            peer_hash_failures=max(0, peer_failures),
            bans=bans,
            waiting_requests=waiting,
            last_edge=self.cdn.last_served_by,
            downloaded_bytes=downloaded,
            played_bytes=played,
            wasted_bytes=dict(wasted),
        )


# -- an agent inside another program --------------------------------------------------------


@asynccontextmanager
async def open_agent_for(
    url: str,
    config: ClusterConfig,
    *,
    resolver: Any,
    local_address: str | None = None,
    name: str = "play-agent",
    storage_dir: Path | None = None,
    settings: Callable[[AgentSettings], AgentSettings] | None = None,
) -> AsyncIterator[str]:
    """Run an agent for the video at ``url`` (``http://HOST[:PORT]/<id>/manifest.mpd``).

    The CDN is ``http://HOST[:PORT]`` (HOST resolved through ``resolver``, from
    ``local_address``); the torrent is fetched from ``/<id>/<id>.torrent``
    there; the swarm announces to the torrent's tracker and the config's.
    Yields the same path's URL on the agent. Files live in ``storage_dir``
    (default: a temporary folder removed at the end). Raises
    :class:`CdnUnavailable` / LookupError / RemoteProtocolError when the video
    can't be opened.
    """
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    video_id, _, rest = path.partition("/")
    if parts.scheme != "http" or not parts.hostname or not _VIDEO_ID.match(video_id):
        raise ValueError(f"expected http://HOST[:PORT]/<id>/manifest.mpd, got {url!r}")
    host = local_address or "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="seedcast-agent-") as temporary:
        base = AgentSettings(
            storage_dir=storage_dir or Path(temporary),
            name=name,
            listen=f"{host}:0",
            peer_host=host,
            extra_announce_urls=(config.tracker.announce_url,),
            scheduler=SchedulerSettings(
                prefetch_seconds=config.peers.prefetch_seconds,
                urgent_seconds=config.peers.urgent_seconds,
            ),
        )
        agent_settings = settings(base) if settings is not None else base
        http = HttpClient(
            connect_timeout=2.0,
            read_timeout=agent_settings.cdn_read_timeout,
            local_address=local_address,
        )
        agent: Agent | None = None
        try:
            cdn = CdnClient(
                f"http://{parts.netloc}", http=http, resolver=resolver, local_address=local_address
            )
            agent = Agent(agent_settings, cdn)
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.serve)
                await agent.open_video(video_id)
                yield f"{agent.url}/{video_id}/{rest or 'manifest.mpd'}"
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await http.aclose()
            if agent is not None:
                agent.close()


def agent_settings_from_config(
    config: ClusterConfig, storage_dir: Path, **changes: Any
) -> AgentSettings:
    """Agent settings with the config's prefetch/urgent windows and peer caps."""
    peers = config.peers
    base = AgentSettings(
        storage_dir=storage_dir,
        scheduler=SchedulerSettings(
            prefetch_seconds=peers.prefetch_seconds, urgent_seconds=peers.urgent_seconds
        ),
        swarm=SwarmSettings(
            upload_rate=peers.upload,
            download_rate=peers.download,
            max_connections=peers.max_connections,
            request_timeout=8.0,
        ),
    )
    return dataclasses.replace(base, **changes)
