"""``seedcast bench origin``: the origin against nginx, and publish against raw ffmpeg.

Serving. A library with one video of 1 MiB segments and a 2 KiB MPD is served
by our origin (a ``seedcast origin`` process) and by nginx (Debian, one
worker, ``sendfile on``, access log off) from the same folder, both pinned to
CPU 0; ``wrk`` (pinned to CPU 1, 64 keep-alive connections) loads each in
turn, in the same run. For each we report req/s, MB/s, p99 latency and the
server's CPU time (utime + stime from /proc, all its processes) per request
and per MiB sent. Goals: CPU per MiB on segments <= 1.3x nginx; manifest
req/s >= 0.5x nginx. Since req/s on a shared machine mostly measures who gets
the CPU, the manifest is also compared per core of CPU (1 / CPU per request),
and a third server, the shared HTTP core with a constant handler
(``http11-bare``), shows how much of the cost is the core and how much the origin.

Publishing. The 30 s sample (``seedcast sample``) is published with
``seedcast publish`` and, separately, the exact ffmpeg command the publish
runs is timed alone; runs alternate, the best of each is kept. Goal: our
wall time <= 1.1x the raw command. Also: seconds per minute of video.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import NotReadyError, UsageError
from seedcast.origin.library import Library
from seedcast.testing.origin import (
    SYNTHETIC_VERSION,
    OriginProcess,
    make_sample,
    seedcast_command,
    write_synthetic_video,
)
from seedcast.units import MiB

CONNECTIONS = 64
SEGMENTS = 8
MANIFEST_SIZE = 2048


@dataclass(frozen=True, slots=True)
class LoadResult:
    scenario: str
    server: str
    requests: int
    seconds: float
    requests_per_s: float
    bytes_read: float
    p99_ms: float
    cpu_seconds: float
    errors: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / self.seconds / 1e6

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1e6

    @property
    def cpu_ms_per_mib(self) -> float:
        return self.cpu_seconds / max(1e-9, self.bytes_read / MiB) * 1e3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk run length (default 10)")
    parser.add_argument(
        "--connections", type=int, default=CONNECTIONS, help="wrk connections (default 64)"
    )
    parser.add_argument(
        "--publish-runs", type=int, default=2, help="runs of each publish variant (default 2)"
    )
    parser.add_argument("--skip-serving", action="store_true", help="only time publishing")
    parser.add_argument("--skip-publish", action="store_true", help="only measure serving")
    parser.add_argument("--out", metavar="DIR", help="also write results.json here")
    parser.add_argument(
        "--ffmpeg", metavar="PATH", help="ffmpeg binary (default: imageio-ffmpeg's)"
    )


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seedcast-bench-origin-") as scratch:
        work = Path(scratch)
        os.chmod(work, 0o755)
        if not args.skip_serving:
            serving = bench_serving(work, seconds=args.seconds, connections=args.connections)
            results["serving"] = [asdict(result) | _derived(result) for result in serving]
            print_serving(serving)
        if not args.skip_publish:
            publish = bench_publish(
                work, config, runs=args.publish_runs, ffmpeg_override=args.ffmpeg
            )
            results["publish"] = publish
            print_publish(publish)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "origin-bench.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {out / 'origin-bench.json'}")
    return 0


def _derived(result: LoadResult) -> dict[str, float]:
    return {
        "mb_per_s": result.mb_per_s,
        "cpu_us_per_request": result.cpu_us_per_request,
        "cpu_ms_per_mib": result.cpu_ms_per_mib,
    }


# --- serving ------------------------------------------------------------------------------


def _need(binary: str, why: str) -> str:
    found = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if found is None:
        raise NotReadyError(f"bench origin needs {binary} ({why}); apt-get install {binary}")
    return found


def _library(work: Path) -> tuple[Path, list[str], str]:
    """A library with one video: 1 MiB segments and a 2 KiB manifest. Returns (data dir, segment
    paths, manifest path)."""

    data_dir = work / "data"
    library = Library(data_dir / "library")
    write_synthetic_video(library, "movie", segment_size=MiB)
    folder = library.root / "movie"
    manifest = (folder / "manifest.mpd").read_bytes()
    padding = MANIFEST_SIZE - len(manifest) - len(b"<!--  -->\n")
    (folder / "manifest.mpd").write_bytes(manifest + b"<!-- " + b"x" * max(0, padding) + b" -->\n")
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    segments = [
        f"/movie/chunk-{SYNTHETIC_VERSION}-{rep}-{number:05d}.m4s"
        for rep in ("0", "1")
        for number in (1, 2, 3)
    ]
    return data_dir, segments, "/movie/manifest.mpd"


def _cpu_seconds(pids: Sequence[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_http(port: int, path: str, timeout: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise NotReadyError(f"server on port {port} did not answer {path}")
        time.sleep(0.05)


@contextlib.contextmanager
def _nginx(root: Path, work: Path) -> Iterator[tuple[int, list[int]]]:
    binary = _need("nginx", "the baseline")
    port = _free_port()
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 60;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/dash+xml mpd; video/mp4 m4s; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            add_header Cache-Control "public, max-age=31536000, immutable";
            add_header Access-Control-Allow-Origin "*";
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        ["taskset", "-c", "0", binary, "-p", str(prefix), "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_http(port, "/movie/manifest.mpd")
        yield port, [process.pid, *_children(process.pid)]
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def _origin(data_dir: Path) -> Iterator[tuple[int, list[int]]]:
    with OriginProcess(
        data_dir, name="origin-bench", command_prefix=["taskset", "-c", "0"]
    ) as origin:
        assert origin.process is not None
        yield origin.port, [origin.process.pid]


_BARE_SERVER = """
import sys, trio
from seedcast.http11 import Headers, HttpServer, Response
HEADERS = Headers([("Content-Type", "application/dash+xml")])
BODY = b"x" * 2048
async def handler(request):
    return Response(200, HEADERS, BODY)
