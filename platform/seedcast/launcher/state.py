"""The run directory of a cluster: state file, logs, and cleaning up after a crash.

``<run_dir>/state.json`` records a running cluster: the launcher's pid, its
control socket, the cluster id, and one row per process (role, name, pid,
address, state, restarts, log file). The launcher rewrites it atomically on
every change and removes it when it stops. If the launcher was killed, the
file stays: ``status`` shows it as stale and ``up``/``down`` clean it up.

Killing by pid from a file is only safe if the pid is still ours: every child
carries ``SEEDCAST_CLUSTER_ID=<id>`` in its environment, and a pid is only
signalled when ``/proc/<pid>/environ`` holds that id (the launcher itself is
recognised by its command line).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedcast.launcher.prometheus import write_atomically

STATE_FORMAT = 1
CLUSTER_ID_ENV = "SEEDCAST_CLUSTER_ID"


def secure_run_dir(run_dir: Path) -> None:
    """Make ``run_dir`` (and its logs folder) owner-only: folders 0700, files 0600.

    Run files hold secrets (``cluster.toml`` carries the edge admin token) and the
    control socket drives the cluster. The umask is set too, so everything this process
    and the children it starts create afterwards (state, logs, sockets) is owner-only.
    Files left by an earlier run are tightened as well.
    """
    os.umask(0o077)
    for folder in (run_dir, run_dir / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                os.chmod(entry, 0o600)


@dataclass(frozen=True, slots=True)
class ClusterState:
    cluster: str
    cluster_id: str
    launcher_pid: int
    control: str
    run_dir: str
    config: str
    detached: bool
    started_at: float
    processes: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "cluster": self.cluster,
            "cluster_id": self.cluster_id,
            "launcher_pid": self.launcher_pid,
            "control": self.control,
            "run_dir": self.run_dir,
            "config": self.config,
            "detached": self.detached,
            "started_at": self.started_at,
            "processes": [dict(row) for row in self.processes],
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: Any) -> ClusterState:
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            raise ValueError("not a seedcast state file")
        known = {
            "format",
            "cluster",
            "cluster_id",
            "launcher_pid",
            "control",
            "run_dir",
            "config",
            "detached",
            "started_at",
            "processes",
        }
        processes = data.get("processes") or []
        if not isinstance(processes, list) or not all(
            isinstance(row, Mapping) for row in processes
        ):
            raise ValueError("bad processes list")
        return cls(
            cluster=str(data["cluster"]),
            cluster_id=str(data["cluster_id"]),
            launcher_pid=int(data["launcher_pid"]),
            control=str(data["control"]),
            run_dir=str(data["run_dir"]),
            config=str(data["config"]),
            detached=bool(data["detached"]),
            started_at=float(data["started_at"]),
            processes=tuple(processes),
            extra={key: value for key, value in data.items() if key not in known},
        )

    def pids(self) -> list[int]:
        return [int(row["pid"]) for row in self.processes if isinstance(row.get("pid"), int)]


def state_path(run_dir: Path) -> Path:
    return run_dir / "state.json"


def read_state(run_dir: Path) -> ClusterState | None:
    """The recorded cluster, or None when there is none (or the file is unreadable junk)."""
    try:
        data = json.loads(state_path(run_dir).read_text(encoding="utf-8"))
        return ClusterState.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(run_dir: Path, state: ClusterState) -> None:
    write_atomically(state_path(run_dir), json.dumps(state.to_json(), indent=1) + "\n")


def remove_state(run_dir: Path, state: ClusterState | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(run_dir).unlink()
    if state is not None and state.control:
        with contextlib.suppress(OSError):
            os.unlink(state.control)
    with contextlib.suppress(FileNotFoundError):
        (run_dir / "prometheus" / "targets.json").unlink()


# --- processes ----------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _read_proc(pid: int, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as file:
            return file.read()
    except OSError:
        return b""


def belongs_to(pid: int, cluster_id: str) -> bool:
    """True when ``pid`` is a live process started for cluster ``cluster_id``."""
    if not pid_alive(pid):
        return False
    marker = f"{CLUSTER_ID_ENV}={cluster_id}".encode()
    return marker in _read_proc(pid, "environ").split(b"\0")


def is_launcher(pid: int, state: ClusterState) -> bool:
    """True when ``pid`` is alive and looks like the recorded launcher."""
    if pid != state.launcher_pid or not pid_alive(pid):
        return False
    if belongs_to(pid, state.cluster_id):
        return True
    command_line = _read_proc(pid, "cmdline")
    return b"seedcast" in command_line


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in _read_proc(pid, "status").splitlines():
        if line.startswith(b"VmRSS:"):
            parts = line.split()
            with contextlib.suppress(ValueError, IndexError):
                return int(parts[1]) * 1024
    return None


def signal_ours(pids: Iterable[int], cluster_id: str, signum: int) -> list[int]:
    """Send ``signum`` to each pid that belongs to the cluster; returns those signalled."""
    signalled = []
    for pid in pids:
        if not belongs_to(pid, cluster_id):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            signalled.append(pid)
    return signalled


def kill_ours(pids: Iterable[int], cluster_id: str) -> list[int]:
    return signal_ours(pids, cluster_id, signal.SIGKILL)


def processes_of(cluster_id: str) -> list[int]:
    """Every live process carrying the cluster's id (children and their children)."""
    marker = f"{CLUSTER_ID_ENV}={cluster_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        if marker in _read_proc(pid, "environ").split(b"\0") and pid_alive(pid):
            found.append(pid)
    return found
