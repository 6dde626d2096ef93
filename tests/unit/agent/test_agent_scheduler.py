"""The viewer agent's sans-IO core: layout, timeline, scheduling decisions, piece cutting."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.agent.scheduler import (
    SchedulerSettings,
    StreamScheduler,
    TimedFile,
    Timeline,
    TorrentLayout,
)
from seedcast.agent.sources import PieceCutter, PieceSlot
from seedcast.errors import ConfigError
from seedcast.peer.metainfo import Metainfo, create_torrent

PIECE = 16 * 1024
# Segment sizes: 3 pieces and a bit (4 pieces, the last padded).
SEGMENT = 3 * PIECE + 1000


@dataclass
class Fixture:
    metainfo: Metainfo
    layout: TorrentLayout
    timeline: Timeline
    files: dict[str, bytes]


def build(tmp: Path, *, segments: int = 10, pad: bool = True) -> Fixture:
    folder = tmp / "movie"
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {"manifest.mpd": b"<MPD/>", "init-v.m4s": b"i" * 500}
    for number in range(1, segments + 1):
        files[f"v-{number}.m4s"] = bytes([number]) * SEGMENT
    for name, data in files.items():
        (folder / name).write_bytes(data)
    torrent = create_torrent(
        folder, list(files), announce="", name="movie", piece_length=PIECE, pad_files=pad
    )
    metainfo = Metainfo.parse(torrent)
    timed = [TimedFile("init-v.m4s", "video:v", "video", -1)]
    timed += [
        TimedFile(f"v-{number}.m4s", "video:v", "video", number - 1, 2.0 * (number - 1), 2.0)
        for number in range(1, segments + 1)
    ]
    return Fixture(metainfo, TorrentLayout(metainfo), Timeline(timed), files)


@dataclass
class View:
    have: set[int] = field(default_factory=set)
    available: dict[int, int] = field(default_factory=dict)
    unchoking: int = 0

    def has(self, index: int) -> bool:
        return index in self.have

    def availability(self, index: int) -> int:
        return self.available.get(index, 0)

    def unchoking_peers(self) -> int:
        return self.unchoking


@pytest.fixture
def movie(tmp_path: Path) -> Fixture:
    return build(tmp_path)


def scheduler(movie: Fixture, **changes: float) -> StreamScheduler:
    options = {
        "prefetch_seconds": 10.0,
        "urgent_seconds": 4.0,
        "peer_grace_seconds": 1.0,
        "edge_lead_seconds": 1.0,
        "give_up_seconds": 8.0,
        **changes,
    }
    result = StreamScheduler(movie.layout, SchedulerSettings(**options))  # type: ignore[arg-type]
    result.set_timeline(movie.timeline)
    return result


def pieces(movie: Fixture, name: str) -> range:
    span = movie.layout.file(name)
    assert span is not None
    return span.pieces


def peers_have_everything(movie: Fixture) -> View:
    count = movie.layout.piece_count
    return View(available=dict.fromkeys(range(count), 2), unchoking=2)


# -- layout and timeline ---------------------------------------------------------------------


def test_layout_maps_each_file_to_whole_pieces(movie: Fixture) -> None:
    layout = movie.layout
    manifest = layout.file("manifest.mpd")
    assert manifest is not None
    assert manifest.pieces == range(0, 1)
    segment = layout.file("v-1.m4s")
    assert segment is not None
    assert len(segment.pieces) == 4
    assert segment.offset == segment.first_piece * PIECE
    # The last piece holds the file's tail; the rest of it is padding.
    assert segment.file_range(segment.end_piece - 1) == (3 * PIECE, SEGMENT)
    assert segment.pieces_for(PIECE, PIECE + 1) == range(
        segment.first_piece + 1, segment.first_piece + 2
    )
    assert segment.pieces_for(5, 5) == range(segment.first_piece, segment.first_piece)
    assert layout.owner(segment.first_piece + 2) == segment
    assert layout.file("nope") is None


def test_a_torrent_without_padding_is_refused(tmp_path: Path) -> None:
    unpadded = tmp_path / "unpadded"
    with pytest.raises(ConfigError, match="piece boundary"):
        build(unpadded, pad=False)


def test_timeline_follows_a_track(movie: Fixture) -> None:
    first = movie.timeline.get("v-1.m4s")
    assert first is not None
    after = movie.timeline.after(first)
    assert [timed.name for timed in after[:2]] == ["v-2.m4s", "v-3.m4s"]
    init = movie.timeline.get("init-v.m4s")
    assert init is not None
    assert init.is_init
    assert movie.timeline.after(init)[0].name == "v-1.m4s"


# -- the player waits -------------------------------------------------------------------------


def test_a_waited_piece_nobody_has_goes_to_the_edge_in_one_range(movie: Fixture) -> None:
    core = scheduler(movie)
    name = "v-3.m4s"
    core.request(name, pieces(movie, name), now=100.0)
    plan = core.plan(100.0, View())
    runs = [run for run in plan.edge_runs if run.name == name]
    assert len(runs) == 1
    run = runs[0]
    assert run.pieces == pieces(movie, name)
    assert (run.file_start, run.file_end) == (0, SEGMENT)
    assert run.waiting
    # In flight: not asked twice, and not in the picker's deadlines.
    again = core.plan(100.1, View())
    assert all(other.name != name for other in again.edge_runs)
    assert not set(again.deadlines) & set(run.pieces)


def test_a_waited_piece_peers_have_stays_with_them_for_the_grace_period(movie: Fixture) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    name = "v-1.m4s"
    core.request(name, pieces(movie, name), now=10.0)
    plan = core.plan(10.0, view)
    assert not plan.edge_runs
    assert set(pieces(movie, name)) <= set(plan.deadlines)
    assert plan.deadlines[pieces(movie, name)[0]] == 11.0  # the handover to the edge
    assert plan.next_check <= 11.0
    assert not core.plan(10.9, view).edge_runs
    # The peers stalled: the edge takes over.
    late = core.plan(11.0, view)
    assert [run.name for run in late.edge_runs if run.waiting] == [name]


def test_peers_that_choke_us_cannot_deliver(movie: Fixture) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    view.unchoking = 0
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    assert core.plan(0.0, view).edge_runs


def test_a_request_for_pieces_already_here_needs_nothing(movie: Fixture) -> None:
    core = scheduler(movie)
    view = View(have=set(range(movie.layout.piece_count)))
    request_id = core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    plan = core.plan(0.0, view)
    assert not plan.edge_runs
    assert not plan.deadlines
    core.finish(request_id)
    assert core.waiting == 0


# -- ahead of the playhead ---------------------------------------------------------------------


def test_segments_ahead_get_deadlines_then_the_window(movie: Fixture) -> None:
    core = scheduler(movie, urgent_seconds=4.0, prefetch_seconds=10.0)
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=50.0)
    plan = core.plan(50.0, view)
    # v-2 (due in 2 s) and v-3 (4 s): urgent, with their playback deadlines.
    assert plan.deadlines[pieces(movie, "v-2.m4s")[0]] == pytest.approx(52.0)
    assert plan.deadlines[pieces(movie, "v-3.m4s")[0]] == pytest.approx(54.0)
    # v-4 .. v-6 (6..10 s ahead): the prefetch window, not deadlines.
    window = set(plan.window)
    for name in ("v-4.m4s", "v-5.m4s", "v-6.m4s"):
        assert set(pieces(movie, name)) <= window
        assert not set(pieces(movie, name)) & set(plan.deadlines)
    # v-7 is beyond the window.
    assert not set(pieces(movie, "v-7.m4s")) & window
    assert not plan.edge_runs  # peers have it all and there is time


def test_urgent_segments_nobody_has_come_from_the_edge(movie: Fixture) -> None:
    core = scheduler(movie)
    view = View(have=set(pieces(movie, "v-1.m4s")))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    plan = core.plan(0.0, view)
    names = {run.name for run in plan.edge_runs}
    assert names == {"v-2.m4s", "v-3.m4s"}
    assert not any(run.waiting for run in plan.edge_runs)
    # Prefetch-window segments are left to peers, even when none has them yet.
    assert "v-4.m4s" not in names


def test_an_urgent_segment_still_missing_close_to_its_time_goes_to_the_edge(
    movie: Fixture,
) -> None:
    core = scheduler(movie, edge_lead_seconds=1.0)
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    plan = core.plan(0.0, view)
    assert not plan.edge_runs
    assert plan.next_check == pytest.approx(0.5)  # idle check comes first
    # v-2 is due at 2.0: at 1.0 it is within the lead and still missing.
    later = core.plan(1.0, view)
    assert [run.name for run in later.edge_runs] == ["v-2.m4s"]


def test_the_playhead_follows_the_latest_request(movie: Fixture) -> None:
    core = scheduler(movie, prefetch_seconds=4.0)
    view = peers_have_everything(movie)
    core.request("v-5.m4s", pieces(movie, "v-5.m4s"), now=0.0)
    plan = core.plan(0.0, view)
    assert pieces(movie, "v-6.m4s")[0] in plan.deadlines
    assert pieces(movie, "v-2.m4s")[0] not in plan.deadlines


# -- the edge fails or lies ---------------------------------------------------------------------


def test_a_failed_run_backs_off_then_retries(movie: Fixture) -> None:
    core = scheduler(movie, edge_backoff_initial=0.25, edge_backoff_max=2.0, prefetch_seconds=0.0)
    name = "v-1.m4s"
    core.request(name, pieces(movie, name), now=0.0)
    (run,) = core.plan(0.0, View()).edge_runs
    core.edge_run_failed(run.run_id, 0.1, "ConnectError: refused")
    during = core.plan(0.2, View())
    assert not during.edge_runs
    assert during.next_check == pytest.approx(0.35)
    (second,) = core.plan(0.35, View()).edge_runs
    core.edge_run_failed(second.run_id, 0.4, "ConnectError: refused")
    assert not core.plan(0.8, View()).edge_runs  # backoff doubled to 0.5 s
    (third,) = core.plan(0.9, View()).edge_runs
    for index in third.pieces:
        core.edge_piece_done(index)
    core.edge_run_done(third.run_id, 1.0)
    assert core.statistics(1.0).edge_backoff_seconds == 0.0


def test_a_run_that_ended_early_returns_its_pieces(movie: Fixture) -> None:
    core = scheduler(movie)
    name = "v-2.m4s"
    core.request(name, pieces(movie, name), now=0.0)
    (run,) = [r for r in core.plan(0.0, View()).edge_runs if r.name == name]
    core.edge_piece_done(run.first_piece)
    core.edge_run_done(run.run_id, 0.1)
    view = View(have={run.first_piece})
    (again,) = [r for r in core.plan(0.2, view).edge_runs if r.name == name]
    assert again.first_piece == run.first_piece + 1
    assert again.file_start == PIECE


def test_requests_give_up_with_504_or_502(movie: Fixture) -> None:
    core = scheduler(movie, give_up_seconds=3.0)
    view = peers_have_everything(movie)
    first = core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    core.plan(0.0, view)
    # Peers never deliver and the edge run never ends: nobody is to blame but time.
    core.plan(1.0, view)
    plan = core.plan(3.0, view)
    assert [(e.request_id, e.status) for e in plan.expired] == [(first, 504)]
    assert "within 3.0 s" in plan.expired[0].message
    assert core.waiting == 0
    # When the edge was failing, it is a 502 naming the failure.
    second = core.request("v-2.m4s", pieces(movie, "v-2.m4s"), now=10.0)
    for run in core.plan(10.0, View()).edge_runs:
        core.edge_run_failed(run.run_id, 10.5, "ConnectError: refused")
    (expired,) = core.plan(13.0, View()).expired
    assert (expired.request_id, expired.status) == (second, 502)
    assert "refused" in expired.message


def test_edge_bytes_that_keep_failing_the_hash_give_a_502(movie: Fixture) -> None:
    core = scheduler(movie, max_edge_mismatches=3, edge_backoff_initial=0.1)
    name = "v-1.m4s"
    request_id = core.request(name, pieces(movie, name), now=0.0)
    now = 0.0
    for attempt in range(3):
        plan = core.plan(now, View())
        assert not plan.expired
        (run,) = [r for r in plan.edge_runs if r.name == name]
        for index in run.pieces:
            core.edge_piece_mismatch(index, now)
        core.edge_run_done(run.run_id, now)
        now += 1.0
        assert attempt < 3
    (expired,) = core.plan(now, View()).expired
    assert (expired.request_id, expired.status) == (request_id, 502)
    assert "do not match the torrent" in expired.message
    assert core.statistics(now).edge_mismatches == 3 * len(pieces(movie, name))


def test_runs_respect_the_size_and_concurrency_caps(movie: Fixture) -> None:
    core = scheduler(movie, max_run_bytes=2 * PIECE, max_edge_fetches=3)
    for number in (1, 2, 3):
        name = f"v-{number}.m4s"
        core.request(name, pieces(movie, name), now=0.0)
    plan = core.plan(0.0, View())
    assert len(plan.edge_runs) == 3
    for run in plan.edge_runs:
        assert run.count <= 2
        assert run.file_end - run.file_start <= 2 * PIECE
    # The first file's 4 pieces took two runs, earliest need first.
    assert [run.name for run in plan.edge_runs[:2]] == ["v-1.m4s", "v-1.m4s"]
    assert not core.plan(0.1, View()).edge_runs  # no room until one ends
    core.edge_run_done(plan.edge_runs[0].run_id, 0.2)
    assert len(core.plan(0.2, View()).edge_runs) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["request", "fail", "done", "have", "tick"]),
            st.integers(min_value=1, max_value=10),
        ),
        max_size=40,
    )
)
def test_never_two_runs_for_a_piece_nor_runs_for_pieces_we_have(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    movie = _shared_movie(tmp_path_factory)
    core = scheduler(movie, edge_backoff_initial=0.0, edge_backoff_max=0.0)
    view = View(unchoking=1)
    in_flight: dict[int, int] = {}
    now = 0.0
    for action, number in steps:
        now += 0.3
        name = f"v-{number}.m4s"
        if action == "request":
            core.request(name, pieces(movie, name), now)
        elif action == "have":
            view.have.update(pieces(movie, name))
            for index in pieces(movie, name):
                core.edge_piece_done(index)
                in_flight.pop(index, None)
        elif action in ("fail", "done") and in_flight:
            run_id = next(iter(in_flight.values()))
            if action == "fail":
                core.edge_run_failed(run_id, now, "boom")
            else:
                core.edge_run_done(run_id, now)
            for index in [i for i, r in in_flight.items() if r == run_id]:
                del in_flight[index]
        plan = core.plan(now, view)
        for run in plan.edge_runs:
            for index in run.pieces:
                assert index not in in_flight, "piece fetched twice from the edge"
                assert index not in view.have, "piece we have fetched from the edge"
                in_flight[index] = run.run_id
        assert plan.next_check >= now
        assert not set(plan.deadlines) & set(in_flight)


_MOVIES: dict[str, Fixture] = {}


def _shared_movie(factory: pytest.TempPathFactory) -> Fixture:
    if "movie" not in _MOVIES:
        _MOVIES["movie"] = build(factory.mktemp("movie"))
    return _MOVIES["movie"]


# -- cutting edge bytes into pieces ------------------------------------------------------------


def test_cut_pieces_hash_like_the_torrent(movie: Fixture) -> None:
    name = "v-2.m4s"
    span = movie.layout.file(name)
    assert span is not None
    slots = []
    for index in span.pieces:
        start, end = span.file_range(index)
        slots.append(PieceSlot(index, end - start, movie.layout.piece_size(index)))
    cutter = PieceCutter(slots)
    cut = cutter.feed(movie.files[name])
    assert cutter.done
    assert [index for index, _ in cut] == list(span.pieces)
    for index, data in cut:
        assert hashlib.sha1(data).digest() == movie.metainfo.pieces[index]


@given(
    data=st.binary(min_size=1, max_size=3000),
    piece=st.integers(min_value=1, max_value=700),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    skip=st.integers(min_value=0, max_value=50),
    padded=st.booleans(),
)
def test_any_chunking_cuts_the_same_pieces(
    data: bytes, piece: int, cuts: list[int], skip: int, padded: bool
) -> None:
    slots = []
    for number, start in enumerate(range(0, len(data), piece)):
        file_bytes = min(piece, len(data) - start)
        size = piece if padded else file_bytes
        slots.append(PieceSlot(number, file_bytes, size))
    expected = []
    for slot, start in zip(slots, range(0, len(data), piece), strict=True):
        chunk = data[start : start + slot.file_bytes]
        expected.append((slot.index, chunk + bytes(slot.size - len(chunk))))
    stream = b"x" * skip + data + b"trailing junk"
    positions = sorted({min(cut, len(stream)) for cut in cuts})
    cutter = PieceCutter(slots, skip=skip)
    got = []
    previous = 0
    for position in [*positions, len(stream)]:
        got += cutter.feed(stream[previous:position])
        previous = position
    assert got == expected
    assert cutter.done
    assert cutter.pending == []


def test_a_short_stream_leaves_pieces_pending() -> None:
    cutter = PieceCutter([PieceSlot(4, 10, 16), PieceSlot(5, 10, 10)])
    assert cutter.feed(b"a" * 12) == [(4, b"a" * 10 + bytes(6))]
    assert cutter.pending == [5]
    assert cutter.expected_bytes == 8
    assert not cutter.done
    with pytest.raises(ValueError, match="file bytes"):
        PieceCutter([PieceSlot(0, 20, 10)])
