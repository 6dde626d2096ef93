"""The distribution benchmark's plan, without I/O: options, runs, nodes, links.

:class:`DistributionOptions` is what the command line asks for,
:func:`plan_runs` the runs it makes (strategy x N x repeat, plus the
libtorrent reference line), :func:`run_nodes` every node of one run with its
address and caps, and :func:`netns_links` the same nodes as network-namespace
links (``--netns``). The runner (:mod:`._distribution_run`) and the command
(:mod:`.distribution`) use them; everything here is tested without a socket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from seedcast.bench.theory import STRATEGIES, Scenario
from seedcast.errors import UsageError
from seedcast.launcher.netns import NodeLink
from seedcast.units import KiB, MiB, format_rate, format_size

LIBTORRENT = "libtorrent"
SEEDCAST = "seedcast"
MAX_CLIENTS = 250
TC = "tc"
BUCKETS = "buckets"
BOTH = "both"
SHAPINGS = (TC, BUCKETS, BOTH)
LOOPBACK_BASE = "127.0"
NETNS_BASE = "10.77"
NETNS_SUBNET = f"{NETNS_BASE}.0.0/16"
BENCH_NODE = "bench"
SHAPING_TEXT = {
    BUCKETS: "token buckets in the processes",
    TC: "tc (tbf) on each node's own link in its network namespace",
    BOTH: "both token buckets and tc (tbf) on each node's link",
}


@dataclass(frozen=True, slots=True)
class DistributionOptions:
    file_size: int = 16 * MiB
    clients: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    server_up: float = 4 * MiB
    peer_up: float = 512 * KiB
    peer_down: float = 8 * MiB
    edges: int = 2
    edge_up: float = 0.0
    """Egress cap of each edge; 0 = the same as the server's."""
    origin_up: float = 0.0
    """The origin's cap in cdn/hybrid, where it only fills the edges before the clock; 0 = none."""
    strategies: tuple[str, ...] = STRATEGIES
    libtorrent: bool = True
    repeat: int = 1
    seed: int = 1
    piece_length: int = 64 * KiB
    """Small pieces spread sooner: at N = 32, 64 KiB pieces finished at 1.09x the bound
    where 256 KiB pieces took 1.18x (F = 16 MiB: 256 pieces instead of 64)."""
    workers: int = 0
    """Client worker processes per run; 0 = one per 8 clients (2 to 8)."""
    run_timeout: float = 0.0
    """Longest a run may take; 0 = 2 x its bound + 60 s."""
    netns: bool = False
    """Every node of a run in its own network namespace (root, Linux)."""
    shaping: str = BUCKETS
    """Who enforces the caps: ``buckets`` (in the processes), ``tc`` (tbf on each node's
    link; needs ``netns``) or ``both``."""

    @property
    def edge_rate(self) -> float:
        return self.edge_up or self.server_up

    @property
    def bucket_caps(self) -> bool:
        return self.shaping in (BUCKETS, BOTH)

    @property
    def tc_caps(self) -> bool:
        return self.shaping in (TC, BOTH)

    def scenario(self, clients: int) -> Scenario:
        return Scenario(
            file_size=self.file_size,
            clients=clients,
            server_up=self.server_up,
            peer_up=self.peer_up,
            peer_down=self.peer_down,
            edges=self.edges,
            edge_up=self.edge_rate,
        )

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["clients"] = list(self.clients)
        document["strategies"] = list(self.strategies)
        document["edge_up"] = self.edge_rate
        document["human"] = {
            "file_size": format_size(self.file_size),
            "server_up": format_rate(self.server_up),
            "peer_up": format_rate(self.peer_up),
            "peer_down": format_rate(self.peer_down),
            "edge_up": format_rate(self.edge_rate),
        }
        return document


@dataclass(frozen=True, slots=True)
class RunSpec:
    strategy: str
    clients: int
    repeat: int
    source: str = SEEDCAST

    @property
    def label(self) -> str:
        name = self.strategy if self.source == SEEDCAST else f"{self.strategy} ({self.source})"
        return f"{name} N={self.clients} #{self.repeat + 1}"

    @property
    def slug(self) -> str:
        return f"{self.strategy}-{self.source}-n{self.clients}-r{self.repeat}"


def plan_runs(options: DistributionOptions) -> list[RunSpec]:
    """Every run in order: by repeat, then N ascending, then strategy (so Ctrl-C keeps whole Ns)."""
    runs = []
    for repeat in range(options.repeat):
        for clients in options.clients:
            for strategy in options.strategies:
                runs.append(RunSpec(strategy, clients, repeat))
                if strategy == "p2p" and options.libtorrent:
                    runs.append(RunSpec(strategy, clients, repeat, LIBTORRENT))
    return runs


