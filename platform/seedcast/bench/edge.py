"""``seedcast bench edge``: the edge against nginx ``proxy_cache``, its eviction policy against LRU.

Three measurements, each against a baseline measured in the same run:

1. **Cached hits under load** (needs ``wrk`` and ``nginx``): an nginx origin
   serves a 10 KiB and a 1 MiB object; our edge (a real ``seedcast edge``
   process) and an nginx edge (``proxy_cache`` + ``proxy_cache_lock on``, one
   worker) sit in front of it. After a warm-up request makes each object a
   hit, ``wrk`` (64 keep-alive connections) loads each edge in turn, edge
   pinned to one core and wrk to the other, alternating nginx/ours for
   ``--rounds`` rounds (the median round counts). We report req/s, MB/s, p99
   latency and server CPU per request and per MiB (utime+stime of the server
   processes from /proc, so other load on the machine doesn't skew it).
2. **Eviction policy**: hit ratio and byte-hit ratio of S3-FIFO vs plain LRU
   (the :class:`~seedcast.edge.storage.StorageIndex` itself, no sockets) on
   a Zipf(alpha) trace over a catalogue ten times the cache, with equal and
   with mixed (ladder-like) object sizes.
3. **Prefetch of segment N+1**: a player fetching consecutive segments through
   an in-process edge from an origin with a fixed delay, prefetch off vs on:
   mean time per segment and upstream requests.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.edge.storage import StorageIndex
from seedcast.units import KiB, MiB


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections")
    parser.add_argument("--rounds", type=int, default=1, help="alternating nginx/ours rounds")
    parser.add_argument("--server-core", type=int, default=0, help="CPU for the edges")
    parser.add_argument("--load-core", type=int, default=1, help="CPU for wrk")
    parser.add_argument("--zipf-alpha", type=float, default=0.8)
    parser.add_argument("--zipf-requests", type=int, default=300_000)
    parser.add_argument(
        "--catalogue", type=int, default=10_000, help="objects in the Zipf catalogue"
    )
    parser.add_argument("--skip-http", action="store_true", help="only the in-process measurements")
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the results as JSON"
    )


# ---------------------------------------------------------------------------
# 2. eviction policy on a Zipf trace


def zipf_cdf(size: int, alpha: float) -> list[float]:
    weights = [1.0 / rank**alpha for rank in range(1, size + 1)]
    total = sum(weights)
    return list(itertools.accumulate(weight / total for weight in weights))


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy: str
    sizes: str
    hit_ratio: float
    byte_hit_ratio: float


def simulate(
    policy: str, sizes: list[int], capacity: int, requests: int, alpha: float, seed: int
) -> PolicyResult:
    """Replay a Zipf(alpha) trace through a StorageIndex; returns its hit ratios."""
    rng = random.Random(seed)
    cdf = zipf_cdf(len(sizes), alpha)
    popularity = list(range(len(sizes)))
    rng.shuffle(popularity)  # popular objects are not the first ones created
    index = StorageIndex(capacity, policy, max_object_fraction=1.0)
    hits = hit_bytes = total_bytes = 0
    for _ in range(requests):
        number = popularity[bisect.bisect_left(cdf, rng.random())]
        key = str(number)
        size = sizes[number]
        total_bytes += size
        if index.touch(key):
            hits += 1
            hit_bytes += size
            continue
        admission = index.reserve(size)
        if admission.reservation is not None:
            index.commit(admission.reservation, key, size)
    return PolicyResult(policy, "", hits / requests, hit_bytes / total_bytes)


def compare_policies(catalogue: int, requests: int, alpha: float) -> list[PolicyResult]:
    rng = random.Random(2024)
    layouts = {
        "equal": [1 * MiB] * catalogue,
        # A bitrate ladder: segments of 4 representations differ in size.
        "mixed": [rng.choice([256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB]) for _ in range(catalogue)],
    }
    results: list[PolicyResult] = []
    for label, sizes in layouts.items():
        capacity = sum(sizes) // 10
        for policy in ("lru", "s3-fifo"):
            result = simulate(policy, sizes, capacity, requests, alpha, seed=7)
            results.append(dataclasses.replace(result, sizes=label))
    return results


# ---------------------------------------------------------------------------
# 3. prefetch


@dataclass(frozen=True, slots=True)
class PrefetchResult:
    prefetch: bool
    segments: int
    mean_seconds: float
    upstream_requests: int
    prefetch_hits: int


async def _prefetch_run(
    config: ClusterConfig, prefetch: bool, segments: int, delay: float, think: float
) -> PrefetchResult:
    # The edge and HTTP core (+90 ms) load when the run starts:
    # `seedcast bench` imports every mode module for its --help (see seedcast.bench.commands).
    from seedcast.edge.server import EdgeOptions, serve
    from seedcast.http11 import HttpClient, HttpServer, Request, Response

    body = os.urandom(256 * KiB)
    seen: list[str] = []

    async def origin(request: Request) -> Response:
        seen.append(request.target)
        await trio.sleep(delay)  # a distant origin: the cost prefetch hides
        if not re.fullmatch(r"/v/chunk-0-\d{5}\.m4s", request.path):
            return Response(404, [("Content-Type", "text/plain")], b"no\n")
        return Response(200, [("Cache-Control", "max-age=3600")], body)

    results: dict[str, Any] = {}
    edges = tuple(dataclasses.replace(edge, prefetch_next=prefetch) for edge in config.edges)
    config = dataclasses.replace(config, edges=edges)
    async with trio.open_nursery() as nursery:
        origin_server = HttpServer(origin)
        bound = await nursery.start(origin_server.serve, ["127.0.0.1:0"])
        origin_url = f"http://{bound[0][0]}:{bound[0][1]}"

        def on_ready(edge: Any, server: Any) -> None:
            results["edge"] = edge

        addresses = await nursery.start(
            lambda task_status: serve(
                config,
                config.edges[0].name,
                options=EdgeOptions(origin=origin_url, listen="127.0.0.1:0"),
                on_ready=on_ready,
                task_status=task_status,
            )
        )
        durations: list[float] = []
        async with HttpClient() as client:
            for number in range(1, segments + 1):
                started = trio.current_time()
                response = await client.request(
                    "GET", f"http://{addresses[0]}/v/chunk-0-{number:05d}.m4s"
                )
                if response.status != 200:
                    raise RuntimeError(f"prefetch bench: segment {number} -> {response.status}")
                durations.append(trio.current_time() - started)
                await trio.sleep(think)  # the player plays what it has before asking again
        edge = results["edge"]
        nursery.cancel_scope.cancel()
    media = [target for target in seen if "chunk" in target]
    return PrefetchResult(
        prefetch, segments, statistics.fmean(durations), len(media), edge.counters.prefetch_hits
    )


def measure_prefetch(
    config: ClusterConfig, segments: int = 20, delay: float = 0.05, think: float = 0.1
) -> list[PrefetchResult]:
    return [trio.run(_prefetch_run, config, flag, segments, delay, think) for flag in (False, True)]


# ---------------------------------------------------------------------------
# 1. cached hits: our edge vs nginx proxy_cache, load from wrk


@dataclass(frozen=True, slots=True)
class LoadResult:
    server: str
    object_size: int
    requests_per_second: float
    megabytes_per_second: float
    p99_ms: float
    requests: int
    cpu_seconds: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else float("nan")

    @property
    def cpu_ms_per_mib(self) -> float:
        mib = self.requests * self.object_size / MiB
        return self.cpu_seconds / mib * 1e3 if mib else float("nan")


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(child) for child in text)
    return found


_LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _parse_wrk(output: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    scale = {"B": 1 / MiB, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}
    mbps = float(transfer.group(1)) * scale.get(transfer.group(2), 1.0) if transfer else 0.0
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    p99_ms = float(p99.group(1)) * _LATENCY_UNITS[p99.group(2)] if p99 else float("nan")
    total = re.search(r"(\d+) requests in", output)
    return rps, mbps, p99_ms, int(total.group(1)) if total else 0


@contextlib.contextmanager
def _process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    handle = open(log, "wb")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        handle.close()


def _wait_http(url: str, seconds: float = 10.0) -> dict[str, str]:
    """GET ``url`` until it answers (bounded); returns the response headers (lower-cased)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port, timeout=2
            )
            connection.request("GET", parts.path)
            response = connection.getresponse()
            response.read()
            connection.close()
            return {name.lower(): value for name, value in response.getheaders()}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _nginx_conf(
    directory: Path, *, origin_port: int | None, edge_port: int | None, upstream: int
) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    if origin_port is not None:
        server = (
            f"server {{ listen 127.0.0.1:{origin_port}; root {directory / 'www'};"
            " location / { expires 1h; } }"
        )
        cache = ""
    else:
        cache = (
            f"proxy_cache_path {directory / 'cache'} levels=1:2 keys_zone=edge:64m"
            " max_size=2g inactive=1h use_temp_path=off;"
        )
        server = (
            f"server {{ listen 127.0.0.1:{edge_port}; location / {{"
            f" proxy_pass http://127.0.0.1:{upstream}; proxy_cache edge; proxy_cache_lock on;"
            ' proxy_http_version 1.1; proxy_set_header Connection "";'
            " proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;"
            " add_header X-Cache $upstream_cache_status; } }"
        )
    name = "origin" if origin_port is not None else "edge"
    return (
        f"worker_processes 1;\ndaemon off;\n{user}pid {directory / (name + '.pid')};\n"
        f"error_log {directory / (name + '-error.log')};\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; {cache} {server} }}\n"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wrk(
    args: argparse.Namespace, url: str, pids: list[int]
) -> tuple[float, float, float, int, float]:
    command = [
        "taskset", "-c", str(args.load_core), "wrk", "-t1", f"-c{args.connections}",
        f"-d{args.seconds:g}s", "--latency", url,
    ]  # fmt: skip
    before = _cpu_seconds(pids)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=args.seconds + 30, check=True
    )
    cpu = _cpu_seconds(pids) - before
    rps, mbps, p99, total = _parse_wrk(completed.stdout)
    return rps, mbps, p99, total, cpu


