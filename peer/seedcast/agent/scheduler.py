"""Sans-IO scheduling for the viewer agent: which piece comes from where, and by when.

How it works. A video's torrent holds its MPD and every segment, each file
starting on a piece boundary (BEP 47 padding), so a file is a run of whole
pieces (:class:`TorrentLayout`). The MPD gives each segment a place in time
(:class:`Timeline`). The :class:`StreamScheduler` hears what the player asks
for and, on every :meth:`~StreamScheduler.plan` call, looks at what the swarm
offers (a :class:`SwarmView`: pieces had, piece availability, peers unchoking
us) and returns a :class:`Plan`:

* **Waiting pieces** — pieces of a file the player asked for and waits on.
  The swarm gets ``peer_grace_seconds`` for them: that is their deadline in
  the picker (which asks a second peer for a block as the deadline draws
  near). If no unchoking peer has the piece, or the swarm has not delivered
  it by then (the request stalled), the piece goes to the CDN edge.
* **Urgent pieces** — segments of the track the player is on whose playback
  time is within ``urgent_seconds`` of the playhead. The player is assumed to
  need segment *k* at ``t_ask + (start_k - start_asked)``: it asked for one
  segment, the next ones follow at playback pace. They get that deadline in
  the picker; if no unchoking peer has them, or their time is less than
  ``edge_lead_seconds`` away and they are still missing, they go to the edge.
* **Prefetch window** — further segments within ``prefetch_seconds``: handed
  to the picker's priority window, where it takes them rarest first. Only
  peers serve them.
* **Edge runs** — pieces for the edge are grouped into contiguous runs within
  one file (one HTTP range request each, at most ``max_run_bytes``), earliest
  need first, at most ``max_edge_fetches`` at a time. A failed run returns its
  pieces and backs the edge off (``edge_backoff_*``, doubling); a piece whose
  edge bytes fail the hash is planned again, and after
  ``max_edge_mismatches`` failures the requests needing it fail with 502.
* **Giving up** — a request not satisfied ``give_up_seconds`` after it was
  made expires: 502 when the edge was failing (unreachable, or its bytes
  don't match the torrent), 504 otherwise. The player gets an answer, never
  a hang.

Everything is a function of the calls made and the ``now`` passed in; the
shell (:mod:`seedcast.agent.server`) does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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
        for timed in files:
            self._by_name[timed.name] = timed
            if not timed.is_init:
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
    urgent_seconds: float = 4.0
    peer_grace_seconds: float = 1.0
    """How long a piece the player waits for may stay with peers before the edge takes it."""
    edge_lead_seconds: float = 1.0
    """An urgent piece still missing this close to its time goes to the edge."""
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
    """Missing pieces and when they are needed (for the picker)."""
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


@dataclass(slots=True)
class _Request:
    request_id: int
    name: str
    pieces: tuple[int, ...]
    asked_at: float


@dataclass(slots=True)
class _Head:
    """Where a track's playhead is assumed to be."""

    timed: TimedFile
    anchored_at: float


@dataclass(slots=True)
class _Run:
    run: EdgeRun
    pending: set[int] = field(default_factory=set)
    mismatched: bool = False


