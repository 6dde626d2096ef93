"""The latency policy against real relays: answers follow the measured delay of each path.

Two tiny edges (eu, us) sit behind TCP relays that emulate the regions' paths;
the DNS answers relay addresses and probes every (region, edge) path through
them on its own schedule. When the eu path gets slow, eu answers move to the
us edge within a few probe rounds (counted in rounds, not seconds).
"""

from __future__ import annotations

import trio
from nameserver_harness import start_edge, start_nameserver
from seedcast.config import config_from_mapping
from seedcast.netem.paths import PathProfile, Topology
from seedcast.netem.relay import TcpRelay
from seedcast.testing.nameserver import example_mapping
from seedcast.units import parse_host_port

ROUNDS_TO_MOVE = 3
"""Stated adaptation time: answers move within this many probe intervals."""


async def test_answers_move_to_the_edge_with_the_lower_measured_delay(
    nursery: trio.Nursery,
) -> None:
    edges = [await start_edge(nursery, f"127.0.20.{index}") for index in (1, 2)]
    mapping = example_mapping(
        health_interval=0, names=[{"name": "video.kingcdn.test", "policy": "latency"}]
    )
    mapping["regions"] = [
        {
            "name": "eu",
            "viewer_prefix": "127.0.41.0/24",
            "latency_ms": {"us": 40},
            "last_mile_ms": 5,
        },
        {"name": "us", "viewer_prefix": "127.0.42.0/24", "last_mile_ms": 5},
    ]
    mapping["edges"] = [
        {"name": "edge-1", "region": "eu", "listen": edges[0].listen},
        {"name": "edge-2", "region": "us", "listen": edges[1].listen},
    ]
    mapping["netem"] = {"enabled": True, "probe_interval": "200ms", "probe_alpha": 0.5}
    config = config_from_mapping(mapping)
    paths = Topology.from_config(config)
    for edge in config.edges:
        relay = TcpRelay(config.edge_relay(edge), edge.listen, paths, target_region=edge.region)
        await nursery.start(relay.serve)

    running = await start_nameserver(nursery, config, probe=True)
    prober = running.server.path_prober
    assert prober is not None
    relay_host = {edge.name: parse_host_port(config.edge_relay(edge))[0] for edge in config.edges}
    await prober.wait_round()
    assert await running.addresses("video.kingcdn.test", source="127.0.41.9") == [
        relay_host["edge-1"]
    ]
    assert await running.addresses("video.kingcdn.test", source="127.0.42.9") == [
        relay_host["edge-2"]
    ]

    paths.set_path("eu", "eu", PathProfile(0.15))  # eu viewers -> eu edge: 310 ms RTT
    rounds = 0
    with trio.move_on_after(30):
        while await running.addresses("video.kingcdn.test", source="127.0.41.9") != [
            relay_host["edge-2"]
        ]:
            await prober.wait_round()
            rounds += 1
    assert 1 <= rounds <= ROUNDS_TO_MOVE
    measured = running.server.delays.estimate("eu", "edge-1")  # type: ignore[union-attr]
    assert measured.last_rtt is not None
    assert measured.last_rtt > 0.3  # a relay never delivers early

    status, text = await _metrics(running.metrics)
    assert status == 200
    assert 'seedcast_dns_path_rtt_seconds{edge="edge-1",prefix="127.0.41.0/24",region="eu"}' in text
    assert 'seedcast_dns_path_chosen{edge="edge-2",prefix="127.0.41.0/24",region="eu"} 1.0' in text


async def _metrics(address: tuple[str, int]) -> tuple[int, str]:
    from nameserver_harness import http_get

    return await http_get(address, "/metrics")
