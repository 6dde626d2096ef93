"""Structured logs: one line per event, with time, role, name and level.

``2026-11-24T21:30:01.123Z INFO  edge edge-1 cache purge prefix=/sample/ objects=12``

Key/value context goes in ``extra={"fields": {...}}``; values with spaces are
quoted. Every process calls :func:`setup_logging` once, with its role and name;
the launcher collects the lines from stderr and the per-process log file.
"""

from __future__ import annotations

import logging
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
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