async def main():
    server = HttpServer(handler)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve, ["127.0.0.1:0"])
        print(bound[0][1], flush=True)
trio.run(main)
"""


@contextlib.contextmanager
def _bare_core(work: Path) -> Iterator[tuple[int, list[int]]]:
    """The shared HTTP core with a constant handler: what any handler starts from."""
    process = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", _BARE_SERVER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, [process.pid]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _parse_wrk(output: str, scenario: str, server: str, cpu: float) -> LoadResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    if total is None or p99 is None:
        raise NotReadyError(f"could not read wrk's output: {output[-300:]!r}")
    seconds = float(total.group(2)) * _UNITS[total.group(3)] / 1000
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    error_count = int(errors.group(1)) if errors else 0
    if socket_errors:
        error_count += sum(int(value) for value in socket_errors.groups())
    requests = int(total.group(1))
    return LoadResult(
        scenario=scenario,
        server=server,
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds,
        bytes_read=float(total.group(4)) * _SIZES[total.group(5)],
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
        cpu_seconds=cpu,
        errors=error_count,
    )


def _wrk(
    port: int,
    paths: Sequence[str],
    pids: Sequence[int],
    *,
    seconds: float,
    connections: int,
    work: Path,
    scenario: str,
    server: str,
) -> LoadResult:
    wrk = _need("wrk", "the load generator")
    script = work / f"paths-{scenario}.lua"
    listed = ", ".join(json.dumps(path) for path in paths)
    script.write_text(
        f"local paths = {{{listed}}}\nlocal i = 0\n"
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
    )
    command = [
        "taskset",
        "-c",
        "1",
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
    ]
    # A short warm-up (page cache, connection setup), not measured.
    subprocess.run(
        [*command[:5], "-d1s", *command[6:]], capture_output=True, timeout=60, check=False
    )
    before = _cpu_seconds(pids)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    cpu = _cpu_seconds(pids) - before
    if result.returncode != 0:
        raise NotReadyError(f"wrk failed: {result.stderr.strip()[-300:]}")
    return _parse_wrk(result.stdout, scenario, server, cpu)


def bench_serving(work: Path, *, seconds: float, connections: int) -> list[LoadResult]:
    if (os.cpu_count() or 1) < 2:
        raise UsageError("bench origin pins the server and wrk to different cores: needs 2 CPUs")
    data_dir, segments, manifest = _library(work)
    results = []
    scenarios = [("segments-1MiB", segments), ("manifest-2KiB", [manifest])]
    for server in ("seedcast", "nginx", "http11-bare"):
        if server == "seedcast":
            context = _origin(data_dir)
        elif server == "nginx":
            context = _nginx(data_dir / "library", work)
        else:
            context = _bare_core(work)
        with context as (port, pids):
            for scenario, paths in scenarios:
                if server == "http11-bare" and scenario != "manifest-2KiB":
                    continue
                results.append(
                    _wrk(
                        port,
                        paths,
                        pids,
                        seconds=seconds,
                        connections=connections,
                        work=work,
                        scenario=scenario,
                        server=server,
                    )
                )
    return results


def print_serving(results: Sequence[LoadResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"origin vs nginx (1 worker, sendfile), wrk -c{CONNECTIONS} pinned to CPU 1"
    )
    for column in (
        "scenario",
        "server",
        "req/s",
        "MB/s",
        "p99 ms",
        "CPU µs/req",
        "CPU ms/MiB",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("scenario", "server") else "right")
    for result in results:
        table.add_row(
            result.scenario,
            result.server,
            f"{result.requests_per_s:,.0f}",
            f"{result.mb_per_s:,.0f}",
            f"{result.p99_ms:.2f}",
            f"{result.cpu_us_per_request:.1f}",
            f"{result.cpu_ms_per_mib:.2f}",
            str(result.errors),
        )
    console = Console(width=max(110, Console().width))
    console.print(table)
    by = {(result.scenario, result.server): result for result in results}
    segments = (by.get(("segments-1MiB", "seedcast")), by.get(("segments-1MiB", "nginx")))
    manifest = (by.get(("manifest-2KiB", "seedcast")), by.get(("manifest-2KiB", "nginx")))
    if segments[0] and segments[1]:
        ratio = segments[0].cpu_ms_per_mib / max(1e-9, segments[1].cpu_ms_per_mib)
        verdict = "ok" if ratio <= 1.3 else "over goal"
        print(
            f"segments: CPU per MiB {ratio:.2f}x nginx (goal <= 1.3x: {verdict}); "
            f"throughput {segments[0].mb_per_s / max(1e-9, segments[1].mb_per_s):.2f}x nginx"
        )
    if manifest[0] and manifest[1]:
        ratio = manifest[0].requests_per_s / max(1e-9, manifest[1].requests_per_s)
        verdict = "ok" if ratio >= 0.5 else "under goal"
        capacity = manifest[1].cpu_us_per_request / max(1e-9, manifest[0].cpu_us_per_request)
        print(
            f"manifest: req/s {ratio:.2f}x nginx (goal >= 0.5x: {verdict}); per core of CPU "
            f"(1 / CPU per request) {capacity:.2f}x nginx"
        )
    bare = by.get(("manifest-2KiB", "http11-bare"))
    if bare and manifest[0]:
        print(
            f"  the shared HTTP core alone (constant 2 KiB response) costs "
            f"{bare.cpu_us_per_request:.1f} µs/request; the origin adds "
            f"{manifest[0].cpu_us_per_request - bare.cpu_us_per_request:.1f} µs"
        )


# --- publishing ---------------------------------------------------------------------------


def bench_publish(
    work: Path, config: ClusterConfig, *, runs: int, ffmpeg_override: str | None
) -> dict[str, Any]:
    # ffmpeg-python (+26 ms) loads only for this mode's run: `seedcast bench` imports
    # every mode module for its --help (see seedcast.bench.commands).
    from seedcast.origin.encoder import find_ffmpeg, probe_file
    from seedcast.origin.ladder import build_command, parse_bitrate, parse_ladder, plan_encode

    ffmpeg = find_ffmpeg(ffmpeg_override, config.origin.ffmpeg)
    seconds = config.origin.sample_seconds
    sample = make_sample(work / "sample.mp4", seconds=seconds, size="1280x720")
    info = probe_file(ffmpeg, sample)
    plan = plan_encode(
        info,
        parse_ladder(config.origin.ladder),
        segment_seconds=config.origin.segment_seconds,
        audio_bitrate_kbps=parse_bitrate(config.origin.audio_bitrate),
    )
    raw_times: list[float] = []
    ours_times: list[float] = []
    overheads: list[float] = []
    phases: list[dict[str, float]] = []
    for number in range(max(1, runs)):
        raw_dir = work / f"raw-{number}"
        raw_dir.mkdir()
        command = build_command(plan, sample, raw_dir, ffmpeg_binary=ffmpeg, version="bench")
        started = time.perf_counter()
        subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600
        )
        raw_times.append(time.perf_counter() - started)
        shutil.rmtree(raw_dir)
        data_dir = work / f"publish-{number}"
        extra = ["--ffmpeg", ffmpeg] if ffmpeg_override else []
        started = time.perf_counter()
        result = subprocess.run(
            seedcast_command(
                "publish", str(sample), "--id", "sample", "--timings", *extra, data_dir=data_dir
            ),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        ours_times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise NotReadyError(f"seedcast publish failed: {result.stderr.strip()}")
        match = re.search(r"^timings (\{.*\})$", result.stdout, re.M)
        if match:
            phase = json.loads(match.group(1))
            phases.append(phase)
            overheads.append(ours_times[-1] - phase.get("encode", 0.0))
        shutil.rmtree(data_dir)
    raw, ours = min(raw_times), min(ours_times)
    overhead = min(overheads) if overheads else ours - raw
    return {
        "overhead_seconds": overheads,
        "phases": phases,
        "ratio_from_overhead": (raw + overhead) / raw,
        "video_seconds": seconds,
        "renditions": [f"{r.name} {r.bitrate_kbps}k" for r in plan.renditions],
        "raw_ffmpeg_seconds": raw_times,
        "seedcast_publish_seconds": ours_times,
        "ratio": ours / raw,
        "seconds_per_minute_raw": raw / seconds * 60,
        "seconds_per_minute_publish": ours / seconds * 60,
    }


def print_publish(result: dict[str, Any]) -> None:
    raw = min(result["raw_ffmpeg_seconds"])
    ours = min(result["seedcast_publish_seconds"])
    verdict = "ok" if result["ratio"] <= 1.1 else "over goal"
    print(
        f"publish {result['video_seconds']:g} s sample ({', '.join(result['renditions'])} + AAC): "
        f"seedcast publish {ours:.2f} s vs raw ffmpeg {raw:.2f} s = {result['ratio']:.3f}x "
        f"(goal <= 1.1x: {verdict}); {result['seconds_per_minute_publish']:.1f} s per minute of "
        f"video ({result['seconds_per_minute_raw']:.1f} s raw)"
    )
    if result["overhead_seconds"]:
        overhead = min(result["overhead_seconds"])
        print(
            f"  time outside ffmpeg (startup, probe, checks, torrent, commit): {overhead:.2f} s "
            f"-> {result['ratio_from_overhead']:.3f}x the raw command "
            f"(wall-clock ratios swing with other load on the machine)"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: seedcast bench origin")
