"""``seedcast bench distribution``: client-server vs CDN vs P2P vs hybrid against the bound.

Every run (one strategy, one N, one repeat) launches a real cluster of
separate processes on loopback, starts N clients at the same instant, records
each client's completion time, and stops every process it started:

- **client-server**: one origin (``seedcast origin --upload u_s``); N HTTP
  clients GET the file from it.
- **cdn**: an origin and E edges (``seedcast edge --upload u_e``, u_e = u_s
  unless ``--edge-up``); the edges are filled from the origin before the
  clock starts (the bound assumes warm edges); client k fetches from edge
  k mod E.
- **p2p**: a tracker, the origin's copy of the file as the only initial seed
  (``seedcast peer --seed --upload u_s`` on the origin's library folder), N
  leechers (Seedcast peers).
- **hybrid**: p2p plus warm edges: each peer also fetches, from its edge,
  the pieces nobody it is connected to has (range requests, verified
  against the torrent's hashes, then shared with the swarm).
- **p2p with libtorrent** (reference line, ``--libtorrent``): the same
  swarm built from libtorrent sessions with the same caps.

Caps: u_s on the origin's/seed's egress, u_e on each edge's egress, u_i on
each peer's upload, d_i on each client's ingress (HTTP and BitTorrent
alike), all enforced by token buckets in the processes themselves. The
clients are virtual (``python -m seedcast.bench._clients``, several per
process), each with its own sockets and its own loopback address.

With ``--netns`` (root, Linux) every node of a run (origin, tracker, seed,
edges, each client, and a ``bench`` node from which the benchmark warms
the edges) gets its own network namespace and address in 10.77.0.0/16
(10.77.10.1 for 127.0.10.1, and so on), joined by veth pairs to a bridge
(:func:`seedcast.launcher.netns.open_network`, built before the run's
processes start and removed after they stop, also on failure or Ctrl-C).
Each client then has a worker process of its own, so its link carries only
its sockets. ``--shaping`` picks who enforces the caps: ``tc`` (the
default with --netns: tbf on each node's link, the processes get 0 =
uncapped buckets), ``buckets`` (the processes, as without --netns) or
``both``. Every record and the config say which (``"shaping"``), and so
does report.html. On a small scenario (N = 4, F = 4 MiB, 1 MiB/s caps)
tc and the buckets agreed within 10% for client-server and p2p
(tests/integration/bench/test_distribution_netns.py).

Results go to ``--out``: results.json / results.csv (one record per run),
plots and report.html, rewritten after every run, so Ctrl-C keeps what
finished. Each record also carries the CPU seconds our processes used, the
machine's busy fraction and load average during the run: a run whose
processes saturate the CPUs measures Python, not the network (see the
report's scale section).

Scale on 2 cores (measured; benchmarks/distribution_results/): what limits a
run is the CPU our processes need, which grows with the aggregate rate the
swarm moves (u_s + N u_i: every byte is read, charged, framed, hashed and
written once per hop) and with N (each peer keeps up to 50 connections, and
HAVEs go to all of them). HTTP strategies move only u_s (or E u_e): N = 128
client-server and cdn runs used 3-6% of the machine and finished at 1.00x
their bound. With the default caps, p2p took 1.13x at N = 32 (our processes
38% of both cores), 1.17x at N = 64 (80%), 1.40x at N = 128 (90%, the
machine 100% busy; libtorrent 1.36x there at 92%). At N = 128 with a quarter
of the rates, our processes still needed 60% and the ratio was 1.26x. So the
largest N that measures the network rather than our CPU is about 64 for the
swarm strategies at these caps (32 with room to spare on a shared machine),
and at least 128 for client-server and cdn.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from seedcast.bench.theory import STRATEGIES, Scenario, bound
from seedcast.config import ClusterConfig
from seedcast.errors import ProtocolError, SeedcastError, UsageError
from seedcast.units import (
    KiB,
    MiB,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = ["DistributionOptions", "RunSpec", "configure", "plan_runs", "run", "run_benchmark"]

TITLE = "File distribution: client-server vs CDN vs P2P vs hybrid"
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
UNSENT_SYSCTL = "net.ipv4.tcp_notsent_lowat"
UNSENT_LOWAT = 16 * 1024
"""Unsent bytes a socket may queue in the kernel with --netns (see :func:`_limit_unsent`)."""
"""The namespace from which the benchmark itself warms edges and reads metrics (--netns)."""
SHAPING_TEXT = {
    BUCKETS: "token buckets in the processes",
    TC: "tc (tbf) on each node's own link in its network namespace",
    BOTH: "both token buckets and tc (tbf) on each node's link",
}
WARM_TIMEOUT = 120.0
STATISTICS_TIMEOUT = 10.0


# -- options ---------------------------------------------------------------------------


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


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = DistributionOptions()
    parser.add_argument("--file-size", default="16MiB", help="file size F (default 16MiB)")
    parser.add_argument(
        "--clients",
        type=_int_list,
        default=defaults.clients,
        metavar="N,N,...",
        help="numbers of clients N (default 1,2,4,8,16,32; at most 250)",
    )
    parser.add_argument("--server-up", default="4MiB/s", help="server upload u_s (default 4MiB/s)")
    parser.add_argument("--peer-up", default="512KiB/s", help="peer upload u_i (default 512KiB/s)")
    parser.add_argument(
        "--peer-down", default="8MiB/s", help="client download d_i (default 8MiB/s)"
    )
    parser.add_argument("--edges", type=int, default=2, help="CDN edges E (default 2)")
    parser.add_argument(
        "--edge-up", default=None, help="upload of each edge (default: the same as --server-up)"
    )
    parser.add_argument(
        "--origin-up",
        default="0",
        help="origin's cap in cdn/hybrid, where it only fills the edges before the clock "
        "(default 0 = uncapped)",
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated subset of {','.join(STRATEGIES)} (default: all)",
    )
    parser.add_argument(
        "--libtorrent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run p2p with libtorrent sessions as a reference line "
        "(default: on when libtorrent is installed)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per (strategy, N) (default 1)")
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed (file content, peer ids, piece order)"
    )
    parser.add_argument("--out", default="bench-distribution", metavar="DIR", help="output folder")
    parser.add_argument(
        "--piece-length", default="64KiB", help="torrent piece length (default 64KiB)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="client worker processes per run (default 0 = one per 8 clients, 2 to 8)",
    )
    parser.add_argument(
        "--run-timeout",
        default="0",
        help="time bound of each run (default 0 = 2 x its bound + 60 s)",
    )
    parser.add_argument(
        "--workdir", metavar="DIR", default=None, help="scratch folder (default: a temp dir)"
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="put every node (origin, tracker, seed, edges, each client) in its own network "
        f"namespace with its own address in {NETNS_SUBNET}, joined by a bridge (root, Linux)",
    )
    parser.add_argument(
        "--shaping",
        choices=SHAPINGS,
        default=None,
        help="who enforces the caps: tc (tbf on each node's link), buckets (token buckets in "
        "the processes) or both (default: tc with --netns, else buckets; tc and both need "
        "--netns)",
    )


def options_from_args(args: argparse.Namespace) -> DistributionOptions:
    try:
        options = DistributionOptions(
            file_size=parse_size(args.file_size),
            clients=tuple(args.clients),
            server_up=parse_rate(args.server_up),
            peer_up=parse_rate(args.peer_up),
            peer_down=parse_rate(args.peer_down),
            edges=args.edges,
            edge_up=parse_rate(args.edge_up) if args.edge_up else 0.0,
            origin_up=parse_rate(args.origin_up),
            strategies=tuple(part.strip() for part in args.strategies.split(",") if part.strip()),
            libtorrent=_libtorrent_available() if args.libtorrent is None else args.libtorrent,
            repeat=args.repeat,
            seed=args.seed,
            piece_length=parse_size(args.piece_length),
            workers=args.workers,
            run_timeout=parse_duration(args.run_timeout),
            netns=args.netns,
            shaping=args.shaping or (TC if args.netns else BUCKETS),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_options(options)
    return options


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
    if options.libtorrent and "p2p" in options.strategies and not _libtorrent_available():
        raise UsageError("--libtorrent: libtorrent is not installed (pip install libtorrent)")


def _libtorrent_available() -> bool:
    try:
        import libtorrent  # noqa: F401
    except ImportError:
        return False
    return True


# -- one run --------------------------------------------------------------------------


@dataclass(slots=True)
class _RunState:
    clients: int
    expected_workers: int
    ready: set[str] = field(default_factory=set)
    all_ready: trio.Event = field(default_factory=trio.Event)
    completions: dict[int, float] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    all_done: trio.Event = field(default_factory=trio.Event)
    progress: dict[str, int] = field(default_factory=dict)
    statistics: list[dict[str, Any]] = field(default_factory=list)
    statistics_from: set[str] = field(default_factory=set)
    statistics_done: trio.Event = field(default_factory=trio.Event)
    exited: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)
    """Workers whose clients count towards the distribution time (not a libtorrent seed)."""

    def on_message(self, message: dict[str, Any]) -> None:
        worker = str(message.get("worker"))
        event = message.get("event")
        if event == "ready":
            self.ready.add(worker)
            if len(self.ready) >= self.expected_workers:
                self.all_ready.set()
        elif event == "complete" and worker in self.counted:
            self.completions[int(message["client"])] = float(message["elapsed"])
        elif event == "failed":
            self.failures[int(message["client"])] = str(message.get("reason", "failed"))
        elif event == "progress" and worker in self.counted:
            self.progress[worker] = int(message["bytes"])
        elif event == "statistics":
            self.statistics.extend(message.get("clients", []))
            self.statistics_from.add(worker)
            if len(self.statistics_from) >= self.expected_workers:
                self.statistics_done.set()
        elif event == "error":
            self.errors.append(f"{worker}: {message.get('message')}")
        elif event == "exit":
            self.exited.add(worker)
            if worker not in self.ready:
                self.errors.append(f"{worker} exited before it was ready")
                self.all_ready.set()
            elif not self.all_done.is_set():
                self.errors.append(f"{worker} exited before its clients finished")
            if len(self.exited) >= self.expected_workers:
                self.statistics_done.set()
        if len(self.completions) + len(self.failures) >= self.clients or (
            self.errors and not self.all_done.is_set()
        ):
            self.all_done.set()


Progress = Callable[[int, int], None]
"""``progress(clients_done, bytes_received)`` while a run goes."""


def _worker_count(options: DistributionOptions, clients: int) -> int:
    if options.workers > 0:
        return max(1, min(options.workers, clients))
    return max(1, min(clients, 8, max(2, math.ceil(clients / 8))))


def _split(items: Sequence[dict[str, Any]], parts: int) -> list[list[dict[str, Any]]]:
    jobs: list[list[dict[str, Any]]] = [[] for _ in range(max(1, min(parts, len(items))))]
    for position, item in enumerate(items):
        jobs[position % len(jobs)].append(item)
    return jobs


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0]


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
    from seedcast.launcher.netns import NodeLink

    scale = 1.0 if options.tc_caps else 0.0
    return [
        *(
            NodeLink(node.name, (f"{NETNS_BASE}.{node.address}",), node.upload * scale,
                     node.download * scale)
            for node in run_nodes(spec, options)
        ),
        NodeLink(BENCH_NODE, (f"{NETNS_BASE}.0.2",)),
    ]  # fmt: skip


@contextmanager
def _run_network(spec: RunSpec, options: DistributionOptions) -> Iterator[Any]:
    """The run's namespaces (None without --netns); removed on exit, a 2nd Ctrl-C ignored."""
    if not options.netns:
        yield None
        return
    from seedcast.launcher.netns import open_network

    with ExitStack() as stack:
        with _no_interrupts():  # a half-built network is torn down by open_network itself
            network = stack.enter_context(open_network(netns_links(spec, options)))
            _limit_unsent(network)
        try:
            yield network
        finally:
            with _no_interrupts():
                stack.close()


