"""Logs stay bounded whatever a peer sends: repeats are suppressed, files rotate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from seedcast import logs
from seedcast.logs import RepeatFilter, setup_logging


def _record(message: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("seedcast.edge", level, __file__, 1, message, args, None)


def test_repeats_beyond_the_burst_are_dropped_then_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(burst=3, window=10.0, clock=lambda: now[0])
    passed = [repeats.filter(_record("bad header from %s", f"10.0.0.{n}")) for n in range(2000)]
    assert sum(passed) == 3
    assert repeats.filter(_record("another message"))  # other kinds are not affected
    now[0] = 10.5
    record = _record("bad header from %s", "10.0.0.1")
    assert repeats.filter(record)
    assert record.fields == {"suppressed_repeats": 1997}  # type: ignore[attr-defined]


def test_one_record_is_judged_once_by_shared_handlers() -> None:
    repeats = RepeatFilter(burst=1, window=10.0, clock=lambda: 0.0)
    record = _record("x")
    assert repeats.filter(record)
    assert repeats.filter(record)  # the second handler sees the same verdict
    assert not repeats.filter(_record("x"))


def test_log_files_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "LOG_FILE_MAX_BYTES", 4096)
    monkeypatch.setattr(logs, "REPEAT_BURST", 10**9)
    file = tmp_path / "logs" / "edge-1.log"
    setup_logging("edge", "edge-1", file=file)
    log = logging.getLogger("seedcast.test")
    try:
        for index in range(2000):
            log.info("line %d %s", index, "x" * 40)
    finally:
        root = logging.getLogger("seedcast")
        for handler in root.handlers:
            handler.close()
        root.handlers.clear()
    files = sorted(path.name for path in file.parent.iterdir())
    assert files == ["edge-1.log", "edge-1.log.1", "edge-1.log.2", "edge-1.log.3"]
    assert all(path.stat().st_size <= 4096 for path in file.parent.iterdir())
