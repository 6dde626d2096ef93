"""``seedcast bench netem``: how exactly the emulated paths give the configured delay and loss.

Three measurements, each bounded (a few seconds):

- **curl over the TUN wire** (root): two namespaces joined by
  :class:`~seedcast.netem.wire.Wire` with ``--rtt`` ms of RTT; ``curl -w
  %{time_connect}`` measured ``--runs`` times, beside the same wire at 0 ms
  (the baseline: what the wire itself costs), and the ratio to the target.
- **curl through a TCP relay** (loopback, no root): the relay cannot delay the
  handshake, so the figure is a reused connection's time to first byte (one
  RTT) and a fresh one's (two RTT), against a direct connection (baseline).
- **UDP loss**: ``--datagrams`` datagrams through a UDP relay (and the wire)
  with ``--loss`` loss: the measured fraction and its error.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio
from seedcast.config import ClusterConfig, RegionConfig
from seedcast.netem.paths import PathProfile, Topology
from seedcast.netem.relay import TcpRelay, UdpRelay

CLIENT = "127.0.41.1"
_SERVER = """
import http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Quiet)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rtt", type=float, default=100.0, help="RTT in ms (default 100)")
    parser.add_argument("--loss", type=float, default=0.01, help="UDP loss fraction (0.01)")
    parser.add_argument("--runs", type=int, default=20, help="curl runs per figure (20)")
    parser.add_argument("--datagrams", type=int, default=10_000, help="UDP datagrams (10^4)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    import json

    results: dict[str, Any] = {"rtt_ms": args.rtt, "loss": args.loss}
    results["relay"] = trio.run(_relay_figures, args)
    if os.geteuid() == 0 and Path("/dev/net/tun").exists():
        results["wire"] = _wire_figures(args)
    else:
        results["wire"] = {"skipped": "needs root and /dev/net/tun"}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    _print(results)
    return 0


def _print(results: dict[str, Any]) -> None:
    rtt = results["rtt_ms"]
    wire = results["wire"]
    print(f"target RTT {rtt:g} ms, UDP loss {results['loss']:.2%}")
    if "skipped" in wire:
        print(f"  TUN wire: skipped ({wire['skipped']})")
    else:
        print(
            f"  curl time_connect over the TUN wire: median {wire['connect_ms']:.1f} ms "
            f"(baseline 0 ms path: {wire['baseline_connect_ms']:.2f} ms) -> "
            f"{wire['connect_ms'] / rtt:.3f} x target ({wire['error']:+.1%})"
        )
        print(
            f"  UDP over the wire: {wire['udp_lost']}/{wire['udp_sent']} lost = "
            f"{wire['udp_loss']:.3%} (target {results['loss']:.2%})"
        )
    relay = results["relay"]
    print(
        f"  curl through the TCP relay, reused connection, time to first byte: median "
        f"{relay['reused_ms']:.1f} ms (baseline direct: {relay['baseline_reused_ms']:.2f} ms) -> "
        f"{relay['reused_ms'] / rtt:.3f} x target ({relay['reused_error']:+.1%})"
    )
    print(
        f"  curl through the TCP relay, fresh connection, time to first byte: median "
        f"{relay['fresh_ms']:.1f} ms -> {relay['fresh_ms'] / (2 * rtt):.3f} x 2 RTT; "
        f"time_connect {relay['fresh_connect_ms']:.2f} ms (a relay cannot delay a handshake)"
    )
    print(
        f"  UDP through the relay: {relay['udp_lost']}/{relay['udp_sent']} lost = "
        f"{relay['udp_loss']:.3%} (target {results['loss']:.2%})"
    )


def _topology(one_way_ms: float, loss: float = 0.0) -> Topology:
    return Topology(
        [
            RegionConfig(
                name="eu",
                viewer_prefix="127.0.41.0/24",
                last_mile_ms=one_way_ms,
                last_mile_loss=loss,
            )
        ]
    )


async def _curl(
    urls: list[str], *, options: tuple[str, ...] = (), prefix: tuple[str, ...] = ()
) -> list[dict[str, float]]:
    """curl's timings (seconds) per transfer of one invocation (one connection, reused)."""
    form = "%{time_connect} %{time_starttransfer}\\n"
    argv = [*prefix, "curl", "-s", "-w", form, *options]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    completed = await trio.run_process(argv, capture_stdout=True, check=True)
    rows = []
    for line in completed.stdout.decode().splitlines():
        connect, first = (float(value) for value in line.split())
        rows.append({"connect": connect, "first": first})
    return rows


async def _relay_figures(args: argparse.Namespace) -> dict[str, Any]:
    one_way = args.rtt / 2
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "x").write_bytes(b"x")
        server = await trio.lowlevel.open_process(
            [sys.executable, "-c", _SERVER, "127.0.0.1", "0"], cwd=folder, stdout=subprocess.PIPE
        )
        try:
            port = await _server_port(server)
            async with trio.open_nursery() as nursery:
                relay = TcpRelay(
                    "127.0.0.1:0", f"127.0.0.1:{port}", _topology(one_way), target_region="eu"
                )
                bound = await nursery.start(relay.serve)
                url = f"http://{bound}/x"
                direct = f"http://127.0.0.1:{port}/x"
                local = ("--interface", CLIENT)
                reused, fresh, fresh_connect, baseline = [], [], [], []
                for _ in range(args.runs):
                    rows = await _curl([url, url], options=local)
                    fresh.append(rows[0]["first"])
                    fresh_connect.append(rows[0]["connect"])
                    reused.append(rows[1]["first"])
                    baseline.append((await _curl([direct, direct], options=local))[1]["first"])
                udp = await _udp_loss(nursery, args)
                nursery.cancel_scope.cancel()
        finally:
            server.kill()
            await server.wait()
    reused_ms = statistics.median(reused) * 1000
    return {
        "reused_ms": reused_ms,
        "reused_error": reused_ms / args.rtt - 1,
        "baseline_reused_ms": statistics.median(baseline) * 1000,
        "fresh_ms": statistics.median(fresh) * 1000,
        "fresh_connect_ms": statistics.median(fresh_connect) * 1000,
        **udp,
    }


