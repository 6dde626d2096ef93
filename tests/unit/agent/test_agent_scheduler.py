"""The viewer agent's sans-IO core: layout, timeline, scheduling decisions, piece cutting."""

from __future__ import annotations

import hashlib
import random
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


@pytest.fixture
def ladder(tmp_path: Path) -> Fixture:
    """Two video renditions (v, w) and one audio track (a), 5 segments of 2 s each."""
    folder = tmp_path / "ladder"
    folder.mkdir()
    files: dict[str, bytes] = {"manifest.mpd": b"<MPD/>"}
    timed = []
    for track, kind in (("v", "video"), ("w", "video"), ("a", "audio")):
        files[f"init-{track}.m4s"] = b"i" * 300
        timed.append(TimedFile(f"init-{track}.m4s", f"{kind}:{track}", kind, -1))
        for number in range(1, 6):
            name = f"{track}-{number}.m4s"
            files[name] = bytes([number]) * (PIECE + 10)
            timed.append(
                TimedFile(name, f"{kind}:{track}", kind, number - 1, 2.0 * (number - 1), 2.0)
            )
    for name, data in files.items():
        (folder / name).write_bytes(data)
    torrent = create_torrent(folder, list(files), announce="", name="ladder", piece_length=PIECE)
    metainfo = Metainfo.parse(torrent)
    return Fixture(metainfo, TorrentLayout(metainfo), Timeline(timed), files)


def scheduler(
    movie: Fixture, *, rng: random.Random | None = None, **changes: float
) -> StreamScheduler:
    options = {
        "prefetch_seconds": 10.0,
        "urgent_seconds": 4.0,
        "edge_margin_seconds": 0.5,
        "edge_rate": 1_000_000.0,
        "edge_latency_seconds": 0.05,
        "peer_seconds": 1.0,
        "give_up_seconds": 8.0,
        **changes,
    }
    settings = SchedulerSettings(**options)  # type: ignore[arg-type]
    result = StreamScheduler(movie.layout, settings, rng=rng or random.Random(1))
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


def test_trailing_padding_is_not_part_of_a_pieces_payload(movie: Fixture) -> None:
    span = movie.layout.file("v-1.m4s")
    assert span is not None
    payloads = [movie.metainfo.piece_payload(index) for index in span.pieces]
    assert payloads == [PIECE, PIECE, PIECE, SEGMENT - 3 * PIECE]
    assert all(movie.metainfo.piece_size(index) == PIECE for index in span.pieces)


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

ETA = 0.05 + PIECE / 1_000_000
"""The edge's assumed time for one piece (latency + bytes at the assumed rate)."""
MARGIN = 0.5


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


def test_the_first_segment_comes_from_the_edge_at_once_even_when_peers_have_it(
    movie: Fixture,
) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    core.request("init-v.m4s", pieces(movie, "init-v.m4s"), now=10.0)
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=10.0)
    plan = core.plan(10.0, view)
    assert {run.name for run in plan.edge_runs if run.waiting} == {"init-v.m4s", "v-1.m4s"}


def test_a_segment_asked_ahead_stays_with_the_peers_until_the_handover(movie: Fixture) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=10.0)  # anchors: v-2 plays >= 12.0
    core.request("v-2.m4s", pieces(movie, "v-2.m4s"), now=10.5)
    plan = core.plan(10.5, view)
    assert not plan.edge_runs
    handover = 12.0 - ETA - MARGIN
    first = pieces(movie, "v-2.m4s")[0]
    assert plan.deadlines[first] == pytest.approx(handover)
    assert plan.next_check <= handover + 1e-9
    assert not core.plan(handover - 0.01, view).edge_runs
    # The peers did not make it: the edge takes over, once.
    late = core.plan(handover, view)
    assert [run.name for run in late.edge_runs if run.waiting] == ["v-2.m4s"]


