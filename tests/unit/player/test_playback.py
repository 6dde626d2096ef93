from __future__ import annotations

import pytest
from seedcast.player.playback import Playback


def test_startup_delay_is_time_to_the_startup_buffer() -> None:
    playback = Playback(now=10.0, startup_seconds=2.0, duration=10.0)
    playback.segment_arrived(1.0, now=10.5)
    assert not playback.playing
    playback.segment_arrived(1.0, now=11.25)
    stats = playback.statistics(11.25)
    assert stats.startup_delay_s == pytest.approx(1.25)
    assert stats.playing


def test_buffer_drains_in_real_time_and_a_stall_is_counted_from_the_moment_it_empties() -> None:
    playback = Playback(now=0.0, startup_seconds=2.0, resume_seconds=2.0, duration=20.0)
    playback.segment_arrived(2.0, now=1.0)  # plays from t=1 with 2 s buffered
    playback.advance(4.0)  # emptied at t=3: stall began at 3
    assert not playback.playing
    playback.segment_arrived(2.0, now=4.5)
    stats = playback.statistics(4.5)
    assert stats.stall_count == 1
    assert stats.stall_seconds == pytest.approx(1.5)
    assert stats.played_seconds == pytest.approx(2.0)


def test_running_out_at_the_end_is_not_a_stall() -> None:
    playback = Playback(now=0.0, duration=4.0)
    playback.segment_arrived(2.0, now=0.0)
    playback.segment_arrived(2.0, now=0.5, last=True)
    stats = playback.statistics(100.0)
    assert stats.stall_count == 0
    assert stats.played_seconds == pytest.approx(4.0)


def test_an_ongoing_stall_counts_until_now() -> None:
    playback = Playback(now=0.0, startup_seconds=1.0, duration=10.0)
    playback.segment_arrived(1.0, now=0.0)
    assert playback.statistics(3.0).stall_seconds == pytest.approx(2.0)


def test_seconds_until_buffer_below() -> None:
    playback = Playback(now=0.0, startup_seconds=1.0, duration=60.0)
    for _ in range(5):
        playback.segment_arrived(2.0, now=0.0)
    assert playback.seconds_until_buffer_below(6.0) == pytest.approx(4.0)
