"""Structured logs: one line per event, with time, role, name and level.

``2026-11-24T21:30:01.123Z INFO  edge edge-1 cache purge prefix=/sample/ objects=12``

Key/value context goes in ``extra={"fields": {...}}``; values with spaces are
quoted. Every process calls :func:`setup_logging` once, with its role and name;
the launcher collects the lines from stderr and the per-process log file.

Logs are bounded, whatever a peer sends: a message (same logger, level and
template) repeated more than :data:`REPEAT_BURST` times in :data:`REPEAT_WINDOW`
seconds is dropped for the rest of the window, and the next one that passes
says how many were suppressed; log files rotate at :data:`LOG_FILE_MAX_BYTES`
keeping :data:`LOG_FILE_BACKUPS` old files (``edge-1.log.1`` ...).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any


class LineFormatter(logging.Formatter):
    def __init__(self, role: str, name: str) -> None:
        super().__init__()
        self.role = role
        self.name = name

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        if fields:
            message += " " + " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += " error=" + _quote(f"{type(error).__name__}: {error}")
        level = record.levelname.ljust(5)
        return f"{self.formatTime(record)} {level} {self.role} {self.name} {message}"


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(char in text for char in ' "='):
        return '"' + text.replace('"', '\\"') + '"'
    return text


REPEAT_BURST = 10
REPEAT_WINDOW = 10.0
LOG_FILE_MAX_BYTES = 16 * 1024 * 1024
LOG_FILE_BACKUPS = 3
_MAX_KEYS = 4096


class RepeatFilter(logging.Filter):
    """Let at most ``burst`` records of one kind through per ``window`` seconds."""

    def __init__(
        self,
        burst: int | None = None,
        window: float | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = REPEAT_BURST if burst is None else burst
        self.window = REPEAT_WINDOW if window is None else window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # start, passed, dropped
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_repeat_verdict", None)
        if verdict is None:  # several handlers share this filter: judge each record once
            verdict = self._judge(record)
            record._repeat_verdict = verdict
        return bool(verdict)

    def _judge(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        key = (record.name, record.levelno, str(record.msg))
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            dropped = int(entry[2]) if entry is not None else 0
            if len(self._seen) >= _MAX_KEYS:
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if dropped:
                fields = dict(getattr(record, "fields", None) or {})
                fields["suppressed_repeats"] = dropped
                record.fields = fields
            return True
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        self.suppressed += 1
        return False


def setup_logging(role: str, name: str, *, level: str = "INFO", file: Path | None = None) -> None:
    """Send ``seedcast.*`` logs to stderr (and ``file``) as one line per event."""
    formatter = LineFormatter(role, name)
    root = logging.getLogger("seedcast")
    root.handlers.clear()
    root.setLevel(level)
    root.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                file,
                maxBytes=LOG_FILE_MAX_BYTES,
                backupCount=LOG_FILE_BACKUPS,
                encoding="utf-8",
            )
        )
    repeats = RepeatFilter()  # one for all handlers: a record is judged once
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(repeats)
        root.addHandler(handler)
