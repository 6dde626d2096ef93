"""The trio shell of emulated paths: TCP and UDP relays that hold data for its path's delay.

A relay listens on the address clients connect to and forwards to its
target. The client's region comes from its source address (the regions'
viewer prefixes), the target's region is configured, and
:class:`seedcast.netem.paths.Topology` gives each direction's profile, read
again for every chunk, so a ``set_path`` applies to open connections too.

TCP: the kernel completes the client's handshake at once, so the relay puts
the handshake's round trip on the first request instead (nothing reaches the
target before ``accept + RTT``): time to first byte is what a real path
gives (2 RTT on a fresh connection), ``curl -w %{time_connect}`` is not.
Data is held in FIFO delay queues, at most ``buffer`` bytes per direction
(then the relay stops reading: backpressure like a full path). The upstream
connection leaves from the client's own address when it is a loopback one,
so the target still sees who the client is.

UDP: one upstream socket per client address; each datagram is dropped with
the path's loss or delivered after its delay and jitter (so datagrams may be
reordered, as on a real path with jitter).
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from seedcast.netem.paths import DelayLine, PathProfile, Topology
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.netem")

CHUNK = 64 * 1024
MAX_DATAGRAM = 65535
DEFAULT_BUFFER = 4 * 1024 * 1024
UDP_IDLE = 60.0
"""Seconds after which an idle UDP client's upstream socket is closed."""


@dataclass(slots=True)
class RelayStatistics:
    connections: int = 0
    active: int = 0
    bytes_forward: int = 0
    bytes_backward: int = 0
    datagrams: int = 0
    datagrams_lost: int = 0
    segments_late: int = 0
    """TCP chunks given a retransmission delay by the path's loss."""
    failures: dict[str, int] = field(default_factory=dict)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HoldQueue:
    """Items waiting for their delivery time; ``ordered`` ones leave in arrival order."""

    def __init__(self, *, ordered: bool, limit: int) -> None:
        self.ordered = ordered
        self.limit = limit
        self.size = 0
        self._fifo: deque[tuple[float, bytes | None]] = deque()
        self._heap: list[tuple[float, int, bytes | None]] = []
        self._count = 0
        self._changed = trio.Event()

    def put(self, when: float, data: bytes | None) -> None:
        """Queue ``data`` (None = end of stream) for ``when``."""
        if self.ordered:
            self._fifo.append((when, data))
        else:
            self._count += 1
            heapq.heappush(self._heap, (when, self._count, data))
        self.size += len(data) if data else 0
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_room(self) -> None:
        while self.size >= self.limit:
            await self._changed.wait()

    def _first(self) -> float | None:
        if self.ordered:
            return self._fifo[0][0] if self._fifo else None
        return self._heap[0][0] if self._heap else None

    async def get(self) -> bytes | None:
        """The next item whose time has come (waits for it)."""
        while True:
            first = self._first()
            if first is None:
                await self._changed.wait()
                continue
            if first > trio.current_time():
                # A new earlier item (jitter, unordered) wakes us to look again.
                with trio.move_on_at(first):
                    await self._changed.wait()
                continue
            if self.ordered:
                _, data = self._fifo.popleft()
            else:
                _, _, data = heapq.heappop(self._heap)
            self.size -= len(data) if data else 0
            self._wake()
            return data


class _Relay:
    def __init__(
        self,
        listen: str,
        target: str,
        topology: Topology,
        *,
        target_region: str | None,
        rng: random.Random,
    ) -> None:
        self.listen = listen
        self.target = target
        self.target_region = target_region
        self.topology = topology
        self.rng = rng
        self.statistics = RelayStatistics()
        self.bound: str = ""

    def profiles(self, client: str) -> tuple[PathProfile, PathProfile]:
        """(client -> target, target -> client) for a client address."""
        region = self.topology.region_of(client)
        forward = self.topology.path(region, self.target_region)
        backward = self.topology.path(
            self.target_region, region, source_last_mile=False, destination_last_mile=True
        )
        return forward, backward

    def _fail(self, reason: str) -> None:
        self.statistics.failures[reason] = self.statistics.failures.get(reason, 0) + 1


class TcpRelay(_Relay):
    """``await relay.serve(task_status=...)``; started with the bound "host:port"."""

    def __init__(
        self,
        listen: str,
        target: str,
        topology: Topology,
        *,
        target_region: str | None = None,
        rng: random.Random | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        super().__init__(
            listen, target, topology, target_region=target_region, rng=rng or random.Random()
        )
        self.buffer = buffer

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_host_port(self.listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        sockname = listeners[0].socket.getsockname()
        self.bound = f"{sockname[0]}:{sockname[1]}"
        async with trio.open_nursery() as nursery:
            task_status.started(self.bound)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, client: trio.SocketStream) -> None:
        accepted = trio.current_time()
        stats = self.statistics
        stats.connections += 1
        stats.active += 1
        try:
            client_host = client.socket.getpeername()[0]
            target_host, target_port = parse_host_port(self.target)
            local = client_host if _is_loopback(client_host) and _is_loopback(target_host) else None
            try:
                upstream = await _connect(target_host, target_port, local)
            except OSError:
                self._fail("connect")
                await client.aclose()
                return
            forward, backward = self.profiles(client_host)
            rtt = forward.delay + backward.delay
            up = DelayLine(forward, self.rng, ordered=True)
            down = DelayLine(backward, self.rng, ordered=True)
            async with client, upstream, trio.open_nursery() as nursery:

                def profile_up() -> PathProfile:
                    return self.profiles(client_host)[0]

                def profile_down() -> PathProfile:
                    return self.profiles(client_host)[1]

                nursery.start_soon(
                    self._pump, client, upstream, up, profile_up, accepted + rtt, True, rtt
                )
                nursery.start_soon(
                    self._pump, upstream, client, down, profile_down, 0.0, False, rtt
                )
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail("reset")
        finally:
            stats.active -= 1

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        line: DelayLine,
        profile: Callable[[], PathProfile],
        not_before: float,
        forward: bool,
        rtt: float,
    ) -> None:
        held = HoldQueue(ordered=True, limit=self.buffer)

        async def deliver() -> None:
            while True:
                data = await held.get()
                if data is None:
                    try:
                        await sink.send_eof()
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    return
                await sink.send_all(data)
                if forward:
                    self.statistics.bytes_forward += len(data)
                else:
                    self.statistics.bytes_backward += len(data)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(deliver)
                while True:
                    await held.wait_room()
                    data = await source.receive_some(CHUNK)
                    line.profile = profile()
                    lost_before = line.lost
                    when = line.admit(max(trio.current_time(), not_before), rtt=rtt)
                    if line.lost != lost_before:
                        self.statistics.segments_late += 1
                    assert when is not None  # ordered lines never drop
                    held.put(when, data or None)
                    if not data:
                        break
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            # One side went away: close both so the other pump ends too.
            await source.aclose()
            await sink.aclose()