def test_the_grace_follows_the_measured_rates(movie: Fixture) -> None:
    core = scheduler(movie)
    first = pieces(movie, "v-2.m4s")[0]
    assumed = core.handover(first, 20.0)
    assert assumed == pytest.approx(20.0 - ETA - MARGIN)
    # A slow edge (100 kB/s, 0.3 s to the first byte) is handed pieces earlier.
    for _ in range(20):
        core.rates.edge_fetch(100_000, 0.3, 1.3)
    assert core.rates.edge_rate == pytest.approx(100_000, rel=0.01)
    assert core.handover(first, 20.0) == pytest.approx(20.0 - 0.3 - PIECE / 100_000 - MARGIN, 0.01)
    # Peers measured slower than a piece's slack: it goes to the edge without waiting.
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    for _ in range(20):
        core.rates.peer_delivery(3.0)
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    names = {run.name for run in core.plan(0.0, view).edge_runs}
    assert "v-2.m4s" in names  # due in 2 s
    assert "v-4.m4s" not in names  # due in 6 s: the peers have time


def test_the_peers_delivery_time_is_measured_from_their_deadline(movie: Fixture) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    core.plan(0.0, view)
    index = pieces(movie, "v-2.m4s")[0]
    core.piece_arrived(index, 0.4, "peer")
    assert core.rates.peer_seconds == pytest.approx(1.0 + 0.3 * (0.4 - 1.0))


def test_peers_that_choke_us_cannot_deliver(movie: Fixture) -> None:
    core = scheduler(movie)
    view = peers_have_everything(movie)
    view.unchoking = 0
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    assert core.plan(0.0, view).edge_runs


def test_the_scheduler_knows_who_waits_for_which_piece(movie: Fixture) -> None:
    core = scheduler(movie)
    segment = pieces(movie, "v-1.m4s")
    have = {segment[0]}
    first = core.request("v-1.m4s", segment, now=0.0, have=have.__contains__)
    second = core.request("v-1.m4s", segment[2:], now=0.0, have=have.__contains__)
    assert not core.ready(first)
    assert core.piece_arrived(segment[1], 0.1) == []
    assert core.piece_arrived(segment[2], 0.2) == []
    assert sorted(core.piece_arrived(segment[3], 0.3)) == [first, second]
    assert core.ready(first)
    core.finish(first)
    core.finish(second)
    assert core.waiting == 0
    # A finished request is forgotten by every piece.
    third = core.request("v-2.m4s", pieces(movie, "v-2.m4s"), now=1.0)
    core.finish(third)
    assert core.piece_arrived(pieces(movie, "v-2.m4s")[0], 1.1) == []


def test_a_request_for_pieces_already_here_needs_nothing(movie: Fixture) -> None:
    core = scheduler(movie)
    view = View(have=set(range(movie.layout.piece_count)))
    request_id = core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0, have=view.has)
    assert core.ready(request_id)
    plan = core.plan(0.0, view)
    assert not plan.edge_runs
    assert not plan.deadlines
    core.finish(request_id)
    assert core.waiting == 0


# -- the playhead model ------------------------------------------------------------------------


def test_a_late_request_or_a_seek_moves_the_anchor(movie: Fixture) -> None:
    core = scheduler(movie, prefetch_seconds=0.0)
    view = peers_have_everything(movie)
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    view.have.update(pieces(movie, "v-1.m4s"))
    # v-2 asked at 5.0 although the model had it due at 2.0: the buffer ran dry, due now.
    core.request("v-2.m4s", pieces(movie, "v-2.m4s"), now=5.0)
    assert [r.name for r in core.plan(5.0, view).edge_runs] == ["v-2.m4s"]
    # A jump forward (seek) is due now too.
    core.request("v-8.m4s", pieces(movie, "v-8.m4s"), now=5.1)
    assert "v-8.m4s" in [r.name for r in core.plan(5.1, view).edge_runs]


def test_segments_ahead_get_deadlines_then_the_window(movie: Fixture) -> None:
    core = scheduler(movie, urgent_seconds=4.0, prefetch_seconds=10.0)
    view = peers_have_everything(movie)
    view.have.update(pieces(movie, "v-1.m4s"))
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=50.0)
    plan = core.plan(50.0, view)
    # v-2 (due in 2 s) and v-3 (4 s): deadlines at their handover to the edge.
    assert plan.deadlines[pieces(movie, "v-2.m4s")[0]] == pytest.approx(52.0 - ETA - MARGIN)
    assert plan.deadlines[pieces(movie, "v-3.m4s")[0]] == pytest.approx(54.0 - ETA - MARGIN)
    # v-4 .. v-6 (6..10 s ahead): the prefetch window, earliest first, not deadlines.
    window = list(plan.window)
    for name in ("v-4.m4s", "v-5.m4s", "v-6.m4s"):
        assert set(pieces(movie, name)) <= set(window)
        assert not set(pieces(movie, name)) & set(plan.deadlines)
    assert window.index(pieces(movie, "v-4.m4s")[0]) < window.index(pieces(movie, "v-6.m4s")[0])
    # v-7 is beyond the horizon.
    assert not set(pieces(movie, "v-7.m4s")) & set(window)
    assert not plan.edge_runs  # peers have it all and there is time


