"""``seedcast bench dns``: dnsperf against our nameserver, a dnspython responder and Knot.

Each server runs alone, pinned to one core (``taskset``), serving the same
zones: ours from a generated cluster.toml (health checks off, so every
configured edge is eligible); the baseline (``benchmarks/dns_baseline.py``,
dnspython parses and renders every query) and Knot (``knotd`` with a
generated config, one UDP worker, its own rundir in a temporary folder) from
master files where each steered name is written out as a static A record.
dnsperf runs pinned to the other core for ``--seconds`` with the same query
mix, in verbose mode so the p99 latency can be computed from every reply.

Before the load, our answers are checked for correctness: ID, the question
echoed in the case it was sent, and the ECS scope.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
from seedcast.config import ClusterConfig, to_toml
from seedcast.errors import NotReadyError, SeedcastError

BASELINE_SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "dns_baseline.py"
KNOTD = "/usr/sbin/knotd"
READY_TIMEOUT = 20.0

EXTRA_RECORDS = (
    "@ 300 IN MX 10 mail",
    "mail 300 IN A 127.0.10.25",
    '@ 300 IN TXT "v=seedcast; purpose=bench"',
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf run length per server")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c (sockets)")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for dnsperf")
    parser.add_argument("--no-knot", action="store_true", help="skip Knot")
    parser.add_argument("--no-baseline", action="store_true", help="skip the dnspython baseline")


@dataclass(frozen=True, slots=True)
class Result:
    server: str
    queries_per_second: float
    average_latency: float
    p99_latency: float
    completed: int
    lost: int
    note: str = ""


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        raise NotReadyError("bench dns: dnsperf is not installed (Debian: apt-get install dnsperf)")
    results: list[Result] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="seedcast-dns-bench-") as folder:
        work = Path(folder)
        bench_config = _bench_config(config)
        config_file = work / "cluster.toml"
        config_file.write_text(to_toml(bench_config), encoding="utf-8")
        zone_dir = work / "zones"
        zone_files = _write_zone_files(bench_config, zone_dir)
        queries = work / "queries.txt"
        queries.write_text(_query_mix(bench_config), encoding="utf-8")

        print(
            f"dnsperf {args.seconds:g}s per server, {args.clients} clients, "
            f"{args.outstanding} outstanding; server on cpu {args.server_cpu}, "
            f"dnsperf on cpu {args.client_cpu}"
        )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        print(f"load average before the runs: {load:.2f} on {os.cpu_count()} cores")
        address = _free_address("127.0.53.11")
        metrics = _free_address("127.0.53.11", tcp=True)
        ours = [
            sys.executable,
            "-m",
            "seedcast",
            "dns",
            "--config",
            str(config_file),
            "--listen",
            address,
            "--metrics-listen",
            metrics,
            "--no-health-checks",
        ]
        with _Server("seedcast", ours, args.server_cpu, address, work / "ours.log") as server:
            failures = _check_answers(server.host, server.port)
            print(f"seedcast: answer checks {'passed' if not failures else f'FAILED ({failures})'}")
            results.append(_dnsperf("seedcast", dnsperf, server, queries, args, work))

        if not args.no_baseline:
            if BASELINE_SCRIPT.exists():
                address = _free_address("127.0.53.12")
                command = [
                    sys.executable,
                    str(BASELINE_SCRIPT),
                    address,
                    *(str(path) for path in zone_files),
                ]
                with _Server(
                    "dnspython", command, args.server_cpu, address, work / "base.log"
                ) as server:
                    results.append(_dnsperf("dnspython", dnsperf, server, queries, args, work))
            else:
                print(f"dnspython baseline skipped: {BASELINE_SCRIPT} not found")

        if not args.no_knot:
            if os.path.exists(KNOTD):
                address = _free_address("127.0.53.13")
                knot_config = _knot_config(work, zone_dir, address, bench_config)
                command = [KNOTD, "-c", str(knot_config)]
                with _Server(
                    "knot", command, args.server_cpu, address, work / "knot.log"
                ) as server:
                    results.append(_dnsperf("knot", dnsperf, server, queries, args, work))
            else:
                print(f"Knot skipped: {KNOTD} not installed (Debian: apt-get install knot)")

    _report(results)
    return 1 if failures else 0


# ---------------------------------------------------------------------------
# Inputs


def _bench_config(config: ClusterConfig) -> ClusterConfig:
    base_dir = Path(config.source).parent if Path(config.source).is_file() else None
    zones = []
    for zone in config.dns.zones:
        file = zone.file
        if file and base_dir is not None and not Path(file).is_absolute():
            file = str((base_dir / file).resolve())
        records = zone.records
        if zone is config.dns.zones[0]:
            records = records + EXTRA_RECORDS
        zones.append(dataclasses.replace(zone, file=file, records=records))
    dns_config = dataclasses.replace(
        config.dns, zones=tuple(zones), health_interval=0.0, rate_limit=0.0
    )
    return dataclasses.replace(config, dns=dns_config)


def _write_zone_files(config: ClusterConfig, folder: Path) -> list[Path]:
    """Master files of our zones with each steered name as a static A record (first edge)."""
    # The nameserver (+39 ms) loads when the run starts:
    # `seedcast bench` imports every mode module for its --help (see seedcast.bench.commands).
    from seedcast.nameserver.answerer import Answerer

    folder.mkdir(parents=True, exist_ok=True)
    answerer = Answerer(config, rng=random.Random(1))
    first_edge = next(
        (edge.address for edge in answerer.steering.edges if edge.version == 4), "127.0.10.1"
    )
    paths = []
    for zone in answerer.zones.zones.values():
        text = zone.data.to_text(relativize=False, want_origin=True)
        assert isinstance(text, str)
        lines = [text.rstrip("\n")]
        for steered in config.dns.names:
            name = dns.name.from_text(steered.name)
            if name.is_subdomain(zone.apex):
                lines.append(f"{name.to_text()} {steered.ttl} IN A {first_edge}")
        path = folder / f"{zone.apex.to_text(omit_final_dot=True)}.zone"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _query_mix(config: ClusterConfig) -> str:
    first, second = (zone.origin for zone in config.dns.zones[:2])
    lines = [
        f"video.{second} A",
        f"video.{first} A",
        f"www.{first} A",
        f"{first} SOA",
        f"{first} MX",
        f"{first} TXT",
        f"{second} NS",
        f"nope.{second} A",
        f"www.{first} AAAA",
    ]
    lines += [f"movie{index}.video.{second} A" for index in range(1, 9)]
    return "\n".join(lines) + "\n"


def _free_address(host: str, *, tcp: bool = False) -> str:
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"{host}:{port}"


def _knot_config(work: Path, zone_dir: Path, address: str, config: ClusterConfig) -> Path:
    host, port = address.rsplit(":", 1)
    rundir = work / "knot" / "run"
    storage = work / "knot" / "db"
    rundir.mkdir(parents=True)
    storage.mkdir(parents=True)
    zones = "\n".join(f"  - domain: {zone.origin}" for zone in config.dns.zones)
    text = f"""server:
    rundir: "{rundir}"
    listen: {host}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: warning