class StreamScheduler:
    """See the module docstring."""

    def __init__(self, layout: TorrentLayout, settings: SchedulerSettings | None = None) -> None:
        self.layout = layout
        self.settings = settings or SchedulerSettings()
        self.timeline: Timeline | None = None
        self._requests: dict[int, _Request] = {}
        self._next_request_id = 1
        self._heads: dict[str, _Head] = {}
        self._runs: dict[int, _Run] = {}
        self._edge_pieces: dict[int, int] = {}
        """Piece -> id of the edge run fetching it."""
        self._next_run_id = 1
        self._mismatches: dict[int, int] = {}
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

    def request(self, name: str, pieces: Iterable[int], now: float) -> int:
        """The player asks for (part of) file ``name``, made of ``pieces``; returns an id.

        Moves the track's playhead when ``name`` is a media segment. Call
        :meth:`finish` with the id once the request is answered (at once when
        every piece is already here).
        """
        self._requests_total += 1
        request_id = self._next_request_id
        self._next_request_id += 1
        self._requests[request_id] = _Request(request_id, name, tuple(pieces), now)
        if self.timeline is not None:
            timed = self.timeline.get(name)
            if timed is not None and not timed.is_init:
                self._heads[timed.kind] = _Head(timed, now)
        return request_id

    def finish(self, request_id: int) -> None:
        self._requests.pop(request_id, None)

    @property
    def waiting(self) -> int:
        return len(self._requests)

    # -- what the edge did ---------------------------------------------------------------

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

    def plan(self, now: float, view: SwarmView) -> Plan:
        settings = self.settings
        layout = self.layout
        next_check = now + settings.idle_check_seconds
        # Missing pieces we care about: piece -> (time needed, a player waits on it).
        need: dict[int, tuple[float, bool]] = {}
        expired: list[Expired] = []
        for request in list(self._requests.values()):
            missing = [index for index in request.pieces if not view.has(index)]
            if not missing:
                continue
            poisoned = [
                index
                for index in missing
                if self._mismatches.get(index, 0) >= settings.max_edge_mismatches
                and (view.unchoking_peers() == 0 or view.availability(index) == 0)
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
                if current is None or current[0] > request.asked_at or not current[1]:
                    need[index] = (request.asked_at, True)
        for gone in expired:
            self._requests.pop(gone.request_id, None)
        self._expired_total += len(expired)

        window: list[int] = []
        in_window: set[int] = set()
        if self.timeline is not None:
            for head in self._heads.values():
                for timed in self.timeline.after(head.timed):
                    due = head.anchored_at + (timed.start - head.timed.start)
                    ahead = due - now
                    if ahead > settings.prefetch_seconds:
                        break
                    span = layout.file(timed.name)
                    if span is None:
                        continue
                    for index in span.pieces:
                        if view.has(index) or index in need:
                            continue
                        if ahead <= settings.urgent_seconds:
                            need[index] = (due, False)
                        elif index not in in_window:
                            in_window.add(index)
                            window.append(index)

        deadlines: dict[int, float] = {}
        for_edge: list[tuple[float, int, bool]] = []
        unchoking = view.unchoking_peers()
        for index, (due, waiting) in need.items():
            if index in self._edge_pieces:
                continue
            peers_can = unchoking > 0 and view.availability(index) > 0
            if waiting:
                # The swarm's deadline is the handover: the picker asks a second peer
                # (time-critical duplicates) only as it draws near.
                handover = due + settings.peer_grace_seconds
                deadlines[index] = handover
                if not peers_can or now >= handover:
                    for_edge.append((due, index, True))
                else:
                    next_check = min(next_check, handover)
            else:
                deadlines[index] = due
                handover = due - settings.edge_lead_seconds
                if not peers_can or now >= handover:
                    for_edge.append((due, index, False))
                else:
                    next_check = min(next_check, handover)

        runs: list[EdgeRun] = []
        if for_edge:
            if now < self._edge_ready_at:
                next_check = min(next_check, self._edge_ready_at)
            else:
                runs = self._start_runs(for_edge)
                for run in runs:
                    for index in run.pieces:
                        deadlines.pop(index, None)
        window = [index for index in window if index not in self._edge_pieces]
        return Plan(
            deadlines=deadlines,
            window=tuple(window),
            edge_runs=tuple(runs),
            expired=tuple(expired),
            next_check=max(next_check, now),
        )

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

    def _start_runs(self, for_edge: list[tuple[float, int, bool]]) -> list[EdgeRun]:
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
            self._runs[run.run_id] = _Run(run, set(pieces))
            for piece in pieces:
                self._edge_pieces[piece] = run.run_id
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
        )
