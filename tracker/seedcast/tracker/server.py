"""The tracker's trio shell: HTTP announce/scrape on the shared HTTP core, BEP 15 over UDP.

All tracker logic lives in the sans-IO :class:`~seedcast.tracker.swarms.Tracker` and the
protocol modules; this file only moves bytes, reads the clock and runs an expiry timer.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Sequence

import trio
from prometheus_client import CollectorRegistry
from seedcast.config import ClusterConfig
from seedcast.http11 import Headers, HttpServer, Request, Response, Router, ServerLimits
from seedcast.metrics import new_registry
from seedcast.units import parse_host_port

from .http_protocol import handle_announce, handle_scrape
from .metrics import register_tracker_metrics
from .swarms import Tracker
from .udp_protocol import UdpTracker

log = logging.getLogger("seedcast.tracker")

EXPIRY_PERIOD = 5.0
UDP_MAX_DATAGRAM = 2048
_BENCODE_HEADERS = Headers([("Content-Type", "text/plain"), ("Cache-Control", "no-store")])


class TrackerService:
    """One tracker: the core, its HTTP routes and its UDP loop."""

    def __init__(
        self,
        config: ClusterConfig,
        name: str = "tracker",
        *,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.tracker = Tracker(config.tracker)
        self.udp = UdpTracker(self.tracker, os.urandom(32))
        self.rng = rng or random.Random(os.urandom(16))
        self.registry = registry if registry is not None else new_registry("tracker", name)
        register_tracker_metrics(self.registry, self.tracker)
        router = Router()
        router.add("GET", "/announce", self._announce)
        router.add("GET", "/scrape", self._scrape)
        router.add("GET", "/healthz", self._healthz)
        self.http = HttpServer(
            router,
            registry=self.registry,
            component="tracker",
            limits=ServerLimits.from_settings(config.http),
        )
        self.udp_address: tuple[str, int] | None = None

    async def _announce(self, request: Request) -> Response:
        body = handle_announce(
            self.tracker, request.query, request.client, trio.current_time(), self.rng
        )
        return Response(200, _BENCODE_HEADERS, body)

    async def _scrape(self, request: Request) -> Response:
        return Response(
            200, _BENCODE_HEADERS, handle_scrape(self.tracker, request.query, trio.current_time())
        )

    async def _healthz(self, request: Request) -> Response:
        statistics = self.tracker.statistics()
        return Response.text(200, f"ok torrents={statistics.torrents} peers={statistics.peers}\n")

    async def serve(
        self,
        listen: Sequence[str] | None = None,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve HTTP on ``listen`` (default: the config's) and UDP on the same host:port.

        Calls ``task_status.started(["host:port", ...])`` with the bound HTTP addresses.
        """
        addresses = list(listen or [self.config.tracker.listen])
        async with trio.open_nursery() as nursery:
            bound: list[tuple[str, int]] = await nursery.start(self.http.serve, addresses)
            if self.config.tracker.udp:
                host, port = bound[0]
                udp_socket = trio.socket.socket(
                    socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
                )
                await udp_socket.bind((host, port))
                self.udp_address = (host, port)
                nursery.start_soon(self._udp_loop, udp_socket)
            nursery.start_soon(self._expire_loop)
            shown = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound]
            log.info(
                "tracker listening",
                extra={"fields": {"http": ",".join(shown), "udp": self.config.tracker.udp}},
            )
            task_status.started(shown)

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(EXPIRY_PERIOD)
            removed = self.tracker.expire(trio.current_time())
            if removed:
                log.debug("expired peers", extra={"fields": {"count": removed}})

    async def _udp_loop(self, udp_socket: trio.socket.SocketType) -> None:
        with udp_socket:
            while True:
                try:
                    data, address = await udp_socket.recvfrom(UDP_MAX_DATAGRAM)
                except OSError as error:  # e.g. ICMP port unreachable reported on Linux
                    log.debug("udp receive failed", extra={"fields": {"error": error}})
                    continue
                client = (address[0], address[1])
                try:
                    reply = self.udp.handle_datagram(data, client, trio.current_time(), self.rng)
                except Exception:  # a bug must not stop the loop: count, log, go on
                    log.exception("udp datagram handling failed")
                    self.tracker.note_error("internal")
                    continue
                if reply is not None:
                    try:
                        await udp_socket.sendto(reply, address)
                    except OSError as error:
                        log.debug("udp send failed", extra={"fields": {"error": error}})


async def serve(
    config: ClusterConfig,
    name: str = "tracker",
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Role entry point: run the tracker on ``config.tracker.listen``."""
    parse_host_port(config.tracker.listen)
    await TrackerService(config, name).serve(task_status=task_status)
