"""Active path probes: the delay from each region's clients to each edge, as they see it.

For every (region, edge) the prober keeps one HTTP/1.1 connection open from
the region's probe address (the last host of its viewer prefix, where a
resolver of that region would sit) to the address the DNS answers for the
edge: its relay when ``netem.enabled``, so the probe crosses the same
emulated path the region's viewers do. Each round it times one
``GET /healthz`` on that kept-alive connection, which is one round trip, and
feeds :class:`~seedcast.nameserver.delays.MeasuredDelays`. A probe with no
answer within the timeout counts as lost and the connection is opened again
next round (the first request on a new connection is not timed: it carries
the handshake). Responses are parsed by h11.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import h11
import trio
from seedcast.config import ClusterConfig
from seedcast.nameserver.delays import MeasuredDelays
from seedcast.nameserver.policies import Policy
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.dns")

MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True, slots=True)
class PathTarget:
    region: str
    source: str
    """Local address the probe leaves from (inside the region's viewer prefix)."""
    edge: str
    address: str
    """host:port the DNS answers for the edge."""


def probe_source(prefix: str) -> str:
    """The region's probe address: the last usable host of its viewer prefix."""
    network = ipaddress.ip_network(prefix)
    last = network.broadcast_address - 1 if network.num_addresses > 2 else network.network_address
    return str(last)


def uses_latency_policy(config: ClusterConfig) -> bool:
    return config.dns.policy == Policy.LATENCY or any(
        name.policy == Policy.LATENCY for name in config.dns.names
    )


def path_targets(config: ClusterConfig, advertised: Sequence[tuple[str, str]]) -> list[PathTarget]:
    """``advertised``: (edge name, address answered) pairs; port: the edge's."""
    ports = {edge.name: parse_host_port(edge.listen)[1] for edge in config.edges}
    return [
        PathTarget(region.name, probe_source(region.viewer_prefix), edge, f"{host}:{ports[edge]}")
        for region in config.regions
        for edge, host in advertised
    ]


class _Probe:
    def __init__(self, target: PathTarget) -> None:
        self.target = target
        self.stream: trio.SocketStream | None = None
        self.connection: h11.Connection | None = None

    async def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _open(self) -> None:
        host, port = parse_host_port(self.target.address)
        sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            try:
                await sock.bind((self.target.source, 0))
            except OSError:
                pass  # not an address of ours (e.g. --netns): probe from the default one
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        self.stream = trio.SocketStream(sock)
        await self._exchange()  # carries the handshake's round trip: not timed

    async def _exchange(self) -> None:
        assert self.stream is not None
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE)
        request = h11.Request(
            method="GET",
            target="/healthz",
            headers=[("Host", self.target.address), ("User-Agent", "seedcast-dns-path-probe")],
        )
        await self.stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        received = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(16384)
                received += len(data)
                if not data or received > MAX_RESPONSE:
                    raise OSError("connection closed during the probe")
                connection.receive_data(data)
                continue
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.ConnectionClosed):
                raise OSError("connection closed during the probe")

    async def measure(self, timeout: float) -> float | None:
        """One timed round trip (seconds), or None when it got no answer in time."""
        with trio.move_on_after(timeout):
            try:
                if self.stream is None:
                    await self._open()
                started = trio.current_time()
                await self._exchange()
                return trio.current_time() - started
            except (OSError, h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await self.close()
        return None


class PathProber:
    """Probes every target each ``interval`` into ``delays`` (cancel :meth:`run` to stop)."""

    def __init__(
        self,
        targets: Sequence[PathTarget],
        delays: MeasuredDelays,
        *,
        interval: float,
        timeout: float = 2.0,
    ) -> None:
        self.targets = tuple(targets)
        self.delays = delays
        self.interval = interval
        self.timeout = timeout
        self.rounds = 0
        self._probes = [_Probe(target) for target in self.targets]
        self._round_done = trio.Event()

    async def run(self) -> None:
        start = trio.current_time()
        try:
            while True:
                await self.probe_round()
                await trio.sleep_until(
                    max(start + self.rounds * self.interval, trio.current_time())
                )
        finally:
            for probe in self._probes:
                await probe.close()

    async def probe_round(self) -> None:
        async def one(probe: _Probe) -> None:
            rtt = await probe.measure(self.timeout)
            target = probe.target
            before = self.delays.generation
            self.delays.record(target.region, target.edge, rtt, trio.current_time())
            if self.delays.generation != before:
                log.info(
                    "region moved",
                    extra={
                        "fields": {
                            "region": target.region,
                            "edge": self.delays.choose(target.region, self.delays.edges)[0],
                        }
                    },
                )

        async with trio.open_nursery() as nursery:
            for probe in self._probes:
                nursery.start_soon(one, probe)
        self.rounds += 1
        done, self._round_done = self._round_done, trio.Event()
        done.set()

    async def wait_round(self) -> None:
        """Wait until the round in progress (or the next one) has finished."""
        await self._round_done.wait()
