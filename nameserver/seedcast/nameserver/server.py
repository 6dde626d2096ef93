"""The trio shell around the Answerer: UDP and TCP listeners, health prober, /metrics.

UDP is the hot path. It reads a non-blocking stdlib socket directly: wait
until readable, then answer up to :data:`UDP_BATCH` datagrams with plain
``recvfrom``/``sendto`` calls before yielding to the scheduler, so a busy
server pays one trip through trio per batch rather than per packet. A reply
the kernel will not take right now is dropped (UDP may drop; the client
retries).

TCP (RFC 1035 4.2.2 / RFC 7766): two-byte length framing, any number of
queries per connection answered in order, and one deadline per query (a
whole message within ``tcp_idle_timeout``, so trickling bytes buys nothing).
Open connections are capped in total and per client address; a new
connection over a cap closes the longest-idle one (of that address, or of
all), so a client holding sockets open cannot lock others out. A silent
answer (e.g. a response sent to us) closes the connection.

Metrics and ``/healthz`` are served by :class:`seedcast.http11.HttpServer`
on ``dns.metrics_listen``.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import trio
from seedcast.config import ClusterConfig
from seedcast.metrics import StatisticsCollector, new_registry
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.nameserver.health import EdgeState
from seedcast.nameserver.metrics import NameServerSnapshot, producer
from seedcast.nameserver.path_prober import PathProber, path_targets, uses_latency_policy
from seedcast.nameserver.prober import HealthProber, ProbeTarget
from seedcast.nameserver.statistics import LatencyHistogram
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.dns")

UDP_BATCH = 64
"""Datagrams answered per wake-up before other tasks get a turn."""
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
_BIND_ATTEMPTS = 20


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _TcpClient:
    """One DNS-over-TCP connection, for eviction: who, since when idle, how to close it."""

    __slots__ = ("idle_since", "peer", "scope")

    def __init__(self, peer: str, now: float) -> None:
        self.peer = peer
        self.idle_since: float | None = now  # None while answering
        self.scope = trio.CancelScope()


class NameServer:
    """One authoritative DNS process: ``await server.serve(task_status=...)``.

    ``listen`` / ``metrics_listen`` override the config ("host:0" picks a
    port; UDP and TCP share it). Raises OSError when an address cannot be bound.
    """

    def __init__(
        self,
        config: ClusterConfig,
        name: str = "dns",
        *,
        rng: random.Random | None = None,
        listen: str | None = None,
        metrics_listen: str | None = None,
        probe: bool = True,
    ) -> None:
        self.config = config
        self.name = name
        self.listen = listen or config.dns.listen
        self.metrics_listen = metrics_listen or config.dns.metrics_listen
        self.answerer = Answerer(config, rng=rng or random.Random())
        self.health = self.answerer.health
        self.latency = LatencyHistogram()
        self.tcp_connections = 0
        self.tcp_connections_total = 0
        self.tcp_evicted = 0
        self.tcp_refused = 0
        self._tcp_clients: set[_TcpClient] = set()
        self._tcp_by_source: dict[str, int] = {}
        self.udp_send_errors = 0
        self.internal_errors = 0
        self.addresses: list[str] = []
        settings = config.dns
        self.prober = HealthProber(
            [ProbeTarget(edge.name, urlsplit(edge.url).netloc) for edge in config.edges],
            self.health,
            interval=settings.health_interval,
            timeout=settings.health_timeout,
            path=settings.health_path,
        )
        self.probing = probe and settings.health_interval > 0 and bool(config.edges)
        steering = self.answerer.steering
        self.delays = steering.delays
        self.path_prober: PathProber | None = None
        if (
            probe
            and self.delays is not None
            and config.netem.probe_interval > 0
            and uses_latency_policy(config)
        ):
            advertised = [(edge.name, edge.address) for edge in steering.edges]
            self.path_prober = PathProber(
                path_targets(config, advertised), self.delays, interval=config.netem.probe_interval
            )
        self.registry = new_registry("dns", name)
        StatisticsCollector(self.registry, producer(self.snapshot))
        self._rate_mark: tuple[float, int] = (time.monotonic(), 0)

    # -- statistics -----------------------------------------------------------

    def snapshot(self) -> NameServerSnapshot:
        return NameServerSnapshot(
            answerer=self.answerer.statistics(),
            health=self.health.statistics(),
            latency=self.latency.snapshot(),
            tcp_connections=self.tcp_connections,
            tcp_connections_total=self.tcp_connections_total,
            udp_send_errors=self.udp_send_errors,
            tcp_evicted=self.tcp_evicted,
            tcp_refused=self.tcp_refused,
            delays=self.delays.rows() if self.delays is not None else [],
        )

    def status(self) -> dict[str, float | int | str]:
        """Key figures for ``seedcast status``."""
        stats = self.answerer.statistics()
        total = sum(stats.queries.values())
        now = time.monotonic()
        then, before = self._rate_mark
        self._rate_mark = (now, total)
        rate = (total - before) / (now - then) if now > then else 0.0
        lookups = stats.cache_hits + stats.cache_misses
        health = self.health.statistics()
        return {
            "queries_per_s": round(rate, 1),
            "queries": total,
            "cache_hit_ratio": round(stats.cache_hits / lookups, 3) if lookups else 0.0,
            "edges_up": sum(1 for edge in health if edge.state is EdgeState.UP),
            "edges": len(health),
        }

    # -- control channel ------------------------------------------------------

    async def control_set_load(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``set-load``: {"edge": name, "load": number} from the control channel."""
        edge = str(message.get("edge", ""))
        if edge not in self.health.edges:
            return {"ok": False, "error": f"unknown edge {edge!r}"}
        try:
            load = float(message.get("load", 0.0))
        except (TypeError, ValueError):
            return {"ok": False, "error": "load must be a number"}
        self.health.set_load(edge, load)
        return {"ok": True}

    async def control_health(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``health``: the state and load of every edge."""
        return {
            edge.edge: {"state": edge.state.name.lower(), "load": edge.load}
            for edge in self.health.statistics()
        }

    # -- serving ------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled. ``task_status.started`` gets [dns address, metrics address]."""
        from seedcast.http11 import HttpServer, Response, Router, ServerLimits

        udp, tcp = self._bind()
        try:
            host, port = udp.getsockname()[:2]
            router = Router()

            async def healthz(request: Any) -> Response:
                return Response.text(200, "ok\n")

            router.add("GET", "/healthz", healthz)
            http = HttpServer(
                router,
                registry=self.registry,
                component="dns",
                limits=ServerLimits.from_settings(self.config.http),
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_udp, udp)
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(tcp))
                nursery.start_soon(self._serve_tcp, listener, nursery)
                bound = await nursery.start(http.serve, [self.metrics_listen])
                if self.probing:
                    nursery.start_soon(self.prober.run)
                if self.path_prober is not None:
                    nursery.start_soon(self.path_prober.run)
                metrics_host, metrics_port = bound[0]
                self.addresses = [_format(host, port), _format(metrics_host, metrics_port)]
                log.info(
                    "listening",
                    extra={
                        "fields": {
                            "dns": self.addresses[0],
                            "metrics": self.addresses[1],
                            "zones": len(self.answerer.zones),
                            "edges": len(self.config.edges),
                        }
                    },
                )
                task_status.started(list(self.addresses))
        finally:
            udp.close()
            tcp.close()
            await self.prober.aclose()

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        host, port = parse_host_port(self.listen)
        family = _family(host)
        for attempt in range(_BIND_ATTEMPTS):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                udp.setblocking(False)
                try:
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                except OSError:
                    pass
                udp.bind((host, port))
                bound_port = udp.getsockname()[1]
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, bound_port))
                tcp.listen(128)
                return udp, tcp
            except OSError as error:
                udp.close()
                tcp.close()
                # Port 0: the kernel's UDP choice may be taken for TCP; pick again.
                if port == 0 and error.errno == errno.EADDRINUSE and attempt + 1 < _BIND_ATTEMPTS:
                    continue
                raise OSError(
                    error.errno, f"cannot listen on {self.listen}: {error.strerror}"
                ) from None
        raise AssertionError("unreachable")

    async def _serve_udp(self, udp: socket.socket) -> None:
        receive = udp.recvfrom
        send = udp.sendto
        answer = self.answerer.answer
        observe = self.latency.observe
        clock = time.perf_counter
        wait_readable = trio.lowlevel.wait_readable
        udp_transport = Transport.UDP
        try:
            while True:
                await wait_readable(udp)
                now = trio.current_time()
                for _ in range(UDP_BATCH):
                    try:
                        data, peer = receive(MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # e.g. ICMP port unreachable reported on this socket
                    started = clock()
                    try:
                        reply = answer(data, peer[0], udp_transport, now)
                    except Exception:  # a bug must not turn one packet into an outage
                        self._internal_error(peer[0])
                        continue
                    if reply is not None:
                        try:
                            send(reply, peer)
                        except OSError:
                            self.udp_send_errors += 1
                    observe(clock() - started)
                else:
                    await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.notify_closing(udp)

    def _internal_error(self, client: str) -> None:
        self.internal_errors += 1
        if self.internal_errors == 1:
            log.exception("internal error answering a query", extra={"fields": {"client": client}})

    async def _serve_tcp(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as error:
                    if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.warning("accept failed", extra={"fields": {"error": error.strerror}})
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(self._tcp_connection, stream)

    def _admit_tcp(self, peer: str) -> bool:
        """Make room for a connection from ``peer`` (evicting an idle one); False if none."""
        settings = self.config.dns
        if self._tcp_by_source.get(peer, 0) >= settings.tcp_max_connections_per_source:
            return self._evict_tcp(peer)
        if self.tcp_connections >= settings.tcp_max_connections:
            return self._evict_tcp(None)
        return True

    def _evict_tcp(self, peer: str | None) -> bool:
        victim: _TcpClient | None = None
        for client in self._tcp_clients:
            if client.idle_since is None or client.scope.cancel_called:
                continue
            if peer is not None and client.peer != peer:
                continue
            if victim is None or client.idle_since < victim.idle_since:  # type: ignore[operator]
                victim = client
        if victim is None:
            return False
        victim.scope.cancel()
        self._forget_tcp(victim)
        self.tcp_evicted += 1
        return True

    def _forget_tcp(self, client: _TcpClient) -> None:
        if client not in self._tcp_clients:
            return
        self._tcp_clients.discard(client)
        self.tcp_connections -= 1
        left = self._tcp_by_source[client.peer] - 1
        if left:
            self._tcp_by_source[client.peer] = left
        else:
            del self._tcp_by_source[client.peer]

    async def _tcp_connection(self, stream: trio.SocketStream) -> None:
        settings = self.config.dns
        try:
            peer = stream.socket.getpeername()[0]
        except OSError:
            peer = "?"
        if not self._admit_tcp(peer):
            self.tcp_refused += 1
            await stream.aclose()
            return
        client = _TcpClient(peer, trio.current_time())
        self._tcp_clients.add(client)
        self._tcp_by_source[peer] = self._tcp_by_source.get(peer, 0) + 1
        self.tcp_connections += 1
        self.tcp_connections_total += 1
        buffer = bytearray()
        try:
            with client.scope:
                async with stream:
                    while True:
                        client.idle_since = trio.current_time()
                        message = None
                        with trio.move_on_after(settings.tcp_idle_timeout):
                            message = await self._read_frame(stream, buffer)
                        if message is None:
                            return  # idle timeout or EOF
                        client.idle_since = None
                        if not await self._answer_tcp(stream, message, peer):
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._forget_tcp(client)

    async def _answer_tcp(self, stream: trio.SocketStream, message: bytes, peer: str) -> bool:
        """Answer one query; False when the connection should close."""
        started = time.perf_counter()
        try:
            reply = self.answerer.answer(message, peer, Transport.TCP, trio.current_time())
        except Exception:  # a bug must not take the server down
            self._internal_error(peer)
            return False
        self.latency.observe(time.perf_counter() - started)
        if reply is None:
            return False
        with trio.move_on_after(self.config.dns.tcp_idle_timeout) as scope:
            await stream.send_all(struct.pack("!H", len(reply)) + reply)
        return not scope.cancelled_caught

    @staticmethod
    async def _read_frame(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
        """One length-prefixed message; None at EOF (a partial frame at EOF is dropped)."""
        while True:
            if len(buffer) >= 2:
                length = buffer[0] << 8 | buffer[1]
                if len(buffer) >= 2 + length:
                    message = bytes(buffer[2 : 2 + length])
                    del buffer[: 2 + length]
                    return message
            data = await stream.receive_some(MAX_DATAGRAM)
            if not data:
                return None
            buffer += data


async def serve(
    config: ClusterConfig,
    name: str = "dns",
    *,
    listen: str | None = None,
    metrics_listen: str | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Role entry point: run a :class:`NameServer` for ``config``."""
    server = NameServer(config, name, listen=listen, metrics_listen=metrics_listen)
    await server.serve(task_status=task_status)
