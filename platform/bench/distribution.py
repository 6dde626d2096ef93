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
import tempfile
import time
from collections.abc import Callable, Sequence
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

    @property
    def edge_rate(self) -> float:
        return self.edge_up or self.server_up

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


async def run_once(
    spec: RunSpec,
    options: DistributionOptions,
    content: Any,
    workdir: Path,
    log_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Launch the cluster for ``spec``, run its clients, tear it all down; the run's record."""
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
    workers = _worker_count(options, count)
    state = _RunState(count, 0)
    record: dict[str, Any] = {
        "strategy": spec.strategy,
        "source": spec.source,
        "clients": count,
        "repeat": spec.repeat,
        "bound_s": limit,
        "min_client_s": options.file_size / options.peer_down,
        "workers": workers,
    }
    try:
        async with open_run_cluster(log_dir / spec.slug) as cluster:
            jobs: list[tuple[str, dict[str, Any], bool]] = []  # (name, job, counted)
            seed_metrics = ""
            if spec.strategy in ("client-server", "cdn"):
                origin_up = (
                    options.server_up if spec.strategy == "client-server" else options.origin_up
                )
                (origin,) = (
                    await cluster.start_role(
                        "origin",
                        ["--data", data, "origin", "--name", "bench-origin",
                         "--listen", "127.0.10.1:0", "--upload", str(origin_up)],
                    )
                )[:1]  # fmt: skip
                servers = [f"http://{origin}"]
                if spec.strategy == "cdn":
                    servers = await _start_edges(cluster, options, f"http://{origin}", content)
                clients = [
                    {
                        "index": k,
                        "address": f"127.0.41.{k}",
                        "url": servers[(k - 1) % len(servers)] + content.url_path,
                        "download": options.peer_down,
                    }
                    for k in range(1, count + 1)
                ]
                for number, part in enumerate(_split(clients, workers), 1):
                    job = {
                        "mode": "http",
                        "clients": part,
                        "size": content.size,
                        "sha1": content.sha1,
                    }
                    jobs.append((f"clients-{number}", job, True))
            else:
                (tracker,) = (
                    await cluster.start_role(
                        "tracker",
                        ["tracker", "--name", "bench-tracker", "--listen", "127.0.30.1:0", "--no-udp"],
                    )
                )[:1]  # fmt: skip
                announce = f"http://{tracker}/announce"
                torrent_path = run_dir / "file.torrent"
                torrent_path.write_bytes(torrent_with_announce(content.torrent, announce))
                if spec.source == LIBTORRENT:
                    seed_job = {
                        "mode": "libtorrent",
                        "torrent": str(torrent_path),
                        "clients": [
                            {"index": 0, "address": "127.0.42.1", "dir": str(content.library_dir),
                             "upload": options.server_up, "download": 0, "seed": True}
                        ],
                    }  # fmt: skip
                    jobs.append(("seed", seed_job, False))
                    clients = [
                        {"index": k, "address": f"127.0.42.{k + 1}", "dir": str(run_dir / f"c{k}"),
                         "upload": options.peer_up, "download": options.peer_down}
                        for k in range(1, count + 1)
                    ]  # fmt: skip
                    for number, part in enumerate(_split(clients, workers), 1):
                        job = {"mode": "libtorrent", "torrent": str(torrent_path), "clients": part}
                        jobs.append((f"clients-{number}", job, True))
                else:
                    seed_addresses = await cluster.start_role(
                        "seed",
                        ["--data", str(content.library_dir), "peer", "--seed", "--name", "bench-seed",
                         "--torrent", str(torrent_path), "--listen", "127.0.40.1:0",
                         "--upload", str(options.server_up), "--tracker", announce,
                         "--metrics", "127.0.40.1:0"],
                    )  # fmt: skip
                    if len(seed_addresses) > 1:
                        seed_metrics = f"http://{seed_addresses[1]}/metrics"
                    edges: list[str] = []
                    if spec.strategy == "hybrid":
                        (origin,) = (
                            await cluster.start_role(
                                "origin",
                                ["--data", data, "origin", "--name", "bench-origin",
                                 "--listen", "127.0.10.1:0", "--upload", str(options.origin_up)],
                            )
                        )[:1]  # fmt: skip
                        edges = await _start_edges(cluster, options, f"http://{origin}", content)
                    clients = [
                        {"index": k, "address": f"127.0.40.{k + 1}", "dir": str(run_dir / f"c{k}"),
                         "upload": options.peer_up, "download": options.peer_down,
                         "webseed": edges[(k - 1) % len(edges)] if edges else None}
                        for k in range(1, count + 1)
                    ]  # fmt: skip
                    for number, part in enumerate(_split(clients, workers), 1):
                        job = {
                            "mode": "peer",
                            "torrent": str(torrent_path),
                            "announce": announce,
                            "seed": options.seed,
                            "clients": part,
                        }
                        jobs.append((f"clients-{number}", job, True))
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
                seed_uploaded = await _scrape(seed_metrics, "seedcast_peer_uploaded_bytes")
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
    cluster: Any, options: DistributionOptions, origin_url: str, content: Any
) -> list[str]:
    """Start E edges in front of ``origin_url`` and fill them with the file; their URLs."""
    urls = []
    memory = max(256 * MiB, 3 * options.file_size)
    for number in range(1, options.edges + 1):
        (address,) = (
            await cluster.start_role(
                f"edge-{number}",
                ["edge", "--name", f"bench-edge-{number}", "--origin", origin_url,
                 "--listen", f"127.0.20.{number}:0", "--upload", str(options.edge_rate),
                 "--cache-memory", str(memory)],
            )
        )[:1]  # fmt: skip
        urls.append(f"http://{address}")
    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(_warm, url + content.url_path, content.size)
    return urls


async def _warm(url: str, size: int) -> None:
    """Have the edge fill its cache: ask for the last byte (the fill reads the whole file)."""
    from seedcast.http11 import HttpClient

    client = HttpClient(connect_timeout=10, read_timeout=WARM_TIMEOUT, local_address="127.0.0.1")
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
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from seedcast.bench._content import prepare_content
    from seedcast.bench.report import write_results

    check_options(options)
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
        "theory": {
            "client-server": "max(N*F/u_s, F/d_min)",
            "cdn": "max(N*F/(E*u_e), F/d_min) (edges filled before the clock)",
            "p2p": "max(F/u_s, F/d_min, N*F/(u_s + sum u_i))",
            "hybrid": "max(F/(u_s+E*u_e), F/d_min, N*F/(u_s + E*u_e + sum u_i))",
        },
    }
    interrupted = False
    progress_bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
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
                    record = trio.run(
                        run_once, spec, options, content, scratch, out / "logs", update
                    )
                except SeedcastError as error:
                    record = {
                        "strategy": spec.strategy,
                        "source": spec.source,
                        "clients": spec.clients,
                        "repeat": spec.repeat,
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
