"""Sans-IO scheduling for the viewer agent: which piece comes from where, and by when.

How it works. A video's torrent holds its MPD and every segment, each file
starting on a piece boundary (BEP 47 padding), so a file is a run of whole
pieces (:class:`TorrentLayout`). The MPD gives each segment a place in time
(:class:`Timeline`). The :class:`StreamScheduler` hears what the player asks
for (:meth:`~StreamScheduler.request`; it alone keeps who waits for which
piece: :meth:`~StreamScheduler.piece_arrived` names the requests a piece
completes) and, on every :meth:`~StreamScheduler.plan` call, looks at what
the swarm offers (a :class:`SwarmView`: pieces had, piece availability, peers
unchoking us) and returns a :class:`Plan`.

* **When a piece is due.** Per kind (video, audio) the scheduler anchors the
  playhead at the first segment asked, ``(t0, s0)``: a player never plays
  faster than real time, so segment *k* (starting at ``s_k`` in the media) is
  needed no earlier than ``t0 + (s_k - s0)`` -- a lower bound, which stalls
  only make safer. A request the model says is already late (the player's
  buffer ran dry), or one that is not the next segment (a seek), re-anchors
  at ``now``. The MPD and initialization segments are due when asked.
* **What is fetched.** What the player asks for; what it is certain to ask
  next (a track's first segment once its initialization was asked, and the
  start of a kind with a single track); and, within ``prefetch_seconds`` of
  the anchor, the segments ahead on a kind with a single track (audio). Never
  a rendition the ABR has not asked for: bytes it leaves are never played.
* **Who delivers.** Each such missing piece belongs to the peers until its
  *handover*: ``due - edge_eta - edge_margin_seconds``,
  where ``edge_eta`` is the edge's measured latency plus the piece's bytes at
  the edge's measured rate (:class:`RateEstimates`). The peers' grace is
  therefore a function of measured rates, not a constant: a piece due now (the
  first segment after the manifest) goes to the edge at once, and so does one
  whose slack is shorter than the peers' measured delivery time; a piece due
  in ten seconds stays with the peers until the edge would only just make it.
  Pieces due within ``urgent_seconds`` get their handover as a picker
  deadline (earliest first); the rest form the picker's rarest-first window.
* **Nobody has it yet** (a flash crowd: no unchoking peer has the piece). If
  the piece is due soon the edge takes it now; otherwise the viewer fetches it
  from the edge at a random instant before its handover (``rng``), so one of
  the viewers waiting for it gets it first and the others take it from that
  one instead of all asking the CDN.
* **Edge runs** -- pieces for the edge are grouped into contiguous runs within
  one file (one HTTP range request each, at most ``max_run_bytes``), earliest
  need first, at most ``max_edge_fetches`` at a time. A failed run returns its
  pieces and backs the edge off (``edge_backoff_*``, doubling); a piece whose
  edge bytes fail the hash is planned again, and after
  ``max_edge_mismatches`` failures the requests needing it fail with 502.
* **Giving up** -- a request not satisfied ``give_up_seconds`` after it was
  made expires: 502 when the edge was failing (unreachable, or its bytes
  don't match the torrent), 504 otherwise. The player gets an answer, never
  a hang.

Peers are never asked for a block twice (no time-critical duplicates): a
piece the peers are late with goes to the edge instead, once. Everything is a
function of the calls made, the ``now`` passed in and the ``rng`` given; the
shell (:mod:`seedcast.agent.server`) does the I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from seedcast.errors import ConfigError
from seedcast.units import MiB

if TYPE_CHECKING:
    from seedcast.dash import Manifest
    from seedcast.peer.metainfo import Metainfo

__all__ = [
    "EdgeRun",
    "Expired",
    "FileSpan",
    "Plan",
    "RateEstimates",
    "SchedulerSettings",
    "SchedulerStatistics",
    "StreamScheduler",
    "SwarmView",
    "TimedFile",
    "Timeline",
    "TorrentLayout",
]


# -- where files live in the torrent -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileSpan:
    """One real file of the torrent as a run of whole pieces."""

    name: str
    """Path inside the torrent, "/"-joined (``chunk-...-00001.m4s``)."""
    offset: int
    """Where the file starts in the torrent's byte space (a piece boundary)."""
    length: int
    first_piece: int
    end_piece: int
    """One past the last piece."""
    piece_length: int

    @property
    def pieces(self) -> range:
        return range(self.first_piece, self.end_piece)

    def pieces_for(self, start: int, end: int) -> range:
        """The pieces holding file bytes ``start..end`` (end exclusive)."""
        if end <= start:
            return range(self.first_piece, self.first_piece)
        first = self.first_piece + start // self.piece_length
        last = self.first_piece + (end - 1) // self.piece_length
        return range(first, last + 1)

    def file_range(self, index: int) -> tuple[int, int]:
        """The file bytes ``(start, end)`` that piece ``index`` holds (the rest is padding)."""
        start = (index - self.first_piece) * self.piece_length
        return start, min(self.length, start + self.piece_length)


