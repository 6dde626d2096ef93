"""The headless player: a real-time playback loop over HTTP.

One :func:`play` call is one viewer: it fetches the manifest, then segment
after segment picks a representation with the ABR rule, downloads the video
segment (and the matching audio segment), and feeds the :class:`Playback`
model with what arrived and when. It keeps at most ``max_buffer_seconds``
ahead of the playhead, like a real player, so a viewer pulls media at the
pace it watches once its buffer is full.

Many players run in one trio process (the load tests do): each gets its own
connections from the shared :class:`HttpClient` pool, keyed by its local
address.

Where bytes came from is read from response headers with
:mod:`seedcast.provenance`: a viewer agent's response splits its bytes by
source (seed and viewer peers both count as peers here); otherwise an edge's
response is told from the origin's by ``X-Cache``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import trio
from seedcast.dash import Manifest, Representation, parse_manifest
from seedcast.errors import ConnectError, RemoteProtocolError, SeedcastError, TransportError
from seedcast.http11 import Headers, HttpClient
from seedcast.player.abr import Abr, AbrObservation
from seedcast.player.playback import Playback
from seedcast.provenance import PEER, SERVED_BY, Source, agent_split, cdn_source

log = logging.getLogger("seedcast.player")

Resolve = Callable[[str, int | None], Awaitable[tuple[str, int]]]
"""(host, port from the URL or None) -> (address, port): StubResolver.resolve_endpoint."""


@dataclass(slots=True)
class PlayerReport:
    url: str
    abr: str
    startup_delay_s: float | None = None
    stall_count: int = 0
    stall_seconds: float = 0.0
    played_seconds: float = 0.0
    avg_bitrate_kbps: float = 0.0
    switches: int = 0
    segments: int = 0
    bytes_from_peers: int = 0
    bytes_from_edges: int = 0
    bytes_from_origin: int = 0
    renditions: list[str] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class PlaybackFailed(SeedcastError):
    """The stream could not be played (manifest or segments unreachable)."""


@dataclass(frozen=True, slots=True)
class PlayerOptions:
    seconds: float | None = None
    """Stop after this much media time; None = the whole video."""
    max_buffer_seconds: float = 20.0
    startup_seconds: float = 2.0
    resume_seconds: float = 2.0
    local_address: str | None = None
    retries: int = 3
    """Attempts per segment before giving up on the stream."""


async def play(
    url: str,
    abr: Abr,
    client: HttpClient,
    *,
    options: PlayerOptions = PlayerOptions(),
    resolve: Resolve | None = None,
    on_segment: Callable[[PlayerReport], None] | None = None,
) -> PlayerReport:
    """Stream ``url`` in real time; returns QoE figures. Raises PlaybackFailed."""
    report = PlayerReport(url=url, abr=abr.name)
    fetch = _Fetcher(client, url, resolve, options.local_address)
    manifest_bytes, _ = await fetch.get(url, report, count_bytes=False)
    manifest = parse_manifest(manifest_bytes)
    duration = (
        manifest.duration if options.seconds is None else min(manifest.duration, options.seconds)
    )
    playback = Playback(
        now=trio.current_time(),
        startup_seconds=options.startup_seconds,
        resume_seconds=options.resume_seconds,
        duration=duration,
    )
    bitrates = [rep.bandwidth for rep in manifest.video]
    audio = manifest.audio[-1] if manifest.audio else None
    init_loaded: set[str] = set()
    throughput: list[float] = []
    current: int | None = None
    weighted_bitrate = 0.0
    segment_seconds = manifest.video[0].segments[0].duration
    count = _segments_needed(manifest, duration)
    for index in range(count):
        # Keep at most max_buffer_seconds ahead: wait while the buffer is full.
        wait = playback.seconds_until_buffer_below(options.max_buffer_seconds - segment_seconds)
        if wait > 0:
            await trio.sleep(wait)
        now = trio.current_time()
        playback.advance(now)
        choice = abr.choose(
            bitrates,
            AbrObservation(
                buffer_seconds=playback.buffer_seconds,
                segment_seconds=segment_seconds,
                throughput_bps=tuple(throughput[-8:]),
                current=current,
            ),
        )
        if current is not None and choice != current:
            report.switches += 1
        current = choice
        video = manifest.video[choice]
        started = trio.current_time()
        size = 0
        for representation in (video, audio) if audio else (video,):
            size += await _fetch_segment(
                fetch, url, representation, index, init_loaded, report, options
            )
        elapsed = max(trio.current_time() - started, 1e-6)
        throughput.append(size * 8 / elapsed)
        segment = video.segments[index]
        media = min(segment.duration, max(0.0, duration - segment.start))
        weighted_bitrate += video.bandwidth * media
        report.segments += 1
        report.renditions.append(video.id)
        playback.segment_arrived(media, trio.current_time(), last=index == count - 1)
        _copy_statistics(report, playback, weighted_bitrate)
        if on_segment is not None:
            on_segment(report)
    # Watch out what is buffered, so stalls and played time are final.
    await trio.sleep(playback.seconds_until_buffer_below(0.0))
    _copy_statistics(report, playback, weighted_bitrate)
    return report


def _segments_needed(manifest: Manifest, duration: float) -> int:
    segments = manifest.video[0].segments
    return max(1, sum(1 for segment in segments if segment.start < duration - 1e-6))


def _copy_statistics(report: PlayerReport, playback: Playback, weighted_bitrate: float) -> None:
    stats = playback.statistics(trio.current_time())
    report.startup_delay_s = stats.startup_delay_s
    report.stall_count = stats.stall_count
    report.stall_seconds = round(stats.stall_seconds, 3)
    report.played_seconds = round(stats.played_seconds, 3)
    buffered = playback.buffered_until
    report.avg_bitrate_kbps = round(weighted_bitrate / buffered / 1000, 1) if buffered else 0.0


async def _fetch_segment(
    fetch: _Fetcher,
    manifest_url: str,
    representation: Representation,
    index: int,
    init_loaded: set[str],
    report: PlayerReport,
    options: PlayerOptions,
) -> int:
    size = 0
    if representation.id not in init_loaded and representation.initialization:
        body, _ = await fetch.get(
            urljoin(manifest_url, representation.initialization), report, retries=options.retries
        )
        init_loaded.add(representation.id)
        size += len(body)
    segment = representation.segments[min(index, len(representation.segments) - 1)]
    body, _ = await fetch.get(urljoin(manifest_url, segment.url), report, retries=options.retries)
    return size + len(body)


class _Fetcher:
    """GETs with DNS resolution of names only the Seedcast DNS knows, and source accounting."""

    def __init__(
        self, client: HttpClient, url: str, resolve: Resolve | None, local_address: str | None
    ) -> None:
        self.client = client
        self.resolve = resolve
        self.local_address = local_address

    async def _target(self, url: str) -> tuple[str, Headers]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self.resolve is None or _is_address(host):
            return url, Headers([])
        address, port = await self.resolve(host, parts.port)
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        return urlunsplit(parts._replace(netloc=netloc)), Headers([("Host", parts.netloc)])

    async def get(
        self, url: str, report: PlayerReport, *, count_bytes: bool = True, retries: int = 3
    ) -> tuple[bytes, Headers]:
        last_error: Exception | None = None
        for attempt in range(max(1, retries)):
            try:
                # Resolve on every attempt: after an edge dies, DNS names another.
                target, headers = await self._target(url)
                response = await self.client.request(
                    "GET", target, headers=headers, local_address=self.local_address
                )
            except (TransportError, RemoteProtocolError) as error:
                last_error = error
                log.info(
                    "fetch failed, retrying", extra={"fields": {"url": url, "error": str(error)}}
                )
                await trio.sleep(min(0.25 * 2**attempt, 2.0))
                continue
            if response.status != 200:
                last_error = PlaybackFailed(
                    f"GET {url}: HTTP {response.status}{_hint(response.status)}"
                )
                if response.status < 500:
                    break
                await trio.sleep(min(0.25 * 2**attempt, 2.0))
                continue
            if count_bytes:
                _account(report, response.headers, len(response.content))
            return response.content, response.headers
        if isinstance(last_error, PlaybackFailed):
            raise last_error  # already names the URL
        hint = " (nothing listens there: is the cluster up? seedcast status)"
        if not isinstance(last_error, ConnectError):
            hint = ""
        raise PlaybackFailed(f"GET {url}: {last_error}{hint}")


def _hint(status: int) -> str:
    if status == 404:
        return " Not Found (is the video published? seedcast library list)"
    return ""


def _account(report: PlayerReport, headers: Headers, size: int) -> None:
    split = agent_split(headers)
    if split is not None:
        report.bytes_from_peers += split[Source.SEED] + split[Source.VIEWER] + split[PEER]
        report.bytes_from_edges += split[Source.EDGE]
        report.bytes_from_origin += split[Source.ORIGIN]
        served_by = "agent"
    else:
        served_by = headers.get(SERVED_BY) or "unknown"
        if cdn_source(headers) is Source.EDGE:
            report.bytes_from_edges += size
        else:
            report.bytes_from_origin += size
    report.served_by[served_by] = report.served_by.get(served_by, 0) + size


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return True


def median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