def measure_hits(args: argparse.Namespace, config: ClusterConfig) -> list[LoadResult]:
    pin = ["taskset", "-c", str(args.server_core)]
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="seedcast-bench-edge-") as temporary:
        directory = Path(temporary)
        (directory / "www").mkdir()
        (directory / "cache").mkdir()
        objects = {10 * KiB: "object-10k.bin", 1 * MiB: "object-1m.bin"}
        for size, name in objects.items():
            (directory / "www" / name).write_bytes(os.urandom(size))
        origin_port, nginx_port, ours_port = _free_port(), _free_port(), _free_port()
        (directory / "origin.conf").write_text(
            _nginx_conf(directory, origin_port=origin_port, edge_port=None, upstream=0)
        )
        (directory / "edge.conf").write_text(
            _nginx_conf(directory, origin_port=None, edge_port=nginx_port, upstream=origin_port)
        )
        nginx = shutil.which("nginx") or "nginx"
        seedcast = [sys.executable, "-m", "seedcast"]
        nginx_origin_command = [
            nginx, "-e", str(directory / "origin-start.log"), "-p", str(directory),
            "-c", str(directory / "origin.conf"),
        ]  # fmt: skip
        nginx_edge_command = [
            *pin, nginx, "-e", str(directory / "edge-start.log"), "-p", str(directory),
            "-c", str(directory / "edge.conf"),
        ]  # fmt: skip
        our_edge_command = [
            *pin, *seedcast, "edge", "--origin", f"http://127.0.0.1:{origin_port}",
            "--listen", f"127.0.0.1:{ours_port}", "--cache-memory", "512MiB",
        ]  # fmt: skip
        with (
            _process(nginx_origin_command, directory / "origin.out"),
            _process(nginx_edge_command, directory / "nginx-edge.out") as nginx_edge,
            _process(our_edge_command, directory / "our-edge.out") as our_edge,
        ):

            def nginx_pids() -> list[int]:
                return [nginx_edge.pid, *_children(nginx_edge.pid)]

            def our_pids() -> list[int]:
                return [our_edge.pid]

            servers = {"nginx": (nginx_port, nginx_pids), "seedcast": (ours_port, our_pids)}
            for name in objects.values():
                for label, (port, _) in servers.items():
                    url = f"http://127.0.0.1:{port}/{name}"
                    _wait_http(url)
                    headers = _wait_http(url)
                    if headers.get("x-cache") != "HIT":
                        raise RuntimeError(f"{label} edge does not cache {name}: {headers}")
            for size, name in objects.items():
                runs: dict[str, list[LoadResult]] = {label: [] for label in servers}
                for _ in range(max(1, args.rounds)):
                    for label, (port, pids) in servers.items():
                        rps, mbps, p99, total, cpu = _wrk(
                            args, f"http://127.0.0.1:{port}/{name}", pids()
                        )
                        runs[label].append(LoadResult(label, size, rps, mbps, p99, total, cpu))
                for measured in runs.values():
                    measured.sort(key=lambda result: result.requests_per_second)
                    results.append(measured[len(measured) // 2])
    return results


# ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def _print_hits(results: list[LoadResult], connections: int) -> None:
    print(f"Cached hits, wrk -t1 -c{connections} (median round); ratio = seedcast / nginx")
    rows: list[list[str]] = []
    by_size: dict[int, dict[str, LoadResult]] = {}
    for result in results:
        by_size.setdefault(result.object_size, {})[result.server] = result
    for size, pair in by_size.items():
        label = "10 KiB" if size < MiB else "1 MiB"
        for server in ("nginx", "seedcast"):
            one = pair[server]
            rows.append(
                [
                    label,
                    server,
                    f"{one.requests_per_second:.0f}",
                    f"{one.megabytes_per_second:.1f}",
                    f"{one.p99_ms:.2f}",
                    f"{one.cpu_us_per_request:.1f}",
                    f"{one.cpu_ms_per_mib:.2f}",
                ]
            )
        ours, theirs = pair["seedcast"], pair["nginx"]
        rows.append(
            [
                label,
                "ratio",
                f"{ours.requests_per_second / theirs.requests_per_second:.2f}",
                f"{ours.megabytes_per_second / theirs.megabytes_per_second:.2f}",
                f"{ours.p99_ms / theirs.p99_ms:.2f}",
                f"{ours.cpu_us_per_request / theirs.cpu_us_per_request:.2f}",
                f"{ours.cpu_ms_per_mib / theirs.cpu_ms_per_mib:.2f}",
            ]
        )
    _table(["object", "server", "req/s", "MB/s", "p99 ms", "CPU us/req", "CPU ms/MiB"], rows)


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    output: dict[str, Any] = {}
    policies = compare_policies(args.catalogue, args.zipf_requests, args.zipf_alpha)
    output["eviction"] = [dataclasses.asdict(result) for result in policies]
    print(
        f"Eviction: Zipf(alpha={args.zipf_alpha}) trace of {args.zipf_requests} requests over "
        f"{args.catalogue} objects, cache = 1/10 of the catalogue's bytes"
    )
    rows = [
        [result.sizes, result.policy, f"{result.hit_ratio:.4f}", f"{result.byte_hit_ratio:.4f}"]
        for result in policies
    ]
    for sizes in ("equal", "mixed"):
        pair = {result.policy: result for result in policies if result.sizes == sizes}
        new, old = pair["s3-fifo"], pair["lru"]
        rows.append(
            [
                sizes,
                "s3-fifo/lru",
                f"{new.hit_ratio / old.hit_ratio:.3f}",
                f"{new.byte_hit_ratio / old.byte_hit_ratio:.3f}",
            ]
        )
    _table(["sizes", "policy", "hit ratio", "byte hit ratio"], rows)
    print()
    prefetch = measure_prefetch(config)
    output["prefetch"] = [dataclasses.asdict(result) for result in prefetch]
    off, on = prefetch
    print(
        "Prefetch of segment N+1: a player fetching 20 consecutive 256 KiB segments, 100 ms apart,"
        " origin delay 50 ms; time per segment as the player sees it"
    )
    _table(
        ["prefetch", "ms/segment", "upstream requests", "prefetch hits"],
        [
            [
                "on" if result.prefetch else "off",
                f"{result.mean_seconds * 1e3:.1f}",
                str(result.upstream_requests),
                str(result.prefetch_hits),
            ]
            for result in prefetch
        ]
        + [["on/off", f"{on.mean_seconds / off.mean_seconds:.2f}", "", ""]],
    )
    print()
    if args.skip_http:
        print("Cached hits vs nginx: skipped (--skip-http)")
    elif shutil.which("wrk") is None or shutil.which("nginx") is None:
        print("Cached hits vs nginx: skipped (wrk or nginx not installed)")
    else:
        hits = measure_hits(args, config)
        output["hits"] = [
            dict(dataclasses.asdict(result), cpu_us_per_request=result.cpu_us_per_request,
                 cpu_ms_per_mib=result.cpu_ms_per_mib)
            for result in hits
        ]  # fmt: skip
        _print_hits(hits, args.connections)
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=2))
    return 0
