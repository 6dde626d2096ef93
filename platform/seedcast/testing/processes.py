"""Role processes for tests and experiments: start, wait for ready, stop, all bounded.

A :class:`RoleProcess` runs one ``python -m seedcast <role> ...`` (never under
a test's launcher: ``SEEDCAST_CONTROL`` is dropped), copies its log lines to
memory (and to ``<log_dir>/<name>.log`` when given), is ready when it logs
``ready addresses=...``, and stops with SIGTERM, then SIGKILL after
:data:`STOP_TIMEOUT`. :class:`seedcast.testing.origin.OriginProcess` and
:class:`seedcast.testing.streaming.StreamingCluster` are built on it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from seedcast.errors import SeedcastError
from seedcast.launcher.state import pid_alive

__all__ = [
    "COMMAND_TIMEOUT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "RoleProcess",
    "check_seedcast",
    "processes_mentioning",
    "run_seedcast",
    "seedcast_command",
]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 180.0
"""Bound on one ``seedcast`` command run to its end (``sample``, ``publish``, ...)."""
_READY = re.compile(r"\bready addresses=(\S+)")


def seedcast_command(*args: str, data_dir: Path | None = None) -> list[str]:
    """argv running ``seedcast`` with this interpreter."""
    command = [sys.executable, "-m", "seedcast"]
    if data_dir is not None:
        command += ["--data", str(data_dir)]
    return command + list(args)


def processes_mentioning(marker: str) -> list[int]:
    """Live processes (not this one) whose command line contains ``marker``: what a test
    expects to be gone (e.g. everything started in its scratch folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in command and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def run_seedcast(
    *args: str, data_dir: Path | None = None, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a ``seedcast`` command to its end (output captured, no stdin); never raises on exit."""
    return subprocess.run(
        seedcast_command(*args, data_dir=data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def check_seedcast(
    *args: str, data_dir: Path | None = None, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """:func:`run_seedcast`, raising SeedcastError with its last output lines if it fails."""
    completed = run_seedcast(*args, data_dir=data_dir, timeout=timeout)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise SeedcastError(
            f"seedcast {' '.join(args)} exited {completed.returncode}: {' | '.join(tail)}"
        )
    return completed


class RoleProcess:
    """One ``seedcast`` role as a child process, ready when it logs ``ready addresses=...``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log" if log_dir is not None else None
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[str] | None = None
        self.addresses: list[str] = []
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> RoleProcess:
        env = {**os.environ, **self.extra_env}
        env.pop("SEEDCAST_CONTROL", None)  # never mistake a test's launcher for ours
        self.addresses = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        return self

    def _read_log(self) -> None:
        process = self.process
        assert process is not None
        assert process.stderr is not None
        with contextlib.ExitStack() as stack:
            log = (
                stack.enter_context(self.log_path.open("a", encoding="utf-8"))
                if self.log_path
                else None
            )
            for line in process.stderr:
                if log is not None:
                    log.write(line)
                    log.flush()
                self.log_lines.append(line.rstrip("\n"))
                if not self._ready.is_set():
                    match = _READY.search(line)
                    if match:
                        self.addresses = match.group(1).split(",")
                        self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> RoleProcess:
        if not self._ready.wait(timeout) or not self.addresses:
            tail = " | ".join(self.log_lines[-6:])
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready: {tail}")
        return self

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (and wait for it)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)
        self._join()

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it must; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        self._join()
        return process.returncode

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
