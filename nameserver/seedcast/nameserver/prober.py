"""Health probes: GET /healthz on every edge, every interval, into the HealthTracker.

A probe is good when the edge answers 2xx within the timeout. The body may
carry a load figure, which the least-loaded policy uses: a JSON object with
``load`` (or ``active_requests`` / ``in_flight`` / ``connections``), or an
``X-Seedcast-Load`` header. Requests go through the shared
:class:`seedcast.http11.HttpClient` (kept-alive connections, h11 parsing).
Rounds start on a fixed schedule (``start + k * interval``), probe every
edge concurrently, and wake anyone in :meth:`HealthProber.wait_round` when
done.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import trio
from seedcast.errors import SeedcastError
from seedcast.http11 import HttpClient
from seedcast.nameserver.health import HealthTracker, Transition

log = logging.getLogger("seedcast.dns")

MAX_BODY = 64 * 1024
_LOAD_KEYS = ("load", "active_requests", "in_flight", "connections")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    load: float | None = None
    error: str | None = None


def load_from_response(header: str | None, body: bytes) -> float | None:
    """The load figure an edge reported, if any (the header first, then a JSON body)."""
    if header is not None:
        return _number(header.strip())
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


async def probe_healthz(client: HttpClient, address: str, path: str, timeout: float) -> ProbeResult:
    """One GET ``path`` on ``address`` ("host:port") within ``timeout``; never raises."""
    url = f"http://{address}{path}"
    with trio.move_on_after(timeout):
        try:
            response = await client.request("GET", url, max_body_size=MAX_BODY)
        except (SeedcastError, OSError) as error:
            return ProbeResult(False, error=f"{type(error).__name__}: {error}")
        ok = 200 <= response.status < 300
        load = load_from_response(response.headers.get("x-seedcast-load"), response.content)
        return ProbeResult(ok, response.status, load)
    return ProbeResult(False, error=f"no answer within {timeout:g}s")


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
        self._client: HttpClient | None = None

    async def aclose(self) -> None:
        """Close the probe connections."""
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def run(self) -> None:
        """Probe forever on a fixed schedule (cancel to stop)."""
        start = trio.current_time()
        try:
            while True:
                await self.probe_round()
                next_start = start + (self.rounds * self.interval)
                await trio.sleep_until(max(next_start, trio.current_time()))
        finally:
            await self.aclose()

    async def probe_round(self) -> list[Transition]:
        """Probe every target once, concurrently; returns the state changes it caused."""
        transitions: list[Transition] = []
        if self._client is None:
            self._client = HttpClient(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                max_connections_per_host=2,
                user_agent="seedcast-dns-health",
            )
        client = self._client

        async def probe_one(target: ProbeTarget) -> None:
            result = await probe_healthz(client, target.address, self.path, self.timeout)
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
