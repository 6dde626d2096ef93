"""Emulated multi-host networks on one Linux machine (root): namespaces, veths, a bridge, tc.

``seedcast up --netns`` puts every node of the cluster in its own network
namespace (see :mod:`seedcast.launcher._netns_layout` for the shape of the
network and :mod:`seedcast.launcher._netns_config` for how the config's
addresses move into the private subnet). This module is the thin shell that
runs the ``ip`` and ``tc`` commands, writes each namespace's
``/etc/netns/<ns>/resolv.conf`` (``ip netns exec`` mounts it over
``/etc/resolv.conf``, so curl, ffmpeg and mpv resolve through the Seedcast
DNS), and takes everything down again.

Everything it makes is named ``<prefix>-...``, the prefix being per cluster
(``sc`` + 6 hex digits of the run directory's path), and recorded in
``<run_dir>/netns.json`` *before* it is made. Teardown deletes what the
record lists and then sweeps whatever else carries the prefix, so a run that
crashed half-way is cleaned by ``seedcast down`` or the next ``up``.

For benchmarks, :func:`open_network` is the whole API: give it nodes with
addresses and rates, run programs with :meth:`Network.exec_argv`, change
rates with :meth:`Network.set_rates`; everything is removed on exit, even on
error. Errors are :class:`NetnsError` with one line naming the failed command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError
from seedcast.launcher._netns_config import (
    DEFAULT_SUBNET,
    Shaping,
    cluster_layout,
    netns_config,
)
from seedcast.launcher._netns_layout import Command, NetworkLayout, NodeLink, tbf_arguments
from seedcast.launcher.plan import ClusterPlan, ProcessSpec

RECORD_FILE = "netns.json"
ETC_NETNS = Path("/etc/netns")
COMMAND_TIMEOUT = 10.0

__all__ = [
    "DEFAULT_SUBNET",
    "NetnsError",
    "Network",
    "NetworkLayout",
    "NodeLink",
    "Shaping",
    "check_support",
    "cluster_layout",
    "leftovers",
    "netns_config",
    "open_network",
    "prefix_for",
    "prepare_cluster",
    "read_record",
    "setup_network",
    "start_cluster_network",
    "summary",
    "sweep",
    "tbf_arguments",
    "teardown_network",
    "teardown_recorded",
    "wrap_plan",
]


class NetnsError(SeedcastError):
    """Network namespaces are unavailable here, or an ``ip``/``tc`` command failed."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_support(what: str = "--netns") -> None:
    """Raise :class:`NetnsError` (one line: why, what to do) unless we can build networks."""
    if not sys.platform.startswith("linux"):
        raise NetnsError(f"{what} needs Linux network namespaces; this is {sys.platform}")
    if os.geteuid() != 0:
        raise NetnsError(
            f"{what} needs root (network namespaces, veth pairs and tc); run it with sudo"
        )
    for name, package in (("ip", "iproute2"), ("tc", "iproute2")):
        if _binary(name) is None:
            raise NetnsError(f"{what} needs the {name!r} command: apt-get install {package}")
    completed = subprocess.run(
        [_ip(), "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if completed.returncode != 0:
        raise NetnsError(
            f"{what}: `ip netns list` failed: {_first_line(completed.stderr)} "
            "(is this a container without CAP_SYS_ADMIN?)"
        )


def _ip() -> str:
    return _binary("ip") or "ip"


def _tc() -> str:
    return _binary("tc") or "tc"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _run(command: Command, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = {"ip": _ip(), "tc": _tc()}.get(command[0], command[0])
    try:
        completed = subprocess.run(
            [binary, *command[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetnsError(f"`{' '.join(command)}` could not run: {error}") from None
    if check and completed.returncode != 0:
        raise NetnsError(f"`{' '.join(command)}` failed: {_first_line(completed.stderr)}")
    return completed


def prefix_for(run_dir: Path) -> str:
    """The name prefix of a cluster's namespaces and links (stable per run directory)."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode(), usedforsecurity=False)
    return "sc" + digest.hexdigest()[:6]


def record_path(run_dir: Path) -> Path:
    return Path(run_dir) / RECORD_FILE


def read_record(run_dir: Path) -> NetworkLayout | None:
    """The network recorded in ``run_dir``, or None (no record, or unreadable)."""
    try:
        return NetworkLayout.from_json(json.loads(record_path(run_dir).read_text("utf-8")))
    except (OSError, ValueError):
        return None


# --- the network -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Network:
    """A network that is up: run commands in its nodes, change their rates."""

    layout: NetworkLayout

    def namespace(self, node: str) -> str:
        return self.layout.namespace(node)

    def exec_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``node``'s namespace (``ip netns exec <ns> argv...``)."""
        return [*self.layout.exec_prefix(node, _ip()), *argv]

    def address(self, node: str) -> str:
        """The node's primary address (the source of its connections)."""
        return self.layout.node(node).addresses[0]

    def set_rates(self, node: str, upload: float, download: float) -> None:
        """Reshape ``node``: payload bytes/s up and down, 0 = unshaped. Raises NetnsError."""
        for command in self.layout.shaping_commands(node, upload, download):
            if "del" in command:
                _run(command, check=False)  # nothing to delete is fine
            else:
                _run(command)


def setup_network(layout: NetworkLayout, *, record: Path | None = None) -> Network:
    """Build ``layout`` (first sweeping leftovers of its prefix). On error nothing is left.

    With ``record``, the layout is written there before anything is made, so a
    crash part-way is cleaned by :func:`teardown_recorded`.
    """
    check_support()
    sweep(layout.prefix)
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(layout.to_json(), indent=1) + "\n", encoding="utf-8")
    try:
        for command in layout.setup_commands():
            _run(command)
        if layout.nameserver:
            for namespace in layout.namespaces():
                folder = ETC_NETNS / namespace
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "resolv.conf").write_text(layout.resolv_conf(), encoding="utf-8")
    except BaseException:
        teardown_network(layout)
        if record is not None:
            with contextlib.suppress(OSError):
                record.unlink()
        raise
    return Network(layout)


def teardown_network(layout: NetworkLayout) -> list[str]:
    """Remove every namespace, link, qdisc and resolv.conf of ``layout`` and its prefix.

    Never raises for something already gone; returns what could not be removed.
    """
    for command in layout.teardown_commands():
        with contextlib.suppress(NetnsError):
            _run(command, check=False)
    sweep(layout.prefix)
    remaining = leftovers(layout.prefix)
    return [f"{kind} {name}" for kind, names in remaining.items() for name in names]


def teardown_recorded(run_dir: Path) -> str | None:
    """Tear down the network recorded in ``run_dir`` (if any); a one-line summary, or None."""
    layout = read_record(run_dir)
    if layout is None:
        with contextlib.suppress(FileNotFoundError):
            record_path(run_dir).unlink()  # unreadable junk
        return None
    problems = teardown_network(layout)
    if problems:  # keep the record: a later `down` (as root) finishes the job
        return (
            f"could not remove {', '.join(problems)} (run `seedcast down` as root; "
            f"record: {record_path(run_dir)})"
        )
    with contextlib.suppress(FileNotFoundError):
        record_path(run_dir).unlink()
    return (
        f"removed {len(layout.nodes)} network namespace(s) {layout.prefix}-* and bridge "
        f"{layout.bridge}"
    )


def _namespaces() -> list[str]:
    completed = _run(("ip", "netns", "list"), check=False)
    return [line.split()[0] for line in completed.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    completed = _run(("ip", "-o", "link", "show"), check=False)
    names = []
    for line in completed.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _qdisc_devices() -> list[str]:
    completed = _run(("tc", "qdisc", "show"), check=False)
    devices = []
    for line in completed.stdout.splitlines():
        words = line.split()
        if "dev" in words[:-1]:
            devices.append(words[words.index("dev") + 1])
    return devices


def _ours(names: Iterable[str], prefix: str) -> list[str]:
    return sorted({name for name in names if name.startswith(f"{prefix}-")})


def leftovers(prefix: str) -> dict[str, list[str]]:
    """Namespaces, host links, qdiscs and /etc/netns folders named ``<prefix>-*``."""
    etc = _ours((entry.name for entry in _scandir(ETC_NETNS)), prefix)
    return {
        "namespace": _ours(_namespaces(), prefix),
        "link": _ours(_links(), prefix),
        "qdisc": _ours(_qdisc_devices(), prefix),
        "resolv.conf folder": etc,
    }


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def sweep(prefix: str) -> None:
    """Delete every link, namespace and /etc/netns folder named ``<prefix>-*``."""
    for link in _ours(_links(), prefix):
        _run(("ip", "link", "del", link), check=False)
    for namespace in _ours(_namespaces(), prefix):
        _run(("ip", "netns", "del", namespace), check=False)
    for entry in _scandir(ETC_NETNS):
        if entry.name.startswith(f"{prefix}-"):
            shutil.rmtree(entry.path, ignore_errors=True)
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only if empty: someone else's folders stay


@contextlib.contextmanager
def open_network(
    nodes: Sequence[NodeLink],
    *,
    prefix: str | None = None,
    subnet: str = DEFAULT_SUBNET,
    nameserver: str = "",
    record: Path | None = None,
) -> Iterator[Network]:
    """A shaped network of ``nodes`` for the duration of the ``with`` block.

    Each node gets a namespace ``<prefix>-<name>`` with its addresses (in
    ``subnet``) and tbf shaping at its ``upload``/``download`` payload rates.
    Everything is removed on exit, whatever happened. The default prefix is
    random (``sb`` + 6 hex digits), so concurrent benches never meet.
    Raises NetnsError when not root/Linux or when a command fails.
    """
    layout = NetworkLayout(
        prefix=prefix or "sb" + secrets.token_hex(3),
        subnet=subnet,
        nodes=tuple(nodes),
        nameserver=nameserver,
    )
    network = setup_network(layout, record=record)
    try:
        yield network
    finally:
        teardown_network(layout)
        if record is not None:
            with contextlib.suppress(OSError):
                record.unlink()


# --- the launcher's side -------------------------------------------------------------


def wrap_plan(plan: ClusterPlan, layout: NetworkLayout) -> ClusterPlan:
    """``plan`` with each process started inside its node's namespace."""
    processes = []
    for spec in plan.processes:
        try:
            prefix = layout.exec_prefix(spec.name, _ip())
        except KeyError:
            raise NetnsError(f"--netns: no namespace planned for process {spec.name!r}") from None
        processes.append(_with_argv(spec, (*prefix, *spec.argv)))
    return ClusterPlan(tuple(processes), plan.skipped)


def _with_argv(spec: ProcessSpec, argv: tuple[str, ...]) -> ProcessSpec:
    return dataclasses.replace(spec, argv=argv)


def prepare_cluster(
    config: ClusterConfig,
    *,
    shaping: Shaping | str = Shaping.TC,
    prometheus: bool = False,
    subnet: str = DEFAULT_SUBNET,
) -> tuple[ClusterConfig, NetworkLayout]:
    """For ``up --netns``: check we can, clean a crashed run's network, move the config.

    Nothing is created yet (:func:`start_cluster_network` does it once the plan exists).
    Raises NetnsError (not root, not Linux, no ``ip``) or ConfigError (an address
    that cannot move, e.g. a public URL naming a host).
    """
    check_support()
    run_dir = config.run_dir
    note = teardown_recorded(run_dir)
    if note:
        print(f"cleaned up a stale network: {note}")
    moved, layout = cluster_layout(
        config, prefix_for(run_dir), subnet=subnet, shaping=Shaping(shaping), prometheus=prometheus
    )
    return moved, layout


def start_cluster_network(plan: ClusterPlan, layout: NetworkLayout, run_dir: Path) -> ClusterPlan:
    """Build the network (recorded in ``run_dir``) and return ``plan`` run inside it."""
    wrapped = wrap_plan(plan, layout)  # refuses a process without a node before building
    setup_network(layout, record=record_path(run_dir))
    return wrapped


def summary(config: ClusterConfig) -> dict[str, Any] | None:
    """What ``up`` prints about the network (None when the cluster is not in namespaces)."""
    layout = read_record(config.run_dir)
    if layout is None:
        return None
    viewers = [node.name for node in layout.nodes if node.name.startswith("viewer-")]
    example = layout.namespace(viewers[0] if viewers else layout.nodes[0].name)
    port = config.edges[0].listen.rpartition(":")[2] if config.edges else "8080"
    return {
        "prefix": layout.prefix,
        "bridge": layout.bridge,
        "subnet": layout.subnet,
        "namespaces": layout.namespaces(),
        "nameserver": layout.nameserver,
        "example": f"ip netns exec {example} curl "
        f"http://video.netcinema.test:{port}/{config.origin.sample_id}/manifest.mpd",
    }
