"""The TUN wire between two namespaces: handshakes and datagrams wait their path's delay.

Needs root and /dev/net/tun (skipped otherwise, with the reason). Timings are
lower bounds with generous upper bounds; ``seedcast bench netem`` prints the
accuracy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from seedcast.netem.paths import PathProfile
from seedcast.netem.wire import Wire, WireNode

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/net/tun").exists() or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and iproute2 (Debian package iproute2)",
)

SERVER = """
import socket, sys
listener = socket.socket()
listener.bind((sys.argv[1], 7000))
listener.listen()
print("ready", flush=True)
connection, _ = listener.accept()
connection.sendall(connection.recv(10))
"""

CLIENT = """
import socket, sys, time
started = time.monotonic()
connection = socket.create_connection((sys.argv[1], 7000), timeout=10)
connected = time.monotonic()
connection.sendall(b"ping")
assert connection.recv(10) == b"ping"
print(connected - started, time.monotonic() - connected, flush=True)
"""


async def test_wire_delays_the_handshake_and_each_round_trip() -> None:
    suffix = os.getpid() % 10000
    nodes = [WireNode(f"sctw{suffix}-a", "10.78.0.1"), WireNode(f"sctw{suffix}-b", "10.78.0.2")]
    with Wire(nodes, "10.78.0.0/24", lambda source, destination: PathProfile(0.05)) as wire:
        async with trio.open_nursery() as nursery:
            await nursery.start(wire.run)
            server = await trio.lowlevel.open_process(
                wire.exec_argv(nodes[1].name, [sys.executable, "-c", SERVER, nodes[1].address]),
                stdout=subprocess.PIPE,
            )
            assert server.stdout is not None
            assert (await server.stdout.receive_some(100)).startswith(b"ready")
            client = await trio.run_process(
                wire.exec_argv(nodes[0].name, [sys.executable, "-c", CLIENT, nodes[1].address]),
                capture_stdout=True,
            )
            await server.wait()
            nursery.cancel_scope.cancel()
    connect, exchange = (float(value) for value in client.stdout.split())
    assert 0.099 <= connect < 5.0  # SYN and SYN-ACK each waited 50 ms
    assert 0.099 <= exchange < 5.0
    assert wire.packets >= 6
    listed = await trio.run_process(["ip", "netns", "list"], capture_stdout=True)
    assert nodes[0].name.encode() not in listed.stdout  # the namespaces are gone
