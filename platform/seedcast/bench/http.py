"""``seedcast bench http``: our HTTP/1.1 server against nginx and aiohttp, load from wrk.

Each server runs as its own process pinned to one core (``taskset``), wrk on
the other, all on loopback. Every server answers GET for a 1 KiB and a 1 MiB
file over keep-alive connections (nginx: Debian's, one worker, ``sendfile
on``; aiohttp: its static file handler; seedcast: :class:`FileBody`, i.e.
sendfile, and ``seedcast-mem``: the same bodies as bytes in memory). We
report wrk's req/s, MB/s and p99 latency, and the server's CPU seconds per
request read from ``/proc/<pid>/stat`` (utime + stime of the server and its
children) before and after the run; for 1 MiB bodies, where every server hits
wrk's limit, CPU per MiB is the figure to compare. Ratios are against nginx
and aiohttp measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import NotReadyError, UsageError
from seedcast.units import KiB, MiB, parse_duration

SIZES = {"1k": 1 * KiB, "1m": 1 * MiB}
SERVERS = ("seedcast", "seedcast-mem", "nginx", "aiohttp")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Result:
    server: str
    size: str
    requests: int
    req_per_s: float
    mb_per_s: float
    p99_ms: float
    errors: int
    cpu_seconds: float
    cpu_us_per_request: float
    cpu_ms_per_mib: float


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", default="10s", help="length of each measured wrk run (default 10s)"
    )
    parser.add_argument("--warmup", default="1s", help="unmeasured wrk run before each (1s)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (64)")
    parser.add_argument(
        "--sizes", default="1k,1m", help="bodies to fetch: 1k, 1m or both (default 1k,1m)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"servers to measure (default {','.join(SERVERS)})",
    )
    parser.add_argument("--server-core", type=int, default=0, help="core for servers (0)")
    parser.add_argument("--load-core", type=int, default=1, help="core for wrk (1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over all servers; each figure is the round with the best req/s (1)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    sizes = _choices(args.sizes, SIZES, "--sizes")
    servers = _choices(args.servers, SERVERS, "--servers")
    duration = parse_duration(args.duration)
    warmup = parse_duration(args.warmup)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise NotReadyError(f"bench http needs {tool} (Debian: apt-get install {tool})")
    if "nginx" in servers and _nginx_binary() is None:
        print("nginx not found (apt-get install nginx): measuring without it")
        servers = [server for server in servers if server != "nginx"]
    rounds = max(1, args.repeat)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="seedcast-bench-http-") as temporary:
        root = Path(temporary)
        root.chmod(0o755)  # nginx's worker runs as nobody
        content = root / "html"
        content.mkdir(mode=0o755)
        for name, length in SIZES.items():
            (content / name).write_bytes(os.urandom(length))
            (content / name).chmod(0o644)
        total = rounds * len(servers) * len(sizes)
        done = 0
        for _ in range(rounds):  # servers interleaved, so a noisy minute hits them all
            for server in servers:
                with _running(server, root, args.server_core) as (pid, port):
                    for size in sizes:
                        done += 1
                        print(
                            f"[{done}/{total}] {server} GET /{size}: "
                            f"{args.connections} connections, {duration:g} s",
                            flush=True,
                        )
                        url = f"http://127.0.0.1:{port}/{size}"
                        if warmup > 0:
                            _wrk(url, warmup, args.connections, args.load_core)
                        results.append(
                            _measure(
                                server, size, pid, url, duration, args.connections, args.load_core
                            )
                        )
    best = best_rounds(results)
    print()
    print(format_table(best))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "best": [asdict(result) for result in best],
                    "all": [asdict(result) for result in results],
                },
                indent=2,
            )
        )
    return 0


def best_rounds(results: list[Result]) -> list[Result]:
    """Per (server, size), the round with the highest req/s, in first-seen order."""
    best: dict[tuple[str, str], Result] = {}
    for result in results:
        key = (result.server, result.size)
        if key not in best or result.req_per_s > best[key].req_per_s:
            best[key] = result
    return list(best.values())


def _choices(text: str, known: Any, option: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in known]
    if unknown or not chosen:
        raise UsageError(
            f"{option}: unknown {', '.join(unknown) or 'nothing'} (known: {', '.join(known)})"
        )
    return chosen


# -- measuring -------------------------------------------------------------------------


def _measure(
    server: str, size: str, pid: int, url: str, duration: float, connections: int, core: int
) -> Result:
    before = _cpu_seconds(pid)
    output = _wrk(url, duration, connections, core)
    after = _cpu_seconds(pid)
    parsed = parse_wrk(output)
    requests = max(1, parsed["requests"])
    cpu = after - before
    mib = requests * SIZES[size] / MiB
    return Result(
        server=server,
        size=size,
        requests=parsed["requests"],
        req_per_s=parsed["req_per_s"],
        mb_per_s=parsed["mb_per_s"],
        p99_ms=parsed["p99_ms"],
        errors=parsed["errors"],
        cpu_seconds=cpu,
        cpu_us_per_request=cpu / requests * 1e6,
        cpu_ms_per_mib=cpu / mib * 1e3,
    )


def _wrk(url: str, duration: float, connections: int, core: int) -> str:
    seconds = max(1, round(duration))
    command = [
        "taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--latency", "--timeout", "10s", url,
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if completed.returncode != 0:
        raise NotReadyError(f"wrk failed on {url}: {completed.stderr.strip() or completed.stdout}")
    return completed.stdout


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": KiB, "MB": MiB, "GB": 1024 * MiB, "TB": 1024 * 1024 * MiB}


def parse_wrk(output: str) -> dict[str, Any]:
    """req/s, MB/s (10^6 bytes), p99 (ms), request and error counts from wrk --latency."""
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\b", output, re.MULTILINE)
    errors = sum(
        int(number)
        for number in re.findall(
            r"(?:connect|read|write|timeout) (\d+)|Non-2xx or 3xx responses: (\d+)", output
        )
        for number in number
        if number
    )
    if not (requests and rate and transfer and p99):
        raise NotReadyError(f"cannot read wrk's output:\n{output}")
    return {
        "requests": int(requests.group(1)),
        "req_per_s": float(rate.group(1)),
        "mb_per_s": float(transfer.group(1)) * _BYTES[transfer.group(2)] / 1e6,
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "errors": errors,
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds."""
    total = 0
    for process in _family(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _CLOCK_TICKS


def _family(pid: int) -> list[int]:
    found = [pid]
    index = 0
    while index < len(found):
        for task in Path(f"/proc/{found[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.extend(int(child) for child in task.read_text().split())
        index += 1
    return found


# -- the servers ----------------------------------------------------------------------


def _nginx_binary() -> str | None:
    if Path("/usr/sbin/nginx").exists():
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command(server: str, root: Path, port: int) -> list[str]:
    if server == "nginx":
        conf = root / "nginx.conf"
        (root / "logs").mkdir(exist_ok=True)
        conf.write_text(
            f"""worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    types {{ application/octet-stream 1k 1m; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/html;
    }}
}}
"""
        )
        binary = _nginx_binary()
        assert binary is not None
        return [binary, "-c", str(conf), "-p", str(root)]
    mode = {"seedcast": "file", "seedcast-mem": "memory", "aiohttp": "aiohttp"}[server]
    return [sys.executable, "-m", "seedcast.bench.http", mode, str(root / "html"), str(port)]


@contextlib.contextmanager
def _running(server: str, root: Path, core: int) -> Iterator[tuple[int, int]]:
    """Start ``server`` pinned to ``core``; yield (pid, port); stop it by PID."""
    port = _free_port()
    command = ["taskset", "-c", str(core), *_command(server, root, port)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_listening(port, process, server)
        yield process.pid, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM if server != "nginx" else signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], server: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise NotReadyError(f"{server} exited at start: {errors.strip()[-500:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise NotReadyError(f"{server} did not listen on 127.0.0.1:{port} within 15 s")


# -- the report -------------------------------------------------------------------------


def format_table(results: list[Result]) -> str:
    by_key = {(result.server, result.size): result for result in results}
    lines = [
        f"{'server':<13} {'body':>4} {'req/s':>9} {'MB/s':>8} {'p99 ms':>7} "
        f"{'CPU us/req':>10} {'CPU ms/MiB':>10} {'req/s vs nginx':>14} {'vs aiohttp':>10} "
        f"{'CPU vs nginx':>12} {'errors':>6}"
    ]
    for result in results:
        nginx = by_key.get(("nginx", result.size))
        aiohttp = by_key.get(("aiohttp", result.size))
        cpu = result.cpu_seconds / max(1, result.requests)
        nginx_cpu = nginx.cpu_seconds / max(1, nginx.requests) if nginx else None
        lines.append(
            f"{result.server:<13} {result.size:>4} {result.req_per_s:>9.0f} "
            f"{result.mb_per_s:>8.1f} {result.p99_ms:>7.2f} {result.cpu_us_per_request:>10.1f} "
            f"{result.cpu_ms_per_mib:>10.2f} "
            f"{_ratio(result.req_per_s, nginx.req_per_s if nginx else None):>14} "
            f"{_ratio(result.req_per_s, aiohttp.req_per_s if aiohttp else None):>10} "
            f"{_ratio(cpu, nginx_cpu):>12} "
            f"{result.errors:>6}"
        )
    lines.append(
        "each row: the round with the best req/s; "
        "ratios: req/s ours/baseline (higher is better); CPU per request ours/nginx (lower "
        "is better; for 1m this is CPU per MiB). Goals: >= 0.5x nginx req/s on 1k, "
        "<= 1.3x nginx CPU per MiB on 1m."
    )
    return "\n".join(lines)


def _ratio(ours: float, baseline: float | None) -> str:
    if not baseline:
        return "n/a"
    return f"{ours / baseline:.2f}x"


# -- the server processes (python -m seedcast.bench.http MODE ROOT PORT) ----------


def _serve_seedcast(root: Path, port: int, in_memory: bool) -> None:
    import trio
    from prometheus_client import CollectorRegistry

    # The HTTP core (+28 ms) loads in the server process only:
    # `seedcast bench` imports every mode module for its --help (see seedcast.bench.commands).
    from seedcast.http11 import FileBody, Headers, HttpServer, Request, Response, Router

    headers = Headers([("Content-Type", "application/octet-stream")])
    router = Router()
    for name in SIZES:
        path = root / name
        data = path.read_bytes()

        async def from_memory(request: Request, data: bytes = data) -> Response:
            return Response(200, headers, data)

        async def from_file(request: Request, path: Path = path) -> Response:
            return Response(200, headers, FileBody(path))

        router.add("GET", f"/{name}", from_memory if in_memory else from_file)
    server = HttpServer(router, registry=CollectorRegistry(), component="bench")

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve, [f"127.0.0.1:{port}"])
                async for _ in signals:
                    server.shutdown(1)
                    break

    trio.run(main)


def _serve_aiohttp(root: Path, port: int) -> None:
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", root)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 3 or arguments[0] not in ("file", "memory", "aiohttp"):
        print("usage: python -m seedcast.bench.http file|memory|aiohttp ROOT PORT")
        return 2
    mode, root, port = arguments[0], Path(arguments[1]), int(arguments[2])
    if mode == "aiohttp":
        _serve_aiohttp(root, port)
    else:
        _serve_seedcast(root, port, in_memory=mode == "memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
