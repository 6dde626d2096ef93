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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from seedcast.bench._cluster import WorkerRoll, measure_run, open_run_cluster, scrape_counter
from seedcast.errors import SeedcastError
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
    # Relays (and the netem process) live in the DNS's /24, above its own address.
    netem = (
        f"""
[netem]
enabled = true
relay_prefix = "{addresses.net(3, 96)}/27"
listen = "{addresses.net(3, 126)}:19120"
"""
        if options.rtt_ms > 0
        else ""
    )
    return f"""
[cluster]
name = "bench-streaming-{addresses.block}"
data_dir = "{data_dir}"
run_dir = "{run_dir}"
{addresses.regions_toml(REGIONS, last_mile_ms=options.rtt_ms / 2)}
[origin]
listen = "{addresses.origin}"
upload = {options.origin_up:.0f}
{edges}{addresses.services_toml()}
[peers]
count = 0
listen_prefix = "{addresses.net(5, 0)}/24"
prefetch_seconds = {options.prefetch_seconds}
urgent_seconds = {options.urgent_seconds}
max_connections = {options.max_connections}
{netem}"""


# -- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunState:
    viewers: int
    workers: WorkerRoll
    joined: int = 0
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    all_done: trio.Event = field(default_factory=trio.Event)
    played: dict[str, float] = field(default_factory=dict)
    finished_played: float = 0.0
    stopping: bool = False

    def on_message(self, message: dict[str, Any]) -> None:
        worker = str(message.get("worker"))
        event = message.get("event")
        busy = not self.all_done.is_set() and not self.stopping
        self.workers.note(worker, message, busy=busy, work="viewers")
        if event == "joined":
            self.joined += 1
        elif event in ("done", "failed"):
            self.results.setdefault(int(message["viewer"]), message)
        elif event == "progress":
            self.played[worker] = float(message.get("played", 0.0))
        if len(self.results) >= self.viewers or self.workers.errors:
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

    from seedcast.bench.streaming import REGIONS, run_timeout, summarise_viewers

    addresses = Addresses(options.block, options.port)
    config_file = _prepare(
        workdir, log_dir, cluster_toml(options, addresses, library, workdir / "run")
    )
    config = ["--config", str(config_file)]
    state = _RunState(len(viewers), WorkerRoll(min(options.worker_count(), len(viewers))))
    timeout = run_timeout(options, viewers)
    try:
        async with open_run_cluster(log_dir) as cluster:
            roles = [("origin", "origin"), ("dns", "dns")]
            roles += [(f"edge-{index}", "edge") for index in range(1, options.edges + 1)]
            if strategy == "hybrid":
                roles.append(("tracker", "tracker"))
            if options.rtt_ms > 0:
                roles.append(("netem", "netem"))
            await _start_roles(cluster, config, roles)
            await _wait_dns(addresses, options.edges, relays=options.rtt_ms > 0)
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
            await state.workers.wait_ready(cluster, READY_TIMEOUT, "viewer")
            record_extra = await measure_run(
                cluster,
                started_workers,
                state.workers,
                state.all_done,
                timeout,
                lambda: progress(state.joined, len(state.results), sum(state.played.values())),
            )
            record_extra["wall_s"] = round(record_extra["wall_s"], 2)
            record_extra["cpu_seconds"] = round(record_extra["cpu_seconds"], 2)
            after = await _counters(counter_urls)
            # Viewers still playing now are stopped; they report what they played.
            state.stopping = True
            await cluster.close_worker_inputs()
            with trio.move_on_after(STOP_GRACE):
                await state.workers.all_exited.wait()
            if state.workers.errors and not state.results:
                raise SeedcastError("; ".join(state.workers.errors))
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
    record["rtt_ms"] = options.rtt_ms
    if state.workers.errors:
        record["run_errors"] = state.workers.errors[:5]
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


async def _wait_dns(addresses: Addresses, edges: int, *, relays: bool = False) -> None:
    """Until the DNS answers a viewer of every region with an edge (health checks passed).

    With ``relays`` (an emulated RTT) the answers are the edges' relay addresses.
    """
    from seedcast.bench.streaming import REGIONS
    from seedcast.resolver import StubResolver

    edge_hosts = {
        addresses.net(3, 96 + index) if relays else addresses.edge(index).rsplit(":", 1)[0]
        for index in range(1, edges + 1)
    }
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
    component = "edge" if group == "edges" else "origin"
    return await scrape_counter(client, url, f"seedcast_{component}_http_response_body_bytes")


def _delta(before: Counters, after: Counters, group: str) -> int | None:
    """Bytes sent between the two readings (minus the first reading's own answer)."""
    total = 0
    for first, second in zip(before.get(group, []), after.get(group, []), strict=False):
        if first is None or second is None:
            return None
        total += int(second[0] - first[0] - first[1])
    return max(0, total)