database:
    storage: "{storage}"

template:
  - id: default
    storage: "{zone_dir}"
    file: "%s.zone"
    semantic-checks: off

zone:
{zones}
"""
    path = work / "knot" / "knot.conf"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Running servers and dnsperf


class _Server:
    """A server process pinned to a core; started on enter, stopped by PID on exit."""

    def __init__(self, label: str, command: list[str], cpu: int, address: str, log: Path) -> None:
        self.label = label
        self.command = _pinned(command, cpu)
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        query = dns.message.make_query("bench-probe.invalid", "A")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise SeedcastError(
                    f"bench dns: {self.label} exited at start: {' | '.join(output)}"
                )
            try:
                dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                return
            except (dns.exception.Timeout, OSError):
                continue
        raise SeedcastError(f"bench dns: {self.label} did not answer within {READY_TIMEOUT:g}s")

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.close()


def _pinned(command: list[str], cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return command
    return [taskset, "-c", str(cpu), *command]


_QPS = re.compile(r"Queries per second:\s+([0-9.]+)")
_AVERAGE = re.compile(r"Average Latency \(s\):\s+([0-9.]+)")
_COMPLETED = re.compile(r"Queries completed:\s+([0-9]+)")
_LOST = re.compile(r"Queries lost:\s+([0-9]+)")


def _dnsperf(
    label: str, dnsperf: str, server: _Server, queries: Path, args: argparse.Namespace, work: Path
) -> Result:
    output_path = work / f"dnsperf-{label}.txt"
    command = _pinned(
        [
            dnsperf,
            "-s",
            server.host,
            "-p",
            str(server.port),
            "-d",
            str(queries),
            "-l",
            f"{args.seconds:g}",
            "-c",
            str(args.clients),
            "-q",
            str(args.outstanding),
            "-v",
        ],
        args.client_cpu,
    )
    print(f"{label}: running dnsperf for {args.seconds:g}s ...", flush=True)
    with output_path.open("wb") as output:
        subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, timeout=args.seconds + 60, check=False
        )
    latencies: list[float] = []
    summary: list[str] = []
    with output_path.open("r", errors="replace") as lines:
        for line in lines:
            if line.startswith("> "):
                last = line.rsplit(" ", 1)[-1]
                try:
                    latencies.append(float(last))
                except ValueError:
                    continue  # "> T name A": timed out
            else:
                summary.append(line)
    text = "".join(summary)

    def number(pattern: re.Pattern[str]) -> float:
        match = pattern.search(text)
        return float(match.group(1)) if match else 0.0

    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return Result(
        server=label,
        queries_per_second=number(_QPS),
        average_latency=number(_AVERAGE),
        p99_latency=p99,
        completed=int(number(_COMPLETED)),
        lost=int(number(_LOST)),
    )


# ---------------------------------------------------------------------------
# Checking answers and reporting


def _check_answers(host: str, port: int) -> int:
    """Mixed-case and ECS queries, each answered twice (cache miss, then hit); returns failures."""
    failures = 0
    cases = [
        ("ViDeO.KingCDN.TEST", None),
        ("video.netcinema.test", None),
        ("VIDEO.NETCINEMA.TEST", None),
        ("Movie1.Video.KingCdn.Test", None),
        ("video.kingcdn.test", dns.edns.ECSOption("127.0.41.0", 24)),
        ("video.kingcdn.test", dns.edns.ECSOption("10.1.0.0", 16)),
        ("nope.KINGCDN.test", None),
    ]
    for _ in range(2):
        for name, option in cases:
            options: list[dns.edns.Option] = [option] if option is not None else []
            query = dns.message.make_query(name, "A", use_edns=0, options=options)
            try:
                response = dns.query.udp(query, host, port=port, timeout=2)
            except (dns.exception.DNSException, OSError):
                failures += 1
                continue
            same_case = response.question and response.question[0].name.to_text() == name + "."
            ecs_ok = option is None or any(
                isinstance(echo, dns.edns.ECSOption) and echo.srclen == option.srclen
                for echo in response.options
            )
            if not (query.is_response(response) and same_case and ecs_ok):
                failures += 1
    return failures


def _report(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    ours = next((result for result in results if result.server == "seedcast"), None)
    table = Table(title="seedcast bench dns")
    for column in ("server", "queries/s", "avg latency", "p99 latency", "lost", "seedcast / this"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for result in results:
        ratio = ""
        if ours is not None and result.queries_per_second > 0:
            ratio = f"{ours.queries_per_second / result.queries_per_second:.2f}x"
        table.add_row(
            result.server,
            f"{result.queries_per_second:,.0f}",
            f"{result.average_latency * 1000:.3f} ms",
            f"{result.p99_latency * 1000:.3f} ms",
            str(result.lost),
            ratio,
        )
    console = Console()
    console.print(table)
    if ours is None:
        return
    goals: dict[str, float] = {"dnspython": 3.0, "knot": 0.25}
    for result in results:
        if result.server in goals and result.queries_per_second > 0:
            factor = ours.queries_per_second / result.queries_per_second
            goal = goals[result.server]
            verdict = "met" if factor >= goal else "NOT met"
            console.print(
                f"seedcast / {result.server}: {factor:.2f}x (goal >= {goal:g}x: {verdict})"
            )