async def _connect(host: str, port: int, local: str | None) -> trio.SocketStream:
    sock = trio.socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        if local is not None:
            await sock.bind((local, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class UdpRelay(_Relay):
    """``await relay.serve(task_status=...)``; started with the bound "host:port"."""

    def __init__(
        self,
        listen: str,
        target: str,
        topology: Topology,
        *,
        target_region: str | None = None,
        rng: random.Random | None = None,
        idle: float = UDP_IDLE,
    ) -> None:
        super().__init__(
            listen, target, topology, target_region=target_region, rng=rng or random.Random()
        )
        self.idle = idle

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_host_port(self.listen)
        listen = trio.socket.socket(_family(host), socket.SOCK_DGRAM)
        with listen:
            await listen.bind((host, port))
            sockname = listen.getsockname()
            self.bound = f"{sockname[0]}:{sockname[1]}"
            flows: dict[tuple[str, int], _UdpFlow] = {}
            async with trio.open_nursery() as nursery:
                task_status.started(self.bound)
                while True:
                    try:
                        data, address = await listen.recvfrom(MAX_DATAGRAM)
                    except OSError:
                        continue  # e.g. ICMP unreachable from an earlier send
                    key = (str(address[0]), int(address[1]))
                    flow = flows.get(key)
                    if flow is None:
                        flow = _UdpFlow(self, listen, key)
                        flows[key] = flow
                        nursery.start_soon(flow.run, flows)
                    flow.send(data)


class _UdpFlow:
    """One client address of a UDP relay: its upstream socket and both delay queues."""

    def __init__(self, relay: UdpRelay, listen: trio.socket.SocketType, client: tuple[str, int]):
        self.relay = relay
        self.listen = listen
        self.client = client
        forward, backward = relay.profiles(client[0])
        self.up = DelayLine(forward, relay.rng, ordered=False)
        self.down = DelayLine(backward, relay.rng, ordered=False)
        self.to_target = HoldQueue(ordered=False, limit=DEFAULT_BUFFER)
        self.to_client = HoldQueue(ordered=False, limit=DEFAULT_BUFFER)
        self.last_seen = trio.current_time()

    def send(self, data: bytes) -> None:
        """A datagram from the client."""
        self.last_seen = trio.current_time()
        self._admit(self.up, 0, data, self.to_target)

    def _admit(self, line: DelayLine, which: int, data: bytes, held: HoldQueue) -> None:
        stats = self.relay.statistics
        stats.datagrams += 1
        line.profile = self.relay.profiles(self.client[0])[which]
        when = line.admit(trio.current_time())
        if when is None:
            stats.datagrams_lost += 1
        elif held.size < held.limit:
            held.put(when, data)

    async def run(self, flows: dict[tuple[str, int], _UdpFlow]) -> None:
        relay = self.relay
        host, port = parse_host_port(relay.target)
        upstream = trio.socket.socket(_family(host), socket.SOCK_DGRAM)
        try:
            with upstream:
                if _is_loopback(self.client[0]) and _is_loopback(host):
                    try:
                        await upstream.bind((self.client[0], 0))
                    except OSError:
                        pass  # the client's address is not ours to use: leave from any
                await upstream.connect((host, port))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._forward, upstream)
                    nursery.start_soon(self._backward_deliver)
                    while True:
                        with trio.move_on_at(self.last_seen + relay.idle) as scope:
                            try:
                                data = await upstream.recv(MAX_DATAGRAM)
                            except OSError:
                                continue
                            self._admit(self.down, 1, data, self.to_client)
                        if scope.cancelled_caught and trio.current_time() >= (
                            self.last_seen + relay.idle
                        ):
                            nursery.cancel_scope.cancel()
                            break
        finally:
            flows.pop(self.client, None)

    async def _forward(self, upstream: trio.socket.SocketType) -> None:
        while True:
            data = await self.to_target.get()
            if data is not None:
                try:
                    await upstream.send(data)
                except OSError:
                    self.relay._fail("send")

    async def _backward_deliver(self) -> None:
        while True:
            data = await self.to_client.get()
            if data is not None:
                try:
                    await self.listen.sendto(data, self.client)
                except OSError:
                    self.relay._fail("send")
