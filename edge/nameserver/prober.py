"""Health probes: GET /healthz on every edge, every interval, into the HealthTracker.

A probe is good when the edge answers 2xx within the timeout. The body may
carry a load figure, which the least-loaded policy uses: a JSON object with
``load`` (or ``active_requests`` / ``in_flight`` / ``connections``), or an
``X-Seedcast-Load`` header. Rounds start on a fixed schedule
(``start + k * interval``), probe every edge concurrently, and wake anyone
in :meth:`HealthProber.wait_round` when done.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import h11
import trio
from seedcast.edge.nameserver.health import HealthTracker, Transition
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.dns")

MAX_BODY = 64 * 1024
_LOAD_KEYS = ("load", "active_requests", "in_flight", "connections")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    load: float | None = None
    error: str | None = None


def load_from_response(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> float | None:
    """The load figure an edge reported, if any (header first, then a JSON body)."""
    for name, value in headers:
        if name.lower() == b"x-seedcast-load":
            return _number(value.decode("latin-1").strip())
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    for key in _LOAD_KEYS:
        if key in data:
            return _number(data[key])
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


async def probe_healthz(address: str, path: str, timeout: float) -> ProbeResult:
    """One GET ``path`` on ``address`` ("host:port"), parsed with h11; never raises."""
    host, port = parse_host_port(address)
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    body = bytearray()
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as error:
            return ProbeResult(False, error=f"connect: {error.strerror or error}")
        async with stream:
            try:
                request = h11.Request(
                    method="GET",
                    target=path,
                    headers=[
                        ("Host", address),
                        ("Connection", "close"),
                        ("User-Agent", "seedcast-dns"),
                    ],
                )
                await stream.send_all(
                    connection.send(request) + (connection.send(h11.EndOfMessage()) or b"")
                )
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        connection.receive_data(await stream.receive_some(16 * 1024))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        headers = list(event.headers)
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_BODY:
                            break
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
            except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError) as error:
                return ProbeResult(False, status, error=f"{type(error).__name__}: {error}")
            ok = status is not None and 200 <= status < 300
            return ProbeResult(ok, status, load_from_response(headers, bytes(body)))
    return ProbeResult(False, status, error=f"no answer within {timeout:g}s")


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    edge: str
    address: str
    """host:port of the edge's HTTP server."""


class HealthProber:
    def __init__(
        self,
        targets: Sequence[ProbeTarget],
        tracker: HealthTracker,
        *,
        interval: float,
        timeout: float,
        path: str = "/healthz",
    ) -> None:
        self.targets = tuple(targets)
        self.tracker = tracker
        self.interval = interval
        self.timeout = min(timeout, interval) if interval > 0 else timeout
        self.path = path
        self.rounds = 0
        self._round_done = trio.Event()

    async def run(self) -> None:
        """Probe forever on a fixed schedule (cancel to stop)."""
        start = trio.current_time()
        while True:
            await self.probe_round()
            next_start = start + (self.rounds * self.interval)
            await trio.sleep_until(max(next_start, trio.current_time()))

    async def probe_round(self) -> list[Transition]:
        """Probe every target once, concurrently; returns the state changes it caused."""
        transitions: list[Transition] = []

        async def probe_one(target: ProbeTarget) -> None:
            result = await probe_healthz(target.address, self.path, self.timeout)
            transition = self.tracker.record(
                target.edge, result.ok, trio.current_time(), load=result.load
            )
            if transition is not None:
                transitions.append(transition)
                log.info(
                    "edge %s",
                    transition.new.name.lower(),
                    extra={
                        "fields": {
                            "edge": target.edge,
                            "was": transition.old.name.lower(),
                            "status": result.status,
                            "error": result.error or "",
                        }
                    },
                )

        async with trio.open_nursery() as nursery:
            for target in self.targets:
                nursery.start_soon(probe_one, target)
        self.rounds += 1
        done, self._round_done = self._round_done, trio.Event()
        done.set()
        return transitions

    async def wait_round(self) -> None:
        """Wait until the round in progress (or the next one) has finished."""
        await self._round_done.wait()
