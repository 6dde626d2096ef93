"""One strategy's run of the streaming benchmark: its cluster, its viewers, its figures.

How it works. :func:`cluster_toml` writes the cluster file of the run on its
own loopback block (origin, edges with their egress caps, DNS with health
checks, tracker, two viewer regions). :func:`run_strategy` starts the roles
through :func:`seedcast.bench._cluster.open_run_cluster` (each stopped by PID
at the end), waits until the DNS steers a viewer address of every region to
an edge, reads the edges' and origin's byte counters, starts the viewer
workers (``python -m seedcast.bench._streaming_viewers``, through the same
run cluster, stopped by PID too), gives them one common start instant, and
collects one message per viewer until all have reported, the time bound
passes, or a role dies. Then it reads the counters again and turns it all
into the strategy's record (:func:`seedcast.bench.streaming.summarise_viewers`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from seedcast.errors import ProtocolError, SeedcastError, TransportError
from seedcast.testing.addresses import Addresses

if TYPE_CHECKING:
    from seedcast.bench.streaming import StreamingOptions, ViewerSpec

__all__ = ["Addresses", "cluster_toml", "run_strategy"]

log = logging.getLogger("seedcast.bench")

VIDEO_ID = "sample"
READY_TIMEOUT = 60.0
DNS_TIMEOUT = 20.0
STOP_GRACE = 5.0
VIEWERS_MODULE = "seedcast.bench._streaming_viewers"


def cluster_toml(
    options: StreamingOptions, addresses: Addresses, data_dir: Path, run_dir: Path
) -> str:
    from seedcast.bench.streaming import REGIONS

    edges = "".join(
        f"""
[[edges]]
name = "edge-{index}"
region = "{REGIONS[(index - 1) % len(REGIONS)]}"
listen = "{addresses.edge(index)}"
upload = {options.edge_up:.0f}
"""
        for index in range(1, options.edges + 1)
    )
    regions = "".join(
        f"""
[[regions]]
name = "{name}"
viewer_prefix = "{addresses.region_prefix(number)}"
latency_ms = {{ {", ".join(f"{other} = 40" for other in REGIONS if other != name)} }}
"""
        for number, name in enumerate(REGIONS)
    )
    return f"""
[cluster]
name = "bench-streaming-{addresses.block}"
data_dir = "{data_dir}"
run_dir = "{run_dir}"
{regions}
[origin]
listen = "{addresses.origin}"
upload = {options.origin_up:.0f}
{edges}
[dns]
listen = "{addresses.dns}"
metrics_listen = "{addresses.net(3, 1)}:19153"
health_interval = "500ms"
health_timeout = "300ms"
zones = [
  {{ origin = "netcinema.test", records = ["video 300 IN CNAME video.kingcdn.test."] }},
  {{ origin = "kingcdn.test" }},
]

[tracker]
listen = "{addresses.tracker.removeprefix("http://").removesuffix("/announce")}"
interval = "5s"
min_interval = "1s"

