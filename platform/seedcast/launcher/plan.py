"""Which processes a cluster has, and the command line that starts each one.

:func:`plan_cluster` turns a resolved config into :class:`ProcessSpec` rows:
origin, dns, tracker, the edges, one seeding peer and the viewers (peers
started with ``--agent``), plus Prometheus when asked. What cannot start is
skipped with a note: the seeding peer when no video is published, Prometheus
when its binary is missing. Planning imports none of the roles (``up`` stays
quick); a test parses every planned command line with the real CLI.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.origin.library import Library
from seedcast.units import parse_host_port


class Tier(enum.IntEnum):
    """Start order is irrelevant (all start at once); stop order is reversed tiers."""

    CORE = 0  # origin, tracker, prometheus
    NAMES = 1  # dns
    EDGES = 2
    PEERS = 3  # seeding peer and viewers


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    role: str
    """origin | edge | dns | tracker | peer | viewer | prometheus (and test roles)."""
    name: str
    argv: tuple[str, ...]
    address: str
    """Main service address as configured (the child reports the bound one)."""
    metrics: str | None = None
    """Where /metrics is expected when it is not the main address."""
    tier: Tier = Tier.CORE
    controlled: bool = True
    """Speaks the control channel (our roles); False: readiness from a log line."""
    ready_line: str = ""
    """For uncontrolled children: the log line that means ready."""
    region: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tier"] = int(self.tier)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessSpec:
        fields = {item.name for item in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        values["argv"] = tuple(values["argv"])
        values["tier"] = Tier(values.get("tier", 0))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    processes: tuple[ProcessSpec, ...]
    skipped: tuple[str, ...] = ()
    """One line per role that is not started, and why."""

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": [spec.to_json() for spec in self.processes],
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterPlan:
        """Read back :meth:`to_json` (the detached launcher gets its plan this way)."""
        return cls(
            tuple(ProcessSpec.from_json(entry) for entry in data["processes"]),
            tuple(str(line) for line in data.get("skipped", ())),
        )


def python_command() -> list[str]:
    return [sys.executable, "-m", "seedcast"]


def _role_argv(
    command: str,
    config_file: Path,
    name: str,
    listen: str,
    extra: Sequence[tuple[str, str | None]] = (),
) -> tuple[str, ...]:
    argv = [*python_command(), command, "--config", str(config_file)]
    argv += ["--name", name, "--listen", listen]
    for option, value in extra:
        argv += [option] if value is None else [option, value]
    return tuple(argv)


def plan_cluster(
    config: ClusterConfig,
    config_file: Path,
    *,
    prometheus: bool = False,
) -> ClusterPlan:
    """The processes of ``config`` (edges and viewer counts already applied)."""
    processes = [
        ProcessSpec(
            "origin",
            "origin",
            _role_argv("origin", config_file, "origin", config.origin.listen),
            config.origin.listen,
            tier=Tier.CORE,
        ),
        ProcessSpec(
            "tracker",
            "tracker",
            _role_argv("tracker", config_file, "tracker", config.tracker.listen),
            config.tracker.listen,
            tier=Tier.CORE,
        ),
        ProcessSpec(
            "dns",
            "dns",
            _role_argv(
                "dns",
                config_file,
                "dns",
                config.dns.listen,
                [("--metrics-listen", config.dns.metrics_listen)],
            ),
            config.dns.listen,
            metrics=config.dns.metrics_listen,
            tier=Tier.NAMES,
        ),
    ]
    skipped: list[str] = []
    for edge in config.edges:
        processes.append(
            ProcessSpec(
                "edge",
                edge.name,
                _role_argv("edge", config_file, edge.name, edge.listen),
                edge.listen,
                tier=Tier.EDGES,
                region=edge.region,
            )
        )
    torrent = published_torrent(config)
    if torrent is None:
        skipped.append(
            f"seeding peer: skipped (no published video {config.origin.sample_id!r} to seed)"
        )
    else:
        processes.append(_peer_spec(config, config_file, 1, "seed", "peer", torrent=torrent))
    regions = config.peers.regions or tuple(region.name for region in config.regions)
    for index in range(1, config.peers.count + 1):
        region = regions[(index - 1) % len(regions)] if regions else ""
        processes.append(
            _peer_spec(
                config,
                config_file,
                index + 1,
                f"viewer-{index}",
                "viewer",
                region=region,
                torrent=torrent,
            )
        )
    if prometheus:
        spec, why = prometheus_spec(config)
        if spec is None:
            skipped.append(f"prometheus: skipped ({why})")
        else:
            processes.append(spec)
    return ClusterPlan(tuple(processes), tuple(skipped))


def _peer_spec(
    config: ClusterConfig,
    config_file: Path,
    index: int,
    name: str,
    role: str,
    *,
    region: str = "",
    torrent: Path | None = None,
) -> ProcessSpec:
    host = config.peers.peer_address(index)
    listen = f"{host}:{config.peers.port}"
    agent = f"{host}:{config.peers.agent_port}"
    extra: list[tuple[str, str | None]] = [("--tracker", config.tracker.announce_url)]
    if torrent is not None:
        extra.append(("--torrent", str(torrent)))
    if role == "viewer":
        extra += [("--agent", None), ("--agent-listen", agent)]
        if region:
            extra.append(("--region", region))
    else:
        # The seeder serves the library's own files: its data folder is the library.
        extra += [("--seed", None), ("--metrics", agent)]
        if torrent is not None:
            extra.append(("--data", str(torrent.parent.parent)))
    return ProcessSpec(
        role,
        name,
        _role_argv("peer", config_file, name, listen, extra),
        agent if role == "viewer" else listen,
        metrics=agent,
        tier=Tier.PEERS,
        region=region,
    )


def published_torrent(config: ClusterConfig) -> Path | None:
    """The .torrent of the sample video in the library (else of any video), if published."""

    library = Library.for_data_dir(config.data_dir)
    try:
        videos = library.read_index_or_empty().videos
    except Exception:  # an unreadable index: no seeder (the origin says what is wrong)
        return None
    entry = videos.get(config.origin.sample_id)
    if entry is None and videos:
        entry = videos[sorted(videos)[0]]
    if entry is None or not entry.torrent:
        return None
    path = library.video_dir(entry.id) / entry.torrent
    return path if path.is_file() else None


PROMETHEUS_READY_LINE = "Server is ready to receive web requests"


def prometheus_binary(config: ClusterConfig) -> str | None:
    binary = config.prometheus.binary
    return shutil.which(binary) or (binary if Path(binary).is_file() else None)


def prometheus_spec(config: ClusterConfig) -> tuple[ProcessSpec | None, str]:
    binary = prometheus_binary(config)
    if binary is None:
        return None, (
            f"the {config.prometheus.binary!r} binary is not installed; "
            "on Debian: apt-get install prometheus"
        )
    run_dir = config.run_dir
    home = run_dir / "prometheus"
    argv = (
        sys.executable,
        "-m",
        "seedcast.launcher._exec",
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={config.prometheus.listen}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=info",
    )
    return (
        ProcessSpec(
            "prometheus",
            "prometheus",
            argv,
            config.prometheus.listen,
            tier=Tier.CORE,
            controlled=False,
            ready_line=PROMETHEUS_READY_LINE,
        ),
        "",
    )


def host_of(address: str) -> str:
    return parse_host_port(address)[0]
