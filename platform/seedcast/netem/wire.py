"""A packet-level emulated network between namespaces: TUN devices joined by a user-space wire.

The kernel here has no ``netem`` qdisc, and a TCP relay cannot delay a
handshake (the kernel answers the SYN). So for packet-exact paths each node
namespace gets a TUN device (``tun0``, its address on it) instead of a veth;
this process holds every node's TUN file descriptor and is the wire: it reads
each IP packet a node sends, looks up the node that owns the destination
address, and writes the packet into that node's TUN after the path's delay
(with jitter) or drops it (loss), using the same
:class:`~seedcast.netem.paths.DelayLine` schedule as the relays. SYNs,
SYN-ACKs and data all wait, so ``curl -w %{time_connect}`` shows the RTT.

Needs root (namespaces, ``/dev/net/tun``) and ``ip`` (iproute2). The file
descriptors are opened by entering each namespace with ``setns(2)`` and
returning; a TUN device stays in the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import random
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio
from seedcast.errors import SeedcastError
from seedcast.netem.paths import DelayLine, PathProfile
from seedcast.netem.relay import HoldQueue

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_PACKET = 65535


class WireError(SeedcastError):
    """Namespaces or TUN devices could not be set up."""


@dataclass(frozen=True, slots=True)
class WireNode:
    name: str
    """Namespace name (created and deleted by :class:`Wire`)."""
    address: str
    """IPv4 address of the node, inside ``subnet``."""
    region: str | None = None


def _run(*argv: str) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise WireError(f"{' '.join(argv)}: {completed.stderr.strip() or 'failed'}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise WireError(f"setns: {os.strerror(error)}")


def _open_tun_in(namespace: str) -> int:
    """A TUN device ``tun0`` created inside ``namespace``; returns its fd (non-blocking)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)
    return fd


class Wire:
    """Namespaces joined by TUN devices; ``path(src, dst)`` gives each packet's profile.

    ``with Wire(nodes, subnet, path) as wire: trio.run(wire.run)``; leaving the
    block deletes the namespaces. Commands run in a node with ``exec_argv``.
    """

    def __init__(
        self,
        nodes: Sequence[WireNode],
        subnet: str,
        path: Callable[[WireNode, WireNode], PathProfile],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.nodes = tuple(nodes)
        self.subnet = ipaddress.ip_network(subnet)
        self.path = path
        self.rng = rng or random.Random()
        self.fds: dict[str, int] = {}
        self.by_address = {ipaddress.ip_address(node.address).packed: node for node in nodes}
        self.lines: dict[tuple[str, str], DelayLine] = {}
        self.packets = 0
        self.dropped = 0

    def __enter__(self) -> Wire:
        try:
            for node in self.nodes:
                _run("ip", "netns", "add", node.name)
                self.fds[node.name] = _open_tun_in(node.name)
                prefix = f"{node.address}/{self.subnet.prefixlen}"
                _run("ip", "-n", node.name, "addr", "add", prefix, "dev", "tun0")
                _run("ip", "-n", node.name, "link", "set", "lo", "up")
                _run("ip", "-n", node.name, "link", "set", "tun0", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        for node in self.nodes:
            subprocess.run(["ip", "netns", "del", node.name], capture_output=True, check=False)

    def exec_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", node, *argv]

    def _line(self, source: WireNode, destination: WireNode) -> DelayLine:
        key = (source.name, destination.name)
        line = self.lines.get(key)
        if line is None:
            line = DelayLine(self.path(source, destination), self.rng, ordered=False)
            self.lines[key] = line
        line.profile = self.path(source, destination)
        return line

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Carry packets until cancelled."""
        held = {node.name: HoldQueue(ordered=False, limit=64 * 1024 * 1024) for node in self.nodes}
        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(self._read, node, held)
                nursery.start_soon(self._write, node, held[node.name])
            task_status.started()

    async def _read(self, node: WireNode, held: dict[str, HoldQueue]) -> None:
        fd = self.fds[node.name]
        while True:
            await trio.lowlevel.wait_readable(fd)
            while True:
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    continue  # IPv4 only (IPv6 router solicitations and such are dropped)
                destination = self.by_address.get(packet[16:20])
                if destination is None:
                    continue
                self.packets += 1
                when = self._line(node, destination).admit(trio.current_time())
                if when is None:
                    self.dropped += 1
                    continue
                held[destination.name].put(when, packet)

    async def _write(self, node: WireNode, held: HoldQueue) -> None:
        fd = self.fds[node.name]
        while True:
            packet = await held.get()
            if packet is None:
                continue
            try:
                os.write(fd, packet)
            except BlockingIOError:
                self.dropped += 1  # the node's queue is full: a real link drops too