[peers]
count = 0
listen_prefix = "{addresses.net(5, 0)}/24"
prefetch_seconds = {options.prefetch_seconds}
urgent_seconds = {options.urgent_seconds}
max_connections = {options.max_connections}
"""


# -- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunState:
    viewers: int
    workers: int
    ready: set[str] = field(default_factory=set)
    all_ready: trio.Event = field(default_factory=trio.Event)
    joined: int = 0
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    all_done: trio.Event = field(default_factory=trio.Event)
    played: dict[str, float] = field(default_factory=dict)
    finished_played: float = 0.0
    exited: set[str] = field(default_factory=set)
    all_exited: trio.Event = field(default_factory=trio.Event)
    stopping: bool = False
    errors: list[str] = field(default_factory=list)

    def on_message(self, message: dict[str, Any]) -> None:
        worker = str(message.get("worker"))
        event = message.get("event")
        if event == "ready":
            self.ready.add(worker)
            if len(self.ready) >= self.workers:
                self.all_ready.set()
        elif event == "joined":
            self.joined += 1
        elif event in ("done", "failed"):
            self.results.setdefault(int(message["viewer"]), message)
        elif event == "progress":
            self.played[worker] = float(message.get("played", 0.0))
        elif event == "error":
            self.errors.append(f"{worker}: {message.get('message')}")
        elif event == "exit":
            self.exited.add(worker)
            if len(self.exited) >= self.workers:
                self.all_exited.set()
            if worker not in self.ready:
                self.errors.append(f"{worker} exited before it was ready")
                self.all_ready.set()
            elif not self.all_done.is_set() and not self.stopping:
                self.errors.append(f"{worker} exited before its viewers finished")
        if len(self.results) >= self.viewers or self.errors:
            self.all_done.set()


def _prepare(workdir: Path, log_dir: Path, toml: str) -> Path:
    """A fresh scratch folder holding the cluster file; returns the file."""
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "cluster.toml"
    config_file.write_text(toml, encoding="utf-8")
    return config_file


async def run_strategy(
    strategy: str,
    options: StreamingOptions,
    viewers: Sequence[ViewerSpec],
    library: Path,
    workdir: Path,
    log_dir: Path,
    progress: Callable[[int, int, float], None],
) -> dict[str, Any]:
    """Launch the cluster for ``strategy``, play ``viewers``, stop everything; the record.

    Raises SeedcastError when the cluster or the workers could not start, or
    a role died during the run.
    """
    import shutil

    from seedcast.bench._cluster import SystemCpu, cpu_seconds, open_run_cluster
    from seedcast.bench.streaming import REGIONS, run_timeout, summarise_viewers

    addresses = Addresses(options.block, options.port)
    config_file = _prepare(
        workdir, log_dir, cluster_toml(options, addresses, library, workdir / "run")
    )
    config = ["--config", str(config_file)]
    state = _RunState(len(viewers), min(options.worker_count(), len(viewers)))
    timeout = run_timeout(options, viewers)
    record_extra: dict[str, Any] = {}
    try:
        async with open_run_cluster(log_dir) as cluster:
            roles = [("origin", "origin"), ("dns", "dns")]
            roles += [(f"edge-{index}", "edge") for index in range(1, options.edges + 1)]
            if strategy == "hybrid":
                roles.append(("tracker", "tracker"))
            await _start_roles(cluster, config, roles)
            await _wait_dns(addresses, options.edges)
            counter_urls = {
                "edges": [
                    f"http://{addresses.edge(index)}/metrics"
                    for index in range(1, options.edges + 1)
                ],
                "origin": [f"http://{addresses.origin}/metrics"],
            }
            before = await _counters(counter_urls)
            jobs = _jobs(strategy, options, viewers, addresses, config_file, workdir)
            started_workers = [
                await cluster.start_worker(name, job, state.on_message, module=VIEWERS_MODULE)
                for name, job in jobs
            ]
            with trio.move_on_after(READY_TIMEOUT):
                await state.all_ready.wait()
            if state.errors or len(state.ready) < len(jobs):
                tails = "; ".join(
                    f"{name}: {' | '.join(cluster.tail(name)[-3:])}"
                    for name, _ in jobs
                    if cluster.tail(name)
                )
                raise SeedcastError(
                    "viewer workers did not get ready: "
                    + ("; ".join(state.errors) or "timed out")
                    + (f" [{tails}]" if tails else "")
                )
            pids = cluster.pids
            start_at = time.time() + 0.5
            for worker in started_workers:
                await worker.send({"start_at": start_at})
            await trio.sleep(max(0.0, start_at - time.time()))
            cpu_before = cpu_seconds(pids)
            system = SystemCpu()

            async def show_progress() -> None:
                while True:
                    progress(state.joined, len(state.results), sum(state.played.values()))
                    await trio.sleep(0.25)

            async def watch_roles() -> None:
                await cluster.role_failed.wait()
                state.errors.append(f"{', '.join(cluster.failed_roles)} stopped during the run")
                state.all_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(show_progress)
                nursery.start_soon(watch_roles)
                with trio.move_on_after(timeout) as bounded:
                    await state.all_done.wait()
                nursery.cancel_scope.cancel()
            progress(state.joined, len(state.results), sum(state.played.values()))
            wall = max(time.time() - start_at, 1e-9)
            record_extra["wall_s"] = round(wall, 2)
            record_extra["timed_out"] = bounded.cancelled_caught
            record_extra["cpu_seconds"] = round(cpu_seconds(pids) - cpu_before, 2)
            record_extra["cpu_share"] = record_extra["cpu_seconds"] / (wall * (os.cpu_count() or 1))
            record_extra["system_busy"] = system.busy()
            record_extra["loadavg_after"] = os.getloadavg()[0]
            record_extra["processes"] = len(pids)
            record_extra["pids"] = pids
            after = await _counters(counter_urls)
            # Viewers still playing now are stopped; they report what they played.
            state.stopping = True
            await cluster.close_worker_inputs()
            with trio.move_on_after(STOP_GRACE):
                await state.all_exited.wait()
            if state.errors and not state.results:
                raise SeedcastError("; ".join(state.errors))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    never = {"event": "failed", "reason": "never reported", "report": None}
    results = [
        state.results.get(
            viewer.index,
            {**never, "viewer": viewer.index, "region": viewer.region, "arrival_s": viewer.arrival},
        )
        for viewer in viewers
    ]
    edge_egress = _delta(before, after, "edges")
    record = summarise_viewers(
        strategy,
        results,
        viewers=len(viewers),
        edge_egress=edge_egress,
        origin_egress=_delta(before, after, "origin"),
    )
    record.update(record_extra)
    record["regions"] = list(REGIONS)
    record["workers"] = len(jobs)
    if state.errors:
        record["run_errors"] = state.errors[:5]
    return record


async def _start_roles(cluster: Any, config: list[str], roles: list[tuple[str, str]]) -> None:
    """Start the roles side by side (each waits for its own ``ready`` line)."""
    failures: list[str] = []

    async def start(name: str, role: str) -> None:
        extra = ["--no-udp"] if role == "tracker" else []
        try:
            await cluster.start_role(name, [*config, role, "--name", name, *extra])
        except SeedcastError as error:
            failures.append(str(error))

    async with trio.open_nursery() as nursery:
        for name, role in roles:
            nursery.start_soon(start, name, role)
    if failures:
        raise SeedcastError("; ".join(failures))


def _jobs(
    strategy: str,
    options: StreamingOptions,
    viewers: Sequence[ViewerSpec],
    addresses: Addresses,
    config_file: Path,
    workdir: Path,
) -> list[tuple[str, dict[str, Any]]]:
    from seedcast.bench.streaming import REGIONS

    count = min(options.worker_count(), len(viewers))
    parts: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for position, viewer in enumerate(viewers):
        parts[position % count].append(
            {
                "index": viewer.index,
                "region": viewer.region,
                "source": addresses.viewer_source(REGIONS.index(viewer.region), viewer.index),
                "peer_host": addresses.peer_host(viewer.index),
                "arrival": viewer.arrival,
                "upload": options.upload,
                "download": options.download,
                "storage": str(workdir / "viewers" / f"v{viewer.index}"),
            }
        )
    jobs = []
    for number, part in enumerate(parts, 1):
        jobs.append(
            (
                f"viewers-{number}",
                {
                    "strategy": strategy,
                    "config": str(config_file),
                    "cdn_url": addresses.cdn_url,
                    "tracker": addresses.tracker,
                    "video_id": VIDEO_ID,
                    "abr": options.abr,
                    "seed": options.seed,
                    "linger": options.linger,
                    "player": {
                        "seconds": options.watch_seconds or None,
                        "max_buffer_seconds": options.max_buffer,
                    },
                    "viewers": part,
                },
            )
        )
    return jobs


async def _wait_dns(addresses: Addresses, edges: int) -> None:
    """Until the DNS answers a viewer of every region with an edge (health checks passed)."""
    from seedcast.bench.streaming import REGIONS
    from seedcast.resolver import StubResolver

    edge_hosts = {addresses.edge(index).rsplit(":", 1)[0] for index in range(1, edges + 1)}
    pending = set(range(len(REGIONS)))
    last = "no answer"
    with trio.move_on_after(DNS_TIMEOUT):
        while pending:
            for number in sorted(pending):
                resolver = StubResolver(
                    addresses.dns, local_address=addresses.viewer_source(number, 250), timeout=0.5
                )
                try:
                    answer = await resolver.resolve_address("video.netcinema.test")
                except (SeedcastError, OSError) as error:
                    last = str(error)
                    continue
                if answer in edge_hosts:
                    pending.discard(number)
                else:
                    last = f"answered {answer}, not an edge"
            if pending:
                await trio.sleep(0.2)  # health checks run every 500 ms: ask again shortly
    if pending:
        raise SeedcastError(f"the DNS never named an edge within {DNS_TIMEOUT:.0f} s: {last}")


Counters = dict[str, list[tuple[float, int] | None]]


async def _counters(urls: dict[str, list[str]]) -> Counters:
    """Response body bytes sent so far by each server (and the size of that answer)."""
    from seedcast.http11 import HttpClient

    result: Counters = {}
    async with HttpClient(connect_timeout=5, read_timeout=5) as client:
        for group, targets in urls.items():
            result[group] = [await _scrape(client, url, group) for url in targets]
    return result


async def _scrape(client: Any, url: str, group: str) -> tuple[float, int] | None:
    from prometheus_client.parser import text_string_to_metric_families

    component = "edge" if group == "edges" else "origin"
    name = f"seedcast_{component}_http_response_body_bytes"
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
            return None if total is None else (total, len(response.content))
    except (TransportError, ProtocolError, ValueError):
        return None
    return None


def _delta(before: Counters, after: Counters, group: str) -> int | None:
    """Bytes sent between the two readings (minus the first reading's own answer)."""
    total = 0
    for first, second in zip(before.get(group, []), after.get(group, []), strict=False):
        if first is None or second is None:
            return None
        total += int(second[0] - first[0] - first[1])
    return max(0, total)
