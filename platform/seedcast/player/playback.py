"""The playback clock and buffer of a player, fed ``now`` and downloads.

The model is the one every QoE study uses: playback starts once the buffer
holds ``startup_seconds`` of media; while playing, the buffer drains in real
time; when it empties before the end, a stall starts, and playback resumes
once ``resume_seconds`` are buffered again (or the last segment arrived).
Startup delay, stalls and played time fall out of this bookkeeping, computed
at the exact instants the buffer emptied, not when the shell happened to
look.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlaybackStatistics:
    startup_delay_s: float | None
    stall_count: int
    stall_seconds: float
    played_seconds: float
    buffer_seconds: float
    playing: bool


class Playback:
    def __init__(
        self,
        *,
        now: float,
        startup_seconds: float = 2.0,
        resume_seconds: float = 2.0,
        duration: float = float("inf"),
    ) -> None:
        self.started_at = now
        self.startup_seconds = startup_seconds
        self.resume_seconds = resume_seconds
        self.duration = duration
        self.buffered_until = 0.0
        """Media time up to which segments have arrived."""
        self.position = 0.0
        """Media time being shown."""
        self.playing = False
        self.startup_delay: float | None = None
        self.stall_count = 0
        self.stall_seconds = 0.0
        self._stall_began: float | None = None
        self._updated = now
        self._all_downloaded = False

    @property
    def buffer_seconds(self) -> float:
        return max(0.0, self.buffered_until - self.position)

    @property
    def ended(self) -> bool:
        return self.position >= self.duration - 1e-6

    def advance(self, now: float) -> None:
        """Let media time run from the last update to ``now``."""
        if now <= self._updated:
            return
        if self.playing:
            elapsed = now - self._updated
            playable = self.buffer_seconds
            if elapsed < playable:
                self.position += elapsed
            else:
                self.position += playable
                self.playing = False
                if not self.ended and not self._all_downloaded:
                    self.stall_count += 1
                    self._stall_began = self._updated + playable
        self._updated = now

    def segment_arrived(self, media_seconds: float, now: float, *, last: bool = False) -> None:
        """A segment covering ``media_seconds`` more of the timeline is buffered."""
        self.advance(now)
        self.buffered_until = min(self.duration, self.buffered_until + media_seconds)
        self._all_downloaded = self._all_downloaded or last
        if self.playing:
            return
        needed = self.startup_seconds if self.startup_delay is None else self.resume_seconds
        if self.buffer_seconds >= min(needed, self.duration - self.position) or last:
            self.playing = True
            if self.startup_delay is None:
                self.startup_delay = now - self.started_at
            elif self._stall_began is not None:
                self.stall_seconds += now - self._stall_began
                self._stall_began = None

    def seconds_until_buffer_below(self, level: float) -> float:
        """How long until the buffer drains to ``level`` (0 if it already is)."""
        if not self.playing:
            return 0.0
        return max(0.0, self.buffer_seconds - level)

    def statistics(self, now: float) -> PlaybackStatistics:
        self.advance(now)
        stalled_now = now - self._stall_began if self._stall_began is not None else 0.0
        return PlaybackStatistics(
            startup_delay_s=self.startup_delay,
            stall_count=self.stall_count,
            stall_seconds=self.stall_seconds + stalled_now,
            played_seconds=self.position,
            buffer_seconds=self.buffer_seconds,
            playing=self.playing,
        )
