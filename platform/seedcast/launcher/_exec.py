"""Exec wrapper for third-party children (prometheus): die with the launcher.

``python -m seedcast.launcher._exec PROGRAM ARGS...`` sets the parent-death
signal, checks the launcher is still its parent, then replaces itself with
PROGRAM (the death signal survives ``execve``).
"""

from __future__ import annotations

import os
import sys

from seedcast.orphan import guard_against_orphaning


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m seedcast.launcher._exec PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    if not guard_against_orphaning():
        print("launcher gone before start; not starting", argv[0], file=sys.stderr)
        return 1
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        print(f"cannot run {argv[0]}: {error.strerror or error}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