class TorrentLayout:
    """Maps file names to pieces. Raises ConfigError for a torrent without BEP 47 alignment."""

    def __init__(self, metainfo: Metainfo) -> None:
        self.piece_length = metainfo.piece_length
        self.piece_count = metainfo.piece_count
        self._sizes = [metainfo.piece_size(index) for index in range(metainfo.piece_count)]
        self._files: dict[str, FileSpan] = {}
        self._owner: list[FileSpan | None] = [None] * metainfo.piece_count
        for entry in metainfo.files:
            if entry.padding or entry.length == 0:
                continue
            if entry.offset % metainfo.piece_length:
                raise ConfigError(
                    f"torrent {metainfo.name!r}: {'/'.join(entry.path)} does not start on a "
                    "piece boundary (no BEP 47 padding); the agent needs aligned files"
                )
            name = "/".join(entry.path)
            first = entry.offset // metainfo.piece_length
            end = (entry.end - 1) // metainfo.piece_length + 1
            span = FileSpan(name, entry.offset, entry.length, first, end, metainfo.piece_length)
            for index in span.pieces:
                if self._owner[index] is not None:
                    raise ConfigError(
                        f"torrent {metainfo.name!r}: piece {index} holds two files; "
                        "the agent needs BEP 47 aligned files"
                    )
                self._owner[index] = span
            self._files[name] = span

    def file(self, name: str) -> FileSpan | None:
        return self._files.get(name)

    def owner(self, index: int) -> FileSpan | None:
        """The file piece ``index`` belongs to."""
        return self._owner[index]

    def piece_size(self, index: int) -> int:
        return self._sizes[index]

    @property
    def names(self) -> list[str]:
        return list(self._files)


# -- where segments live in time -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimedFile:
    name: str
    track: str
    """``video:<representation id>`` or ``audio:<representation id>``."""
    kind: str
    """video | audio"""
    position: int
    """Index in its track; -1 for the initialization segment."""
    start: float = 0.0
    duration: float = 0.0

    @property
    def is_init(self) -> bool:
        return self.position < 0


class Timeline:
    """Segment names of every representation with their playback times."""

    def __init__(self, files: Iterable[TimedFile]) -> None:
        self._by_name: dict[str, TimedFile] = {}
        self._tracks: dict[str, list[TimedFile]] = {}
        self._inits: dict[str, TimedFile] = {}
        self._kinds: dict[str, set[str]] = {}
        for timed in files:
            self._by_name[timed.name] = timed
            self._kinds.setdefault(timed.kind, set()).add(timed.track)
            if timed.is_init:
                self._inits[timed.track] = timed
            else:
                self._tracks.setdefault(timed.track, []).append(timed)
        for segments in self._tracks.values():
            segments.sort(key=lambda timed: timed.position)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Timeline:
        files: list[TimedFile] = []
        for representation in (*manifest.video, *manifest.audio):
            kind = representation.content_type
            track = f"{kind}:{representation.id}"
            if representation.initialization:
                files.append(TimedFile(representation.initialization, track, kind, -1))
            for position, segment in enumerate(representation.segments):
                files.append(
                    TimedFile(segment.url, track, kind, position, segment.start, segment.duration)
                )
        return cls(files)

    def get(self, name: str) -> TimedFile | None:
        return self._by_name.get(name)

    def after(self, timed: TimedFile) -> Sequence[TimedFile]:
        """The segments of ``timed``'s track that follow it, in order."""
        segments = self._tracks.get(timed.track, [])
        return segments[timed.position + 1 :] if timed.position >= 0 else segments

    def only_track(self, kind: str) -> str | None:
        """The track of ``kind`` when there is exactly one (no rendition to choose)."""
        tracks = self._kinds.get(kind, set())
        return next(iter(tracks)) if len(tracks) == 1 else None

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def start_of(self, track: str) -> list[TimedFile]:
        """What a player fetches first on ``track``: its initialization and first segment."""
        first = self._tracks.get(track, [])[:1]
        init = self._inits.get(track)
        return [init, *first] if init is not None else first

    def __len__(self) -> int:
        return len(self._by_name)


