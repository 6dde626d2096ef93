"""The test-support helpers that stop processes: stop_process and interrupt_after."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from seedcast.testing.processes import interrupt_after, stop_process

_IGNORES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)
_CTRL_C = (
    "import sys, time\n"
    "try:\n"
    "    print('working', file=sys.stderr, flush=True)\n"
    "    time.sleep(60)\n"  # until the test's SIGINT
    "except KeyboardInterrupt:\n"
    "    print('interrupted', file=sys.stderr, flush=True)\n"
    "    sys.exit(130)\n"
)


def test_a_process_that_stops_on_sigterm_reports_it() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(process, 10) == -signal.SIGTERM


def test_a_process_ignoring_sigterm_is_killed_after_the_grace() -> None:
    process = subprocess.Popen([sys.executable, "-c", _IGNORES_TERM], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"  # its handler is in place
    assert stop_process(process, 0.5) == -signal.SIGKILL
    process.stdout.close()


def test_stopping_an_exited_process_returns_its_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(10)
    assert stop_process(process, 10) == 3


def test_interrupt_after_sends_ctrl_c_at_the_awaited_line() -> None:
    code, stderr = interrupt_after(
        [sys.executable, "-c", _CTRL_C], lambda line: line.startswith("working")
    )
    assert code == 130
    assert stderr == "working\ninterrupted\n"


def test_interrupt_after_fails_when_the_line_never_comes() -> None:
    with pytest.raises(AssertionError, match="no awaited line"):
        interrupt_after([sys.executable, "-c", "print('other')"], lambda line: "x" in line)