def check_options(options: DistributionOptions) -> None:
    """Raise UsageError for options no run could use."""
    unknown = [name for name in options.strategies if name not in STRATEGIES]
    if unknown or not options.strategies:
        raise UsageError(
            f"--strategies: unknown {', '.join(unknown) or '(none given)'} "
            f"(known: {', '.join(STRATEGIES)})"
        )
    if any(not 1 <= clients <= MAX_CLIENTS for clients in options.clients):
        raise UsageError(f"--clients: each N must be 1..{MAX_CLIENTS}")
    for name in ("server_up", "peer_up", "peer_down"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')}: the bound needs a cap > 0")
    if options.file_size < options.piece_length:
        raise UsageError("--file-size must be at least one piece (--piece-length)")
    if {"cdn", "hybrid"} & set(options.strategies) and not 1 <= options.edges <= 250:
        raise UsageError("--edges: cdn and hybrid need 1..250 edges")
    if options.repeat < 1:
        raise UsageError("--repeat must be >= 1")
    if options.shaping not in SHAPINGS:
        raise UsageError(f"--shaping: {options.shaping!r} is not one of {', '.join(SHAPINGS)}")
    if options.tc_caps and not options.netns:
        raise UsageError(f"--shaping {options.shaping}: tc shapes namespace links; add --netns")
    if options.libtorrent and "p2p" in options.strategies and not libtorrent_available():
        raise UsageError("--libtorrent: libtorrent is not installed (pip install libtorrent)")


def libtorrent_available() -> bool:
    try:
        import libtorrent  # noqa: F401
    except ImportError:
        return False
    return True


def worker_count(options: DistributionOptions, clients: int) -> int:
    if options.workers > 0:
        return max(1, min(options.workers, clients))
    return max(1, min(clients, 8, max(2, math.ceil(clients / 8))))


def split_jobs(items: Sequence[dict[str, Any]], parts: int) -> list[list[dict[str, Any]]]:
    jobs: list[list[dict[str, Any]]] = [[] for _ in range(max(1, min(parts, len(items))))]
    for position, item in enumerate(items):
        jobs[position % len(jobs)].append(item)
    return jobs


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a run: its name (process and namespace), address and caps (bytes/s)."""

    name: str
    address: str
    """The last two octets: ``10.1`` is 127.0.10.1 on loopback, 10.77.10.1 with --netns."""
    upload: float = 0.0
    download: float = 0.0


def run_nodes(spec: RunSpec, options: DistributionOptions) -> list[Node]:
    """Every node of ``spec``'s cluster with its caps (0 = uncapped): roles, then clients."""
    u_s, u_i, d_i = options.server_up, options.peer_up, options.peer_down
    nodes: list[Node] = []
    edges = [
        Node(f"edge-{number}", f"20.{number}", options.edge_rate)
        for number in range(1, options.edges + 1)
    ]
    if spec.strategy in ("client-server", "cdn"):
        if spec.strategy == "client-server":
            nodes.append(Node("origin", "10.1", u_s))
        else:
            nodes += [Node("origin", "10.1", options.origin_up), *edges]
        clients = [Node(f"client-{k}", f"41.{k}", 0.0, d_i) for k in range(1, spec.clients + 1)]
    else:
        block = 42 if spec.source == LIBTORRENT else 40
        nodes += [Node("tracker", "30.1"), Node("seed", f"{block}.1", u_s)]
        if spec.strategy == "hybrid" and spec.source == SEEDCAST:
            nodes += [Node("origin", "10.1", options.origin_up), *edges]
        clients = [
            Node(f"client-{k}", f"{block}.{k + 1}", u_i, d_i) for k in range(1, spec.clients + 1)
        ]
    return nodes + clients


def netns_links(spec: RunSpec, options: DistributionOptions) -> list[Any]:
    """The :class:`~seedcast.launcher.netns.NodeLink` of each node (tc caps per --shaping),
    plus the benchmark's own unshaped node."""

    scale = 1.0 if options.tc_caps else 0.0
    return [
        *(
            NodeLink(node.name, (f"{NETNS_BASE}.{node.address}",), node.upload * scale,
                     node.download * scale)
            for node in run_nodes(spec, options)
        ),
        NodeLink(BENCH_NODE, (f"{NETNS_BASE}.0.2",)),
    ]  # fmt: skip
