"""Shaped links for real (root): a bulk TCP transfer through a shaped veth runs at the rate.

:func:`seedcast.launcher.netns.open_network` builds three namespaces on a
bridge: ``up`` with an upload cap, ``down`` with a download cap, ``plain``
unshaped. A receiver inside one namespace measures the goodput of a bulk
transfer from another, from its first byte to the sender's EOF; it must be
within 10% of the configured payload rate. Then the caps change on the fly
(:meth:`Network.set_rates`) and hold again. Leaving the block removes every
namespace, link and qdisc, also when the block fails.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys

import pytest
from seedcast.launcher.netns import Network, NodeLink, leftovers, open_network

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("netns_ready")]

MiB = 1024 * 1024
PORT = 5001
SECONDS = 2.0

RECEIVER = """
import json, socket, sys, time
server = socket.socket()
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print("ready", flush=True)
server.settimeout(20)
connection, _ = server.accept()
connection.settimeout(20)
total, first = 0, None
while True:
    data = connection.recv(1 << 16)
    if not data:
        break
    if first is None:
        first = time.monotonic()
    total += len(data)
print(json.dumps({"bytes": total, "seconds": time.monotonic() - (first or 0)}), flush=True)
"""

SENDER = """
import socket, sys
connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
chunk, left = b"x" * 65536, int(sys.argv[3])
while left > 0:
    connection.sendall(chunk[:left])
    left -= len(chunk)
connection.close()
"""


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError("no line from the receiver in time")
    return process.stdout.readline().strip()


def goodput(network: Network, sender: str, receiver: str, rate: float) -> float:
    """Bytes/s of a ``SECONDS``-long bulk transfer from ``sender`` to ``receiver``."""
    address = network.address(receiver)
    size = int(rate * SECONDS)
    listening = subprocess.Popen(
        network.exec_argv(receiver, [sys.executable, "-c", RECEIVER, address, str(PORT)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _read_line(listening, 10) == "ready"
        subprocess.run(
            network.exec_argv(
                sender, [sys.executable, "-c", SENDER, address, str(PORT), str(size)]
            ),
            check=True,
            timeout=SECONDS * 5,
        )
        result = json.loads(_read_line(listening, 10))
        listening.wait(timeout=10)
    finally:
        if listening.poll() is None:
            listening.kill()
            listening.wait()
        if listening.stdout is not None:
            listening.stdout.close()
    assert result["bytes"] == size
    return float(result["bytes"] / result["seconds"])


def test_shaping_holds_the_configured_rates_and_leaves_nothing() -> None:
    nodes = [
        NodeLink("up", ("10.77.0.1",), upload=2 * MiB),
        NodeLink("down", ("10.77.0.2",), download=3 * MiB),
        NodeLink("plain", ("10.77.0.3",)),
    ]
    with open_network(nodes) as network:
        prefix = network.layout.prefix
        assert leftovers(prefix)["namespace"] == sorted(network.layout.namespaces())
        measured = {
            "upload 2 MiB/s": (goodput(network, "up", "plain", 2 * MiB), 2 * MiB),
            "download 3 MiB/s": (goodput(network, "plain", "down", 3 * MiB), 3 * MiB),
        }
        network.set_rates("up", 4 * MiB, 0)
        network.set_rates("down", 0, 1 * MiB)
        measured["upload reshaped to 4 MiB/s"] = (goodput(network, "up", "plain", 4 * MiB), 4 * MiB)
        measured["download reshaped to 1 MiB/s"] = (
            goodput(network, "plain", "down", 1 * MiB),
            1 * MiB,
        )
    ratios = {what: got / wanted for what, (got, wanted) in measured.items()}
    assert all(0.9 <= ratio <= 1.1 for ratio in ratios.values()), ratios
    assert leftovers(prefix) == {
        "namespace": [],
        "link": [],
        "qdisc": [],
        "resolv.conf folder": [],
    }


def test_a_failing_block_still_removes_the_network() -> None:
    nodes = [NodeLink("a", ("10.77.0.1",), upload=MiB), NodeLink("b", ("10.77.0.2",))]
    seen: list[str] = []

    def fail_inside() -> None:
        with open_network(nodes, nameserver="10.77.0.2") as network:
            seen.append(network.layout.prefix)
            resolv = network.exec_argv("a", ["cat", "/etc/resolv.conf"])
            completed = subprocess.run(
                resolv, capture_output=True, text=True, timeout=10, check=True
            )
            seen.append(completed.stdout)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    prefix, resolv_conf = seen
    assert "nameserver 10.77.0.2" in resolv_conf
    assert not any(leftovers(prefix).values())