def _limit_unsent(network: Any) -> None:
    """Set ``net.ipv4.tcp_notsent_lowat`` in every namespace of ``network``.

    Without it a sender's kernel queues up to 4 MiB per socket ahead of a slow
    (tc-shaped) link: BitTorrent's CANCEL can no longer take back a block that
    is already queued, and the choker's decisions act seconds late. The token
    buckets hold those bytes in the process instead; this keeps tc runs
    comparable (p2p, N = 4, 1 MiB/s: 7.3-8.9 s without it, 6.7-7.5 s with 16 KiB,
    7.0-7.6 s on buckets). A failure is harmless: the run keeps the kernel's default.
    """
    binary = shutil.which("sysctl") or "/usr/sbin/sysctl"
    for node in network.layout.nodes:
        argv = network.exec_argv(node.name, [binary, "-qw", f"{UNSENT_SYSCTL}={UNSENT_LOWAT}"])
        subprocess.run(argv, capture_output=True, timeout=10, check=False)


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """SIGINT ignored (here and in the ``ip``/``tc`` children) while the network changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def _in_node(network: Any, code: str, *arguments: str) -> str:
    """Run ``python -c code arguments...`` in the bench node; its stdout (SeedcastError if it
    fails)."""
    argv = network.exec_argv(BENCH_NODE, [sys.executable, "-c", code, *arguments])
    completed = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if completed.returncode != 0:
        lines = completed.stderr.decode(errors="replace").strip().splitlines()
        raise SeedcastError(lines[-1] if lines else f"{code!r} failed")
    return completed.stdout.decode().strip()


_WARM_CODE = (
    "import sys, trio\n"
    "from seedcast.bench.distribution import _warm\n"
    "trio.run(_warm, sys.argv[1], int(sys.argv[2]), None)\n"
)
_SCRAPE_CODE = (
    "import sys, trio\n"
    "from seedcast.bench.distribution import _scrape\n"
    "print(trio.run(_scrape, sys.argv[1], sys.argv[2]))\n"
)


async def run_once(
    spec: RunSpec,
    options: DistributionOptions,
    content: Any,
    workdir: Path,
    log_dir: Path,
    progress: Progress,
    network: Any = None,
) -> dict[str, Any]:
    """Launch the cluster for ``spec``, run its clients, tear it all down; the run's record.

    With ``network`` (a :class:`~seedcast.launcher.netns.Network` built from
    :func:`netns_links`), every process runs in its node's namespace and
    every client has a worker process of its own (its own shaped link).
    """
    from seedcast.bench._cluster import SystemCpu, cpu_seconds, open_run_cluster
    from seedcast.bench._content import torrent_with_announce

    scenario = options.scenario(spec.clients)
    limit = bound(spec.strategy, scenario)
    timeout = options.run_timeout or 2 * limit + 60
    run_dir = workdir / spec.slug
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data = str(content.data_dir)
    count = spec.clients
    workers = count if network is not None else _worker_count(options, count)
    nodes = {node.name: node for node in run_nodes(spec, options)}
    base = NETNS_BASE if network is not None else LOOPBACK_BASE

    def at(node: str) -> str:
        return f"{base}.{nodes[node].address}"

    def cap(rate: float) -> float:
        """What the processes' own token buckets enforce (0 = nothing)."""
        return rate if options.bucket_caps else 0.0

    def parts(clients: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
        if network is not None:  # one worker per client: each in its own namespace
            return [(f"client-{client['index']}", [client]) for client in clients]
        return [
            (f"clients-{number}", part) for number, part in enumerate(_split(clients, workers), 1)
        ]

    def wrap(name: str, argv: list[str]) -> list[str]:
        return argv if network is None else list(network.exec_argv(name, argv))

    state = _RunState(count, 0)
    record: dict[str, Any] = {
        "strategy": spec.strategy,
        "source": spec.source,
        "clients": count,
        "repeat": spec.repeat,
        "bound_s": limit,
        "min_client_s": options.file_size / options.peer_down,
        "workers": workers,
        "shaping": options.shaping,
        "netns": network.layout.prefix if network is not None else None,
    }
    try:
        async with open_run_cluster(log_dir / spec.slug, wrap) as cluster:
            jobs: list[tuple[str, dict[str, Any], bool]] = []  # (name, job, counted)
            seed_metrics = ""
            if spec.strategy in ("client-server", "cdn"):
                (origin,) = (
                    await cluster.start_role(
                        "origin",
                        ["--data", data, "origin", "--name", "bench-origin",
                         "--listen", f"{at('origin')}:0",
                         "--upload", str(cap(nodes["origin"].upload))],
                    )
                )[:1]  # fmt: skip
                servers = [f"http://{origin}"]
                if spec.strategy == "cdn":
                    servers = await _start_edges(
                        cluster, options, f"http://{origin}", content, at, cap, network
                    )
                clients = [
                    {
                        "index": k,
                        "address": at(f"client-{k}"),
                        "url": servers[(k - 1) % len(servers)] + content.url_path,
                        "download": cap(options.peer_down),
                    }
                    for k in range(1, count + 1)
                ]
                for name, part in parts(clients):
                    job = {
                        "mode": "http",
                        "clients": part,
                        "size": content.size,
                        "sha1": content.sha1,
                    }
                    jobs.append((name, job, True))
            else:
                (tracker,) = (
                    await cluster.start_role(
                        "tracker",
                        ["tracker", "--name", "bench-tracker", "--listen", f"{at('tracker')}:0",
                         "--no-udp"],
                    )
                )[:1]  # fmt: skip
                announce = f"http://{tracker}/announce"
                torrent_path = run_dir / "file.torrent"
                torrent_path.write_bytes(torrent_with_announce(content.torrent, announce))
                peers: list[dict[str, Any]] = [
                    {"index": k, "address": at(f"client-{k}"), "dir": str(run_dir / f"c{k}"),
                     "upload": cap(options.peer_up), "download": cap(options.peer_down)}
                    for k in range(1, count + 1)
                ]  # fmt: skip
                if spec.source == LIBTORRENT:
                    seed_job = {
                        "mode": "libtorrent",
                        "torrent": str(torrent_path),
                        "clients": [
                            {"index": 0, "address": at("seed"), "dir": str(content.library_dir),
                             "upload": cap(options.server_up), "download": 0, "seed": True}
                        ],
                    }  # fmt: skip
                    jobs.append(("seed", seed_job, False))
                    for name, part in parts(peers):
                        job = {"mode": "libtorrent", "torrent": str(torrent_path), "clients": part}
                        jobs.append((name, job, True))
                else:
                    seed_addresses = await cluster.start_role(
                        "seed",
                        ["--data", str(content.library_dir), "peer", "--seed", "--name", "bench-seed",
                         "--torrent", str(torrent_path), "--listen", f"{at('seed')}:0",
                         "--upload", str(cap(options.server_up)), "--tracker", announce,
                         "--metrics", f"{at('seed')}:0"],
                    )  # fmt: skip
                    if len(seed_addresses) > 1:
                        seed_metrics = f"http://{seed_addresses[1]}/metrics"
                    edges: list[str] = []
                    if spec.strategy == "hybrid":
                        (origin,) = (
                            await cluster.start_role(
                                "origin",
                                ["--data", data, "origin", "--name", "bench-origin",
                                 "--listen", f"{at('origin')}:0",
                                 "--upload", str(cap(options.origin_up))],
                            )
                        )[:1]  # fmt: skip
                        edges = await _start_edges(
                            cluster, options, f"http://{origin}", content, at, cap, network
                        )
                    for peer in peers:
                        peer["webseed"] = edges[(peer["index"] - 1) % len(edges)] if edges else None
                    for name, part in parts(peers):
                        job = {
                            "mode": "peer",
                            "torrent": str(torrent_path),
                            "announce": announce,
                            "seed": options.seed,
                            "clients": part,
                        }
                        jobs.append((name, job, True))
            state.expected_workers = len(jobs)
            state.counted = {name for name, _, counted in jobs if counted}
            started_workers = []
            for name, job, _ in jobs:
                started_workers.append(await cluster.start_worker(name, job, state.on_message))
            with trio.move_on_after(120):
                await state.all_ready.wait()
            if state.errors or len(state.ready) < len(jobs):
                raise SeedcastError(
                    "client workers did not get ready: "
                    + ("; ".join(state.errors) or "timed out")
                    + _tails(cluster, [name for name, _, _ in jobs])
                )
            pids = cluster.pids
            record["processes"] = len(pids)
            start_at = time.time() + 0.5
            for worker in started_workers:
                await worker.send({"start_at": start_at})
            await trio.sleep(max(0.0, start_at - time.time()))
            cpu_before = cpu_seconds(pids)
            system = SystemCpu()
            load_before = os.getloadavg()

            async def show_progress() -> None:
                while True:
                    progress(len(state.completions), sum(state.progress.values()))
                    await trio.sleep(0.25)

            async def watch_roles() -> None:
                await cluster.role_failed.wait()
                state.errors.append(f"{', '.join(cluster.failed_roles)} stopped during the run")
                state.all_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(show_progress)
                nursery.start_soon(watch_roles)
                with trio.move_on_after(timeout):
                    await state.all_done.wait()
                nursery.cancel_scope.cancel()
            progress(len(state.completions), sum(state.progress.values()))
            wall = max(time.time() - start_at, 1e-9)
            record["cpu_seconds"] = cpu_seconds(pids) - cpu_before
            record["cpu_share"] = record["cpu_seconds"] / (wall * (os.cpu_count() or 1))
            record["system_busy"] = system.busy()
            record["loadavg_before"] = load_before[0]
            record["loadavg_after"] = os.getloadavg()[0]
            record["pids"] = pids
            if seed_metrics:
                seed_uploaded = await _scrape_from(
                    network, seed_metrics, "seedcast_peer_uploaded_bytes"
                )
                if seed_uploaded is not None:
                    record["seed_uploaded"] = int(seed_uploaded)
            for worker in started_workers:
                await worker.close_input()
            with trio.move_on_after(STATISTICS_TIMEOUT):
                await state.statistics_done.wait()
            if state.errors:
                raise SeedcastError("; ".join(state.errors))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    times = sorted(state.completions.values())
    unfinished = count - len(times)
    record["completion_s"] = times
    record["unfinished"] = unfinished
    record["failures"] = sorted(set(state.failures.values()))[:5]
    record["measured_s"] = max(times) if times and not unfinished else float(timeout)
    record["ratio"] = record["measured_s"] / limit
    record["bytes"] = _byte_totals(state.statistics)
    for entry in state.statistics:
        if entry.get("seed"):
            record["seed_uploaded"] = int(entry.get("uploaded", 0))
    if "seed_uploaded" in record and times:
        # How busy the initial seed was: 1.0 = it sent at u_s from start to the last finish.
        record["seed_utilisation"] = record["seed_uploaded"] / (options.server_up * max(times))
    return record


async def _scrape_from(network: Any, url: str, name: str) -> float | None:
    """:func:`_scrape`, from inside the network when there is one."""
    if network is None:
        return await _scrape(url, name)
    try:
        text = await _in_node(network, _SCRAPE_CODE, url, name)
        return None if text == "None" else float(text)
    except (SeedcastError, ValueError):
        return None


async def _scrape(url: str, name: str) -> float | None:
    """The sum of the samples of counter ``name`` at a /metrics URL (None when unreadable)."""
    from prometheus_client.parser import text_string_to_metric_families
    from seedcast.errors import TransportError
    from seedcast.http11 import HttpClient

    client = HttpClient(connect_timeout=5, read_timeout=5)
    try:
        with trio.move_on_after(10):
            response = await client.request("GET", url)
            if response.status != 200:
                return None
            total = None
            for family in text_string_to_metric_families(response.content.decode()):
                for sample in family.samples:
                    if sample.name in (name, name + "_total"):
                        total = (total or 0.0) + sample.value
            return total
    except (TransportError, ProtocolError, ValueError):
        return None
    finally:
        await client.aclose()
    return None


def _tails(cluster: Any, names: Sequence[str]) -> str:
    lines = []
    for name in names:
        tail = cluster.tail(name)
        if tail:
            lines.append(f" [{name}: {' | '.join(tail[-3:])}]")
    return "".join(lines)


def _byte_totals(statistics: Sequence[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for entry in statistics:
        if entry.get("seed"):
            continue
        for key in ("from_server", "from_peers", "from_edge", "edge_wasted", "uploaded"):
            if key in entry:
                totals[key] = totals.get(key, 0) + int(entry[key])
        for key in ("hash_failures", "edge_hash_failures"):
            if entry.get(key):
                totals[key] = totals.get(key, 0) + int(entry[key])
    return totals


async def _start_edges(
    cluster: Any,
    options: DistributionOptions,
    origin_url: str,
    content: Any,
    at: Callable[[str], str],
    cap: Callable[[float], float],
    network: Any = None,
) -> list[str]:
    """Start E edges in front of ``origin_url`` and fill them with the file; their URLs."""
    urls = []
    memory = max(256 * MiB, 3 * options.file_size)
    for number in range(1, options.edges + 1):
        name = f"edge-{number}"
        (address,) = (
            await cluster.start_role(
                name,
                ["edge", "--name", f"bench-{name}", "--origin", origin_url,
                 "--listen", f"{at(name)}:0", "--upload", str(cap(options.edge_rate)),
                 "--cache-memory", str(memory)],
            )
        )[:1]  # fmt: skip
        urls.append(f"http://{address}")

    async def warm(url: str) -> None:
        if network is None:
            await _warm(url, content.size)
        else:  # the edges are only reachable from inside the network
            await _in_node(network, _WARM_CODE, url, str(content.size))

    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(warm, url + content.url_path)
    return urls


async def _warm(url: str, size: int, local_address: str | None = "127.0.0.1") -> None:
    """Have the edge fill its cache: ask for the last byte (the fill reads the whole file)."""
    from seedcast.http11 import HttpClient

    client = HttpClient(connect_timeout=10, read_timeout=WARM_TIMEOUT, local_address=local_address)
    try:
        with trio.fail_after(WARM_TIMEOUT):
            response = await client.request("GET", url, headers=[("Range", f"bytes={size - 1}-")])
            if response.status not in (200, 206):
                raise SeedcastError(f"warming {url}: HTTP {response.status}")
            check = await client.request("GET", url, headers=[("Range", "bytes=0-0")])
            if check.status != 206:
                raise SeedcastError(f"warming {url}: HTTP {check.status}")
    except trio.TooSlowError:
        raise SeedcastError(f"warming {url} took longer than {WARM_TIMEOUT:.0f} s") from None
    finally:
        await client.aclose()


# -- the command ----------------------------------------------------------------------------


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console

    options = options_from_args(args)
    console = Console(stderr=True)
    out = Path(args.out)
    try:
        records, interrupted = run_benchmark(
            options, out, workdir=Path(args.workdir) if args.workdir else None, console=console
        )
    except KeyboardInterrupt:  # pragma: no cover - run_benchmark handles it
        return 130
    _print_table(console, records)
    console.print(f"results in {out}/ (report.html, results.json, results.csv, *.png)")
    if interrupted:
        console.print("[yellow]interrupted: the report holds the runs that finished")
        return 130
    return 0


def run_benchmark(
    options: DistributionOptions,
    out: Path,
    *,
    workdir: Path | None = None,
    console: Any = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Run every planned run; returns (records, interrupted). Rewrites the report after each."""
    from seedcast.bench._content import prepare_content
    from seedcast.bench.report import progress_bar as new_progress_bar
    from seedcast.bench.report import write_results

    check_options(options)
    if options.netns:
        from seedcast.launcher.netns import check_support

        check_support("bench distribution --netns")
    out.mkdir(parents=True, exist_ok=True)
    scratch = workdir or Path(tempfile.mkdtemp(prefix="seedcast-distribution-"))
    scratch.mkdir(parents=True, exist_ok=True)
    runs = plan_runs(options)
    records: list[dict[str, Any]] = []
    config_echo = {
        **options.to_json(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "loadavg_at_start": os.getloadavg()[0],
        },
        "caps_enforced_by": SHAPING_TEXT.get(options.shaping, options.shaping),
        "theory": {
            "client-server": "max(N*F/u_s, F/d_min)",
            "cdn": "max(N*F/(E*u_e), F/d_min) (edges filled before the clock)",
            "p2p": "max(F/u_s, F/d_min, N*F/(u_s + sum u_i))",
            "hybrid": "max(F/(u_s+E*u_e), F/d_min, N*F/(u_s + E*u_e + sum u_i))",
        },
    }
    interrupted = False
    progress_bar = new_progress_bar(console)
    try:
        with progress_bar:
            overall = progress_bar.add_task("runs", total=len(runs), detail="")
            content_task = progress_bar.add_task(
                "file", total=None, detail=f"F = {format_size(options.file_size)}"
            )
            content = prepare_content(
                scratch / "data", options.file_size, options.seed, options.piece_length
            )
            progress_bar.remove_task(content_task)
            for spec in runs:
                current = progress_bar.add_task(
                    spec.label,
                    total=spec.clients * options.file_size,
                    detail=f"0/{spec.clients} done, bound {bound(spec.strategy, options.scenario(spec.clients)):.1f} s",
                )

                def update(
                    done: int, received: int, task: Any = current, spec: RunSpec = spec
                ) -> None:
                    progress_bar.update(
                        task,
                        completed=min(received, spec.clients * options.file_size),
                        detail=f"{done}/{spec.clients} done",
                    )

                try:
                    with _run_network(spec, options) as network:
                        if network is not None and console is not None:
                            console.print(
                                f"network {network.layout.prefix}-*: {spec.label}, "
                                f"{len(network.layout.nodes)} namespaces in {NETNS_SUBNET}, "
                                f"shaping {options.shaping}",
                                highlight=False,
                            )
                        record = trio.run(
                            run_once, spec, options, content, scratch, out / "logs", update, network
                        )
                except SeedcastError as error:
                    record = {
                        "strategy": spec.strategy,
                        "source": spec.source,
                        "clients": spec.clients,
                        "repeat": spec.repeat,
                        "shaping": options.shaping,
                        "error": str(error),
                    }
                    if console is not None:
                        console.print(f"[red]{spec.label}: {error}")
                progress_bar.remove_task(current)
                records.append(record)
                finished = [r for r in records if "measured_s" in r]
                write_results(out, config_echo, finished, title=TITLE, errors=_errors(records))
                progress_bar.advance(overall)
                if console is not None and "measured_s" in record:
                    console.print(_line(record))
    except KeyboardInterrupt:
        interrupted = True
        finished = [r for r in records if "measured_s" in r]
        write_results(out, config_echo, finished, title=TITLE, errors=_errors(records))
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return records, interrupted


def _errors(records: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{record['strategy']} N={record['clients']}: {record['error']}"
        for record in records
        if "error" in record
    ]


def _line(record: dict[str, Any]) -> str:
    name = record["strategy"] + ("" if record["source"] == SEEDCAST else f" ({record['source']})")
    unfinished = f", {record['unfinished']} unfinished" if record.get("unfinished") else ""
    busy = record.get("system_busy")
    cpu = f", CPU ours {record['cpu_share']:.0%}" + (f" / machine {busy:.0%}" if busy else "")
    return (
        f"{name:>22} N={record['clients']:<4} {record['measured_s']:7.1f} s  "
        f"bound {record['bound_s']:7.1f} s  ratio {record['ratio']:.2f}{unfinished}{cpu}, "
        f"load {record['loadavg_after']:.1f}"
    )


def _print_table(console: Any, records: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table
    from seedcast.bench.report import summarise

    finished = [record for record in records if "measured_s" in record]
    if not finished:
        return
    table = Table(title=TITLE)
    for column in ("strategy", "N", "measured s", "bound s", "ratio", "CPU ours", "machine busy"):
        table.add_column(column, justify="right")
    for (strategy, source, clients), values in summarise(finished).items():
        name = strategy if source == SEEDCAST else f"{strategy} ({source})"
        busy = values.get("system_busy")
        table.add_row(
            name,
            str(clients),
            f"{values['measured_s']:.1f}",
            f"{values['bound_s']:.1f}",
            f"{values['ratio']:.2f}",
            f"{values.get('cpu_share', 0):.0%}",
            "-" if busy is None else f"{busy:.0%}",
        )
    console.print(table)
