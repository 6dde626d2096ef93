"""No orphans: a child of the launcher dies with it, even when it is SIGKILLed.

Linux's ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` asks the kernel to send SIGTERM
to this process when its parent (strictly: the parent's thread that forked
it) exits. It is inherited across ``execve``, so the launcher's exec wrapper
(:mod:`seedcast.launcher._exec`) can set it for third-party programs too. The
launcher may die *before* the child gets to set it; so right after setting
it, the child checks that its parent is still the launcher whose pid it was
given (``SEEDCAST_LAUNCHER_PID``) and exits at once if not.

This module imports nothing heavy: it runs first thing in every child.
"""

from __future__ import annotations

import os
import signal
import sys

LAUNCHER_PID_ENV = "SEEDCAST_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``signum`` when the parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def expected_launcher_pid() -> int | None:
    """The launcher's pid given in the environment, or None when not launched."""
    text = os.environ.get(LAUNCHER_PID_ENV, "")
    return int(text) if text.isdigit() else None


def launcher_gone() -> bool:
    """True when a launcher started us and our parent is no longer that launcher."""
    expected = expected_launcher_pid()
    return expected is not None and os.getppid() != expected


def guard_against_orphaning() -> bool:
    """Set the death signal when launched; returns False if the launcher is already gone."""
    if expected_launcher_pid() is None:
        return True
    set_parent_death_signal(signal.SIGTERM)
    return not launcher_gone()
