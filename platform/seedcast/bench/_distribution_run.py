"""One run of the distribution benchmark: its cluster, its clients, its record.

:func:`run_once` builds the run's network (``--netns``), starts the roles
through :func:`seedcast.bench._cluster.open_run_cluster`, warms the edges,
starts the client workers (``python -m seedcast.bench._clients``), gives them
one common start instant and collects their completions, then stops every
process and returns the run's record (measured time beside the bound, CPU,
bytes by source). The plan it follows is :mod:`._distribution_plan`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from seedcast.bench._cluster import SystemCpu, cpu_seconds, open_run_cluster
from seedcast.bench._content import torrent_with_announce
from seedcast.bench._distribution_plan import (
    BENCH_NODE,
    LIBTORRENT,
    LOOPBACK_BASE,
    NETNS_BASE,
    DistributionOptions,
    RunSpec,
    netns_links,
    run_nodes,
    split_jobs,
    worker_count,
)
from seedcast.bench.theory import bound
from seedcast.errors import ProtocolError, SeedcastError, TransportError
from seedcast.http11 import HttpClient
from seedcast.launcher.netns import open_network
from seedcast.units import MiB

UNSENT_SYSCTL = "net.ipv4.tcp_notsent_lowat"
UNSENT_LOWAT = 16 * 1024
"""Unsent bytes a socket may queue in the kernel with --netns (see :func:`_limit_unsent`)."""

WARM_TIMEOUT = 120.0
STATISTICS_TIMEOUT = 10.0


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


@contextmanager
def run_network(spec: RunSpec, options: DistributionOptions) -> Iterator[Any]:
    """The run's namespaces (None without --netns); removed on exit, a 2nd Ctrl-C ignored."""
    if not options.netns:
        yield None
        return

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
    "from seedcast.bench._distribution_run import _warm\n"
    "trio.run(_warm, sys.argv[1], int(sys.argv[2]), None)\n"
)


_SCRAPE_CODE = (
    "import sys, trio\n"
    "from seedcast.bench._distribution_run import _scrape\n"
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

    scenario = options.scenario(spec.clients)
    limit = bound(spec.strategy, scenario)
    timeout = options.run_timeout or 2 * limit + 60
    run_dir = workdir / spec.slug
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data = str(content.data_dir)
    count = spec.clients
    workers = count if network is not None else worker_count(options, count)
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
            (f"clients-{number}", part)
            for number, part in enumerate(split_jobs(clients, workers), 1)
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