def test_no_rendition_is_fetched_before_the_player_asks_for_it(ladder: Fixture) -> None:
    core = scheduler(ladder, prefetch_seconds=20.0)
    view = peers_have_everything(ladder)
    for name in ("init-v.m4s", "v-1.m4s", "init-a.m4s", "a-1.m4s"):
        view.have.update(pieces(ladder, name))
        core.request(name, pieces(ladder, name), now=0.0)
    plan = core.plan(0.0, view)
    wanted = set(plan.window) | set(plan.deadlines)
    # The ABR may pick v or w next: neither is fetched ahead. Audio has no choice.
    for number in range(2, 6):
        assert not set(pieces(ladder, f"v-{number}.m4s")) & wanted
        assert not set(pieces(ladder, f"w-{number}.m4s")) & wanted
        assert set(pieces(ladder, f"a-{number}.m4s")) <= wanted


def test_starting_a_track_fetches_its_first_segment_and_the_audio_at_once(
    ladder: Fixture,
) -> None:
    core = scheduler(ladder)
    view = peers_have_everything(ladder)
    core.request("init-w.m4s", pieces(ladder, "init-w.m4s"), now=3.0)
    names = {run.name for run in core.plan(3.0, view).edge_runs}
    # The player asks w-1 next for certain, then the only audio track's start.
    assert names == {"init-w.m4s", "w-1.m4s", "init-a.m4s", "a-1.m4s"}
    assert not any(name.startswith("v-") or name == "init-v.m4s" for name in names)


def test_a_piece_nobody_offers_is_seeded_from_the_edge_at_a_random_instant(
    movie: Fixture,
) -> None:
    instants = []
    for seed in range(50):
        core = scheduler(movie, rng=random.Random(seed))
        view = View(have=set(pieces(movie, "v-1.m4s")), unchoking=3)
        core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
        target = pieces(movie, "v-4.m4s")[0]  # due at 6.0
        handover = 6.0 - ETA - MARGIN
        now = 0.0
        fired = None
        while now < handover + 0.1:
            plan = core.plan(now, view)
            if any(target in run.pieces for run in plan.edge_runs):
                fired = now
                break
            for run in plan.edge_runs:  # other pieces: fetched at once
                for index in run.pieces:
                    view.have.add(index)
                    core.edge_piece_done(index)
                core.edge_run_done(run.run_id, now)
            now = max(now + 0.001, min(plan.next_check, handover))
        assert fired is not None
        assert fired <= handover + 1e-9
        instants.append(fired)
    # Among 50 viewers waiting for a piece nobody has, one takes it early; most wait.
    assert min(instants) < 0.5
    assert sum(1 for instant in instants if instant < 1.0) < 20


def test_a_seeded_piece_goes_to_the_peers_once_one_has_it(movie: Fixture) -> None:
    core = scheduler(movie, rng=random.Random(3))
    view = View(have=set(pieces(movie, "v-1.m4s")), unchoking=3)
    core.request("v-1.m4s", pieces(movie, "v-1.m4s"), now=0.0)
    core.plan(0.0, view)
    # Another viewer fetched v-4 and announced it: no edge run for it, ever before the handover.
    for index in pieces(movie, "v-4.m4s"):
        view.available[index] = 1
    now = 0.01
    while now < 6.0 - ETA - MARGIN - 0.01:
        plan = core.plan(now, view)
        assert not [run for run in plan.edge_runs if run.name == "v-4.m4s"]
        now += 0.2


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
    core = scheduler(movie, give_up_seconds=3.0)
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
    for number in (1, 4, 7):  # seeks: each due at once
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