# -- the scheduler ---------------------------------------------------------------------------


class SwarmView(Protocol):
    """What the scheduler may know of the swarm at planning time."""

    def has(self, index: int) -> bool: ...

    def availability(self, index: int) -> int: ...

    def unchoking_peers(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    prefetch_seconds: float = 20.0
    """How far ahead of the anchored playhead the peers are asked for pieces."""
    urgent_seconds: float = 4.0
    """Pieces due this soon get a picker deadline (the rest: the rarest-first window)."""
    edge_margin_seconds: float = 0.5
    """Safety margin of the handover to the edge (before ``due - edge_eta``)."""
    edge_rate: float = 1_000_000.0
    """Assumed edge rate (bytes/s) until an edge fetch was measured."""
    edge_latency_seconds: float = 0.05
    """Assumed time to an edge's first byte until measured."""
    peer_seconds: float = 1.0
    """Assumed time for the peers to deliver a piece until measured."""
    give_up_seconds: float = 10.0
    max_edge_fetches: int = 4
    max_run_bytes: int = 4 * MiB
    edge_backoff_initial: float = 0.25
    edge_backoff_max: float = 2.0
    max_edge_mismatches: int = 3
    idle_check_seconds: float = 0.5
    """Longest time between two plans (playback time moves on by itself)."""

    def __post_init__(self) -> None:
        if self.max_edge_fetches < 1 or self.max_run_bytes < 1:
            raise ValueError("max_edge_fetches and max_run_bytes must be positive")
        if self.give_up_seconds <= 0 or self.idle_check_seconds <= 0:
            raise ValueError("give_up_seconds and idle_check_seconds must be positive")
        if self.edge_rate <= 0 or self.edge_margin_seconds < 0 or self.peer_seconds <= 0:
            raise ValueError("edge_rate and peer_seconds must be positive, the margin >= 0")


class RateEstimates:
    """Measured edge rate and latency, and the peers' time to deliver a due piece (EWMAs)."""

    _WEIGHT = 0.3
    """Weight of a new sample: recent fetches count most, one outlier does not rule."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.edge_rate = settings.edge_rate
        self.edge_latency = settings.edge_latency_seconds
        self.peer_seconds = settings.peer_seconds
        self.edge_samples = 0
        self.peer_samples = 0

    def edge_eta(self, size: int) -> float:
        """Seconds the edge is expected to take for ``size`` bytes, asked now."""
        return self.edge_latency + size / self.edge_rate

    def edge_fetch(self, size: int, first_byte_seconds: float, seconds: float) -> None:
        """An edge run of ``size`` bytes answered after ``first_byte_seconds``, ended after
        ``seconds``."""
        weight = self._WEIGHT
        self.edge_latency += weight * (max(0.0, first_byte_seconds) - self.edge_latency)
        transfer = seconds - first_byte_seconds
        if size > 0 and transfer > 0:
            self.edge_rate += weight * (size / transfer - self.edge_rate)
        self.edge_samples += 1

    def peer_delivery(self, seconds: float) -> None:
        """The peers delivered a due piece ``seconds`` after it was first given to them."""
        self.peer_seconds += self._WEIGHT * (max(0.0, seconds) - self.peer_seconds)
        self.peer_samples += 1


@dataclass(frozen=True, slots=True)
class EdgeRun:
    """Fetch pieces ``first_piece .. first_piece+count-1`` of file ``name`` from the edge."""

    run_id: int
    name: str
    first_piece: int
    count: int
    file_start: int
    """Byte range of the file to ask for: ``file_start .. file_end-1``."""
    file_end: int
    waiting: bool
    """A player is waiting on (some of) these pieces right now."""

    @property
    def pieces(self) -> range:
        return range(self.first_piece, self.first_piece + self.count)


@dataclass(frozen=True, slots=True)
class Expired:
    request_id: int
    status: int
    """502 (the CDN failed) or 504 (nobody delivered in time)."""
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    deadlines: Mapping[int, float]
    """Missing pieces due soon and their handover to the edge (for the picker)."""
    window: tuple[int, ...]
    """The prefetch window (for the picker's rarest-first priority window)."""
    edge_runs: tuple[EdgeRun, ...]
    """Edge fetches to start now."""
    expired: tuple[Expired, ...]
    """Requests to answer with an error now."""
    next_check: float
    """Plan again at this time at the latest."""


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    waiting_requests: int
    edge_runs_active: int
    edge_pieces_active: int
    edge_runs_started: int
    edge_runs_failed: int
    edge_mismatches: int
    expired: int
    requests: int
    edge_backoff_seconds: float
    last_edge_error: str
    edge_rate: float
    """Measured (or assumed) edge rate, bytes/s."""
    peer_seconds: float
    """Measured (or assumed) time the peers take for a due piece."""


@dataclass(slots=True)
class _Request:
    request_id: int
    name: str
    missing: set[int]
    asked_at: float
    due: float
    """When the player needs it at the earliest (the playhead model)."""


@dataclass(slots=True)
class _Anchor:
    """The playhead model of one kind: segment start ``s0`` plays no earlier than ``t0``."""

    t0: float
    s0: float
    last: TimedFile
    """The latest segment asked (the prefetch window follows it)."""

    def due(self, timed: TimedFile) -> float:
        return self.t0 + (timed.start - self.s0)


@dataclass(slots=True)
class _Run:
    run: EdgeRun
    started_at: float
    pending: set[int] = field(default_factory=set)
    mismatched: bool = False
    first_byte_at: float | None = None


_SEGMENT_SLACK = 1e-3
"""Seconds of media time two segment boundaries may differ by and still be 'the next'."""


class StreamScheduler:
    """See the module docstring."""

    def __init__(
        self,
        layout: TorrentLayout,
        settings: SchedulerSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.layout = layout
        self.settings = settings or SchedulerSettings()
        self.rates = RateEstimates(self.settings)
        self.timeline: Timeline | None = None
        self._rng = rng or random.Random(0)
        self._requests: dict[int, _Request] = {}
        self._by_piece: dict[int, set[int]] = {}
        """Missing piece -> ids of the requests waiting for it."""
        self._next_request_id = 1
        self._anchors: dict[str, _Anchor] = {}
        self._expected: dict[str, tuple[float, list[TimedFile]]] = {}
        """Kind not playing yet -> (since when, the files its player is certain to ask next)."""
        self._runs: dict[int, _Run] = {}
        self._edge_pieces: dict[int, int] = {}
        """Piece -> id of the edge run fetching it."""
        self._next_run_id = 1
        self._mismatches: dict[int, int] = {}
        self._orphans: dict[int, float] = {}
        """Piece no unchoking peer had -> the instant this viewer seeds it from the edge."""
        self._given_at: dict[int, float] = {}
        """Due piece -> when it was first given to the peers with a deadline."""
        self._edge_ready_at = -math.inf
        self._edge_failures_in_a_row = 0
        self._last_edge_error = ""
        self._last_edge_error_at = -math.inf
        self._requests_total = 0
        self._runs_started = 0
        self._runs_failed = 0
        self._mismatch_total = 0
        self._expired_total = 0

    # -- what the player does ----------------------------------------------------------

    def set_timeline(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def request(
        self,
        name: str,
        pieces: Iterable[int],
        now: float,
        have: Callable[[int], bool] | None = None,
    ) -> int:
        """The player asks for (part of) file ``name``, made of ``pieces``; returns an id.

        ``have`` tells the pieces already here (none when omitted). Moves the
        kind's playhead model when ``name`` is a media segment. The request is
        :meth:`ready` once every piece arrived (:meth:`piece_arrived`); call
        :meth:`finish` with the id once it is answered.
        """
        self._requests_total += 1
        request_id = self._next_request_id
        self._next_request_id += 1
        missing = {index for index in pieces if have is None or not have(index)}
        due = now
        timed = self.timeline.get(name) if self.timeline is not None else None
        if timed is not None and not timed.is_init:
            due = self._move_anchor(timed, now)
            self._expected.pop(timed.kind, None)
        elif timed is not None:
            self._expect_start(timed, now)
        self._requests[request_id] = _Request(request_id, name, missing, now, due)
        for index in missing:
            self._by_piece.setdefault(index, set()).add(request_id)
        return request_id

    def _move_anchor(self, timed: TimedFile, now: float) -> float:
        anchor = self._anchors.get(timed.kind)
        if anchor is not None:
            last = anchor.last
            follows = (
                last.start - _SEGMENT_SLACK
                <= timed.start
                <= last.start + last.duration + _SEGMENT_SLACK
            )
            due = anchor.due(timed)
            if follows and due >= now:
                anchor.last = timed
                return due
        self._anchors[timed.kind] = _Anchor(now, timed.start, timed)
        return now

    def _expect_start(self, init: TimedFile, now: float) -> None:
        """A player starts a track: its first segment follows the initialization at once,
        and so does the start of every kind offering a single track (no rendition to choose)."""
        assert self.timeline is not None
        if init.kind not in self._anchors:
            self._expected[init.kind] = (now, self.timeline.start_of(init.track)[1:])
        for kind in self.timeline.kinds():
            track = self.timeline.only_track(kind)
            if kind in self._anchors or kind in self._expected or track is None:
                continue
            self._expected[kind] = (now, self.timeline.start_of(track))

    def ready(self, request_id: int) -> bool:
        """Every piece of the request is here (or the request is unknown)."""
        request = self._requests.get(request_id)
        return request is None or not request.missing

    def piece_arrived(self, index: int, now: float, source: str = "peer") -> list[int]:
        """Piece ``index`` is verified and stored; returns the requests it completed."""
        given = self._given_at.pop(index, None)
        if given is not None and source == "peer":
            self.rates.peer_delivery(now - given)
        self._orphans.pop(index, None)
        completed = []
        for request_id in self._by_piece.pop(index, ()):
            request = self._requests.get(request_id)
            if request is None:
                continue
            request.missing.discard(index)
            if not request.missing:
                completed.append(request_id)
        return completed

    def finish(self, request_id: int) -> None:
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        for index in request.missing:
            waiting = self._by_piece.get(index)
            if waiting is not None:
                waiting.discard(request_id)
                if not waiting:
                    del self._by_piece[index]

    @property
    def waiting(self) -> int:
        return len(self._requests)

    # -- what the edge did ---------------------------------------------------------------

    def edge_first_byte(self, run_id: int, now: float) -> None:
        """The run's response started (its headers arrived)."""
        entry = self._runs.get(run_id)
        if entry is not None and entry.first_byte_at is None:
            entry.first_byte_at = now

    def edge_piece_done(self, index: int) -> None:
        """Piece ``index`` arrived from the edge and passed its hash (or was here already)."""
        run_id = self._edge_pieces.pop(index, None)
        if run_id is not None and run_id in self._runs:
            self._runs[run_id].pending.discard(index)
        self._mismatches.pop(index, None)

    def edge_piece_mismatch(self, index: int, now: float) -> None:
        """The edge's bytes for piece ``index`` failed the hash: plan it again."""
        self._mismatch_total += 1
        self._mismatches[index] = self._mismatches.get(index, 0) + 1
        run_id = self._edge_pieces.pop(index, None)
        if run_id is not None and run_id in self._runs:
            entry = self._runs[run_id]
            entry.pending.discard(index)
            entry.mismatched = True
        self._last_edge_error = f"edge bytes of piece {index} do not match the torrent"
        self._last_edge_error_at = now

    def edge_run_done(self, run_id: int, now: float) -> None:
        """The run's response ended; whatever did not arrive is planned again."""
        entry = self._runs.pop(run_id, None)
        if entry is None:
            return
        for index in entry.pending:
            if self._edge_pieces.get(index) == run_id:
                del self._edge_pieces[index]
        if entry.mismatched:
            # One backoff step per lying response, however many pieces it spoiled.
            self._note_edge_error(self._last_edge_error, now)
        elif not entry.pending:
            self._edge_failures_in_a_row = 0
            self._edge_ready_at = -math.inf
            run = entry.run
            first_byte = (entry.first_byte_at or entry.started_at) - entry.started_at
            self.rates.edge_fetch(run.file_end - run.file_start, first_byte, now - entry.started_at)

    def edge_run_failed(self, run_id: int, now: float, reason: str) -> None:
        """The run failed (unreachable, timeout, bad status): back off, plan its pieces again."""
        self._runs_failed += 1
        entry = self._runs.pop(run_id, None)
        if entry is not None:
            for index in entry.pending:
                if self._edge_pieces.get(index) == run_id:
                    del self._edge_pieces[index]
        self._note_edge_error(reason, now)

    def _note_edge_error(self, reason: str, now: float) -> None:
        settings = self.settings
        self._edge_failures_in_a_row += 1
        backoff = min(
            settings.edge_backoff_max,
            settings.edge_backoff_initial * 2 ** (self._edge_failures_in_a_row - 1),
        )
        self._edge_ready_at = max(self._edge_ready_at, now + backoff)
        self._last_edge_error = reason
        self._last_edge_error_at = now

    # -- planning --------------------------------------------------------------------------

    def handover(self, index: int, due: float) -> float:
        """When piece ``index``, due at ``due``, passes from the peers to the edge."""
        eta = self.rates.edge_eta(self.layout.piece_size(index))
        return due - eta - self.settings.edge_margin_seconds

    def plan(self, now: float, view: SwarmView) -> Plan:
        settings = self.settings
        next_check = now + settings.idle_check_seconds
        # Missing pieces we care about: piece -> (when due, a player waits on it).
        need: dict[int, tuple[float, bool]] = {}
        expired: list[Expired] = []
        unchoking = view.unchoking_peers()
        for request in list(self._requests.values()):
            missing = [index for index in request.missing if not view.has(index)]
            if not missing:
                continue
            poisoned = [
                index
                for index in missing
                if self._mismatches.get(index, 0) >= settings.max_edge_mismatches
                and (unchoking == 0 or view.availability(index) == 0)
            ]
            if poisoned:
                expired.append(
                    Expired(
                        request.request_id,
                        502,
                        f"{request.name}: the CDN's bytes for piece {poisoned[0]} do not match "
                        f"the torrent ({settings.max_edge_mismatches} tries) and no peer had it",
                    )
                )
                continue
            waited = now - request.asked_at
            if waited >= settings.give_up_seconds:
                expired.append(self._expire(request, waited, now))
                continue
            next_check = min(next_check, request.asked_at + settings.give_up_seconds)
            for index in missing:
                current = need.get(index)
                if current is None or current[0] > request.due:
                    need[index] = (request.due, True)
        for gone in expired:
            self.finish(gone.request_id)
        self._expired_total += len(expired)
        self._add_prefetch(now, view, need)

        deadlines: dict[int, float] = {}
        window: list[tuple[float, int]] = []
        for_edge: list[tuple[float, int, bool]] = []
        for index, (due, waiting) in need.items():
            if index in self._edge_pieces:
                continue
            handover = self.handover(index, due)
            if unchoking == 0 or view.availability(index) == 0:
                handover = self._seed_instant(index, now, handover)
            elif index not in self._given_at and due - now < self.rates.peer_seconds:
                handover = now  # new to the peers, who would be too slow for it
            if now >= handover:
                for_edge.append((due, index, waiting))
                continue
            next_check = min(next_check, handover)
            if due - now <= settings.urgent_seconds or waiting:
                deadlines[index] = handover
                self._given_at.setdefault(index, now)
            else:
                window.append((due, index))

        runs: list[EdgeRun] = []
        if for_edge:
            if now < self._edge_ready_at:
                next_check = min(next_check, self._edge_ready_at)
                # Meanwhile the peers may still deliver them.
                for _, index, _ in for_edge:
                    deadlines[index] = now
            else:
                runs = self._start_runs(for_edge, now)
        window.sort()
        return Plan(
            deadlines=deadlines,
            window=tuple(index for _, index in window),
            edge_runs=tuple(runs),
            expired=tuple(expired),
            next_check=max(next_check, now),
        )

    def _add_prefetch(
        self, now: float, view: SwarmView, need: dict[int, tuple[float, bool]]
    ) -> None:
        """Pieces a player is certain to ask for: the start of a track it is about to play,
        and the segments after the latest asked, within the prefetch horizon, of a kind
        with a single track. Where the player's ABR picks among renditions nothing is
        fetched before it asks: a prefetched rendition it leaves would be bytes never played."""
        timeline = self.timeline
        if timeline is None:
            return
        for since, files in self._expected.values():
            for timed in files:
                span = self.layout.file(timed.name)
                for index in span.pieces if span is not None else ():
                    if not view.has(index) and index not in need:
                        need[index] = (since, False)
        horizon = now + self.settings.prefetch_seconds
        for kind, anchor in self._anchors.items():
            if timeline.only_track(kind) is None:
                continue
            for timed in timeline.after(anchor.last):
                due = anchor.due(timed)
                if due > horizon:
                    break
                span = self.layout.file(timed.name)
                if span is None:
                    continue
                for index in span.pieces:
                    if not view.has(index) and index not in need:
                        need[index] = (due, False)

    def _seed_instant(self, index: int, now: float, handover: float) -> float:
        """When this viewer fetches a piece nobody offers: a random instant before the
        handover, drawn once, so among the viewers waiting for it one goes first."""
        instant = self._orphans.get(index)
        if instant is None:
            instant = now + self._rng.random() * max(0.0, handover - now)
            self._orphans[index] = instant
        return min(instant, handover)

    def _expire(self, request: _Request, waited: float, now: float) -> Expired:
        recent = now - self._last_edge_error_at <= self.settings.give_up_seconds
        if recent and self._last_edge_error:
            return Expired(
                request.request_id,
                502,
                f"{request.name}: no peer delivered it and the CDN failed "
                f"({self._last_edge_error}) for {waited:.1f} s",
            )
        return Expired(
            request.request_id,
            504,
            f"{request.name}: neither peers nor the CDN delivered it within {waited:.1f} s",
        )

    def _start_runs(self, for_edge: list[tuple[float, int, bool]], now: float) -> list[EdgeRun]:
        """Group pieces into contiguous per-file runs, earliest need first, within the caps."""
        settings = self.settings
        room = settings.max_edge_fetches - len(self._runs)
        if room <= 0:
            return []
        for_edge.sort()
        chosen = {index: waiting for _, index, waiting in for_edge}
        runs: list[EdgeRun] = []
        taken: set[int] = set()
        for _, index, _ in for_edge:
            if room <= 0:
                break
            if index in taken:
                continue
            span = self.layout.owner(index)
            if span is None:
                continue
            # Extend down and up through pieces also chosen, in the same file.
            first = index
            while first - 1 in chosen and first - 1 not in taken and first - 1 >= span.first_piece:
                first -= 1
            last = first
            size = self.layout.piece_size(first)
            while (
                last + 1 in chosen
                and last + 1 not in taken
                and last + 1 < span.end_piece
                and size + self.layout.piece_size(last + 1) <= settings.max_run_bytes
            ):
                last += 1
                size += self.layout.piece_size(last)
            if not first <= index <= last:
                # The cap cut the run short of ``index``: start the run at ``index``.
                first = last = index
            pieces = range(first, last + 1)
            taken.update(pieces)
            file_start = span.file_range(first)[0]
            file_end = span.file_range(last)[1]
            run = EdgeRun(
                run_id=self._next_run_id,
                name=span.name,
                first_piece=first,
                count=len(pieces),
                file_start=file_start,
                file_end=file_end,
                waiting=any(chosen[piece] for piece in pieces),
            )
            self._next_run_id += 1
            self._runs[run.run_id] = _Run(run, now, set(pieces))
            for piece in pieces:
                self._edge_pieces[piece] = run.run_id
                self._given_at.pop(piece, None)
            self._runs_started += 1
            runs.append(run)
            room -= 1
        return runs

    def edge_pieces(self) -> Sequence[int]:
        """Pieces the edge is fetching now."""
        return list(self._edge_pieces)

    def statistics(self, now: float) -> SchedulerStatistics:
        return SchedulerStatistics(
            waiting_requests=len(self._requests),
            edge_runs_active=len(self._runs),
            edge_pieces_active=len(self._edge_pieces),
            edge_runs_started=self._runs_started,
            edge_runs_failed=self._runs_failed,
            edge_mismatches=self._mismatch_total,
            expired=self._expired_total,
            requests=self._requests_total,
            edge_backoff_seconds=max(0.0, self._edge_ready_at - now),
            last_edge_error=self._last_edge_error,
            edge_rate=self.rates.edge_rate,
            peer_seconds=self.rates.peer_seconds,
        )
