"""``seedcast netem``: the relays of a cluster's emulated paths, in the foreground.

One TCP relay per edge, on ``config.edge_relay(edge)`` (the address the DNS
answers when ``netem.enabled``), forwarding to the edge with the path from
the client's region to the edge's region. ``netem.listen`` serves
``/metrics``, ``/healthz`` and ``/paths``: ``GET`` lists every path's
profile, ``PUT /paths?from=eu&to=us&delay_ms=150&jitter_ms=0&loss=0``
changes the core of a path (both directions) while the cluster runs; the
control channel's ``set-path`` does the same.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from seedcast.config import ClusterConfig
from seedcast.netem.paths import PathProfile, Topology
from seedcast.netem.relay import TcpRelay


def configure_netem(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="netem", help="process name (default: netem)")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="HTTP address for /metrics, /healthz and /paths (default: netem.listen)",
    )


class Netem:
    """The relays of ``config`` and the handlers that show and change their paths."""

    def __init__(self, config: ClusterConfig, listen: str | None = None) -> None:
        self.config = config
        self.listen = listen or config.netem.listen
        self.topology = Topology.from_config(config)
        rng = random.Random(config.netem.seed)
        self.relays = [
            TcpRelay(
                config.edge_relay(edge),
                edge.listen,
                self.topology,
                target_region=edge.region,
                rng=random.Random(rng.random()),
            )
            for edge in config.edges
        ]

    def set_path(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """{"from", "to", "delay_ms", "jitter_ms"?, "loss"?} -> the new profile; ValueError."""
        try:
            source, destination = str(fields["from"]), str(fields["to"])
            profile = PathProfile(
                float(fields.get("delay_ms", 0)) / 1000,
                float(fields.get("jitter_ms", 0)) / 1000,
                float(fields.get("loss", 0)),
            )
        except KeyError as error:
            raise ValueError(f"missing {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad path: {error}") from None
        self.topology.set_path(source, destination, profile)
        return {"from": source, "to": destination, **_show(profile)}

    def paths(self) -> list[dict[str, Any]]:
        names = list(self.topology.regions)
        return [
            {"from": source, "to": destination, **_show(self.topology.core(source, destination))}
            for source in names
            for destination in names
        ]

    def status(self) -> dict[str, float | int | str]:
        return {
            "relays": len(self.relays),
            "connections": sum(relay.statistics.active for relay in self.relays),
        }

    def families(self) -> Iterable[Metric]:
        connections = CounterMetricFamily(
            "seedcast_netem_connections", "Connections relayed, by relay", labels=["relay"]
        )
        active = GaugeMetricFamily(
            "seedcast_netem_active_connections", "Open relayed connections", labels=["relay"]
        )
        moved = CounterMetricFamily(
            "seedcast_netem_bytes", "Bytes relayed", labels=["relay", "direction"]
        )
        late = CounterMetricFamily(
            "seedcast_netem_segments_late",
            "Chunks given a retransmission delay by the path's loss",
            labels=["relay"],
        )
        for edge, relay in zip(self.config.edges, self.relays, strict=True):
            stats = relay.statistics
            connections.add_metric([edge.name], stats.connections)
            active.add_metric([edge.name], stats.active)
            moved.add_metric([edge.name, "to-server"], stats.bytes_forward)
            moved.add_metric([edge.name, "to-client"], stats.bytes_backward)
            late.add_metric([edge.name], stats.segments_late)
        delay = GaugeMetricFamily(
            "seedcast_netem_path_delay_seconds",
            "One-way core delay between regions (without last miles)",
            labels=["source", "destination"],
        )
        for row in self.paths():
            delay.add_metric([row["from"], row["to"]], row["delay_ms"] / 1000)
        yield from (connections, active, moved, late, delay)

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from seedcast.http11 import HttpServer, Request, Response, Router
        from seedcast.metrics import StatisticsCollector, new_registry

        registry = new_registry("netem", "netem")
        StatisticsCollector(registry, self.families)
        router = Router()

        async def healthz(request: Request) -> Response:
            return Response.text(200, "ok\n")

        async def get_paths(request: Request) -> Response:
            return Response.json(200, {"paths": self.paths()})

        async def put_paths(request: Request) -> Response:
            fields = {key: values[-1] for key, values in parse_qs(request.query).items()}
            try:
                return Response.json(200, self.set_path(fields))
            except ValueError as error:
                return Response.json(400, {"error": str(error)})

        router.add("GET", "/healthz", healthz)
        router.add("GET", "/paths", get_paths)
        router.add("PUT", "/paths", put_paths)
        http = HttpServer(router, registry=registry, component="netem")
        async with trio.open_nursery() as nursery:
            bound = [await nursery.start(relay.serve) for relay in self.relays]
            addresses = await nursery.start(http.serve, [self.listen])
            host, port = addresses[0]
            task_status.started([f"{host}:{port}", *bound])


def _show(profile: PathProfile) -> dict[str, float]:
    return {
        "delay_ms": round(profile.delay * 1000, 3),
        "jitter_ms": round(profile.jitter * 1000, 3),
        "loss": profile.loss,
    }


def run_netem(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.roles import run_role

    netem = Netem(config, args.listen)

    async def set_path(message: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return {"ok": True, **netem.set_path(message)}
        except ValueError as error:
            return {"ok": False, "error": str(error)}

    return run_role(
        role="netem",
        name=args.name,
        config=config,
        serve=lambda task_status: netem.serve(task_status=task_status),
        control_handlers={"set-path": set_path},
        statistics=netem.status,
        debug=bool(getattr(args, "debug", False)),
    )