async def _server_port(server: trio.Process) -> int:
    assert server.stdout is not None
    line = await server.stdout.receive_some(100)
    if not line.startswith(b"ready"):
        raise RuntimeError("the test HTTP server did not start")
    return int(line.split()[1])


async def _udp_loss(nursery: trio.Nursery, args: argparse.Namespace) -> dict[str, Any]:
    target = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await target.bind(("127.0.0.1", 0))
    relay = UdpRelay(
        "127.0.0.1:0",
        f"127.0.0.1:{target.getsockname()[1]}",
        _topology(1.0, args.loss),
        target_region="eu",
        rng=random.Random(),
    )
    bound = await nursery.start(relay.serve)
    host, port = bound.rsplit(":", 1)
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await client.bind((CLIENT, 0))
    received = 0
    arrived = trio.Event()
    with target, client:
        async with trio.open_nursery() as inner:

            async def receive() -> None:
                nonlocal received, arrived
                while True:
                    await target.recv(100)
                    received += 1
                    arrived.set()
                    arrived = trio.Event()

            inner.start_soon(receive)
            for index in range(args.datagrams):
                await client.sendto(b"%d" % index, (host, int(port)))
                if index % 100 == 99:
                    await trio.sleep(0.002)  # pacing: stay below the socket buffers
            with trio.move_on_after(1.0):  # the stragglers (a kernel drop never arrives)
                while received + relay.statistics.datagrams_lost < args.datagrams:
                    await arrived.wait()
            inner.cancel_scope.cancel()
    lost = args.datagrams - received
    return {"udp_sent": args.datagrams, "udp_lost": lost, "udp_loss": lost / args.datagrams}


def _wire_figures(args: argparse.Namespace) -> dict[str, Any]:
    from seedcast.netem.wire import Wire, WireNode

    suffix = os.getpid() % 10000
    nodes = [WireNode(f"scbn{suffix}-a", "10.79.0.1"), WireNode(f"scbn{suffix}-b", "10.79.0.2")]
    profile = {"now": PathProfile(args.rtt / 2000)}

    def path(source: WireNode, destination: WireNode) -> PathProfile:
        return profile["now"]

    async def main(wire: Wire) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "x").write_bytes(b"x")
            async with trio.open_nursery() as nursery:
                await nursery.start(wire.run)
                server = await trio.lowlevel.open_process(
                    wire.exec_argv(
                        nodes[1].name, [sys.executable, "-c", _SERVER, "10.79.0.2", "8000"]
                    ),
                    cwd=folder,
                    stdout=subprocess.PIPE,
                )
                try:
                    assert server.stdout is not None
                    await server.stdout.receive_some(100)
                    inside = tuple(wire.exec_argv(nodes[0].name, []))
                    url = f"http://{nodes[1].address}:8000/x"
                    connects = [
                        (await _curl([url], prefix=inside))[0]["connect"] for _ in range(args.runs)
                    ]
                    profile["now"] = PathProfile()
                    baseline = [
                        (await _curl([url], prefix=inside))[0]["connect"] for _ in range(args.runs)
                    ]
                    profile["now"] = PathProfile(0.0005, loss=args.loss)
                    udp = await _wire_udp(wire, nodes, args)
                finally:
                    server.kill()
                    await server.wait()
                nursery.cancel_scope.cancel()
        connect_ms = statistics.median(connects) * 1000
        return {
            "connect_ms": connect_ms,
            "error": connect_ms / args.rtt - 1,
            "baseline_connect_ms": statistics.median(baseline) * 1000,
            **udp,
        }

    with Wire(nodes, "10.79.0.0/24", path) as wire:
        return trio.run(main, wire)


_UDP_SINK = """
import socket, sys
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sink.bind((sys.argv[1], 9000))
sink.settimeout(2.0)
print("ready", flush=True)
count = 0
try:
    while True:
        data = sink.recv(100)
        if data == b"end":
            break
        count += 1
except socket.timeout:
    pass
print(count, flush=True)
"""

_UDP_SOURCE = """
import socket, sys, time
source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for index in range(int(sys.argv[2])):
    source.sendto(b"%d" % index, (sys.argv[1], 9000))
    if index % 100 == 99:
        time.sleep(0.002)
time.sleep(0.2)
for _ in range(5):
    source.sendto(b"end", (sys.argv[1], 9000))
"""


async def _wire_udp(wire: Any, nodes: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    sink = await trio.lowlevel.open_process(
        wire.exec_argv(nodes[1].name, [sys.executable, "-c", _UDP_SINK, nodes[1].address]),
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None
    await sink.stdout.receive_some(100)
    await trio.run_process(
        wire.exec_argv(
            nodes[0].name,
            [sys.executable, "-c", _UDP_SOURCE, nodes[1].address, str(args.datagrams)],
        )
    )
    output = b""
    while not output.endswith(b"\n"):
        chunk = await sink.stdout.receive_some(100)
        if not chunk:
            break
        output += chunk
    await sink.wait()
    received = int(output.split()[-1])
    lost = args.datagrams - received
    return {"udp_sent": args.datagrams, "udp_lost": lost, "udp_loss": lost / args.datagrams}
