"""ffmpeg's ``-progress pipe:1`` output, parsed without IO.

ffmpeg writes blocks of ``key=value`` lines, each block ending with
``progress=continue`` (or ``progress=end`` for the last one)::

    frame=53
    fps=52.98
    out_time_us=2901333
    speed= 2.9x
    progress=continue

Feed bytes as they arrive with :meth:`ProgressParser.feed`; it returns a
:class:`ProgressUpdate` per completed block. Unknown keys are ignored,
unparsable values read as "not known", and a line longer than the limit is
dropped, so no output from ffmpeg can make the parser fail or grow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ProgressParser", "ProgressUpdate"]

MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    out_time: float | None
    """Seconds of output written so far."""
    frame: int | None
    speed: float | None
    """Encoding speed as a multiple of real time."""
    total_size: int | None
    done: bool

    def fraction(self, duration: float | None) -> float | None:
        """How far along, 0..1, given the input's duration (None when unknown)."""
        if self.done:
            return 1.0
        if not duration or self.out_time is None:
            return None
        return min(1.0, max(0.0, self.out_time / duration))


class ProgressParser:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fields: dict[str, str] = {}
        self._discarding = False

    def feed(self, data: bytes) -> list[ProgressUpdate]:
        """Bytes from ffmpeg's stdout -> the blocks they complete (often none)."""
        updates: list[ProgressUpdate] = []
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                    self._discarding = True
                return updates
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if self._discarding:
                self._discarding = False
                continue
            update = self._line(line.decode("utf-8", "replace").strip())
            if update is not None:
                updates.append(update)

    def _line(self, line: str) -> ProgressUpdate | None:
        key, sep, value = line.partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key != "progress":
            if len(self._fields) < 64 or key in self._fields:
                self._fields[key] = value
            return None
        fields, self._fields = self._fields, {}
        out_time_us = _int(fields.get("out_time_us")) or _int(fields.get("out_time_ms"))
        speed_text = fields.get("speed", "").removesuffix("x").strip()
        return ProgressUpdate(
            out_time=out_time_us / 1_000_000
            if out_time_us is not None and out_time_us >= 0
            else None,
            frame=_int(fields.get("frame")),
            speed=_float(speed_text),
            total_size=_int(fields.get("total_size")),
            done=value == "end",
        )


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
