"""Health-driven steering against real tiny HTTP edges whose /healthz says 200 or 500.

Probe rounds are driven by the test (``prober.probe_round()``), so "within two
intervals" is counted in rounds, not in seconds; one test also runs the
prober's own schedule and waits for its rounds.
"""

from __future__ import annotations

from typing import Any

import trio
from nameserver_harness import Running, TinyEdge, start_edge, start_nameserver
from seedcast.config import config_from_mapping
from seedcast.nameserver.health import EdgeState
from seedcast.testing.nameserver import example_mapping

ORIGIN = "127.0.10.1"


async def cluster(
    nursery: trio.Nursery, *, probe: bool = False, **dns: Any
) -> tuple[Running, list[TinyEdge]]:
    edges = [await start_edge(nursery, f"127.0.20.{index}") for index in (1, 2, 3)]
    mapping = example_mapping(health_timeout="2s", **dns)
    mapping["edges"] = [
        {"name": "edge-1", "region": "eu", "listen": edges[0].listen},
        {"name": "edge-2", "region": "eu", "listen": edges[1].listen},
        {"name": "edge-3", "region": "us", "listen": edges[2].listen},
    ]
    mapping["origin"] = {"listen": f"{ORIGIN}:8080"}
    running = await start_nameserver(nursery, config_from_mapping(mapping), probe=probe)
    return running, edges


async def answers_for(
    running: Running, name: str, count: int = 6, source: str = "127.0.41.9"
) -> set[str]:
    found: set[str] = set()
    for _ in range(count):
        found.update(await running.addresses(name, source=source))
    return found


async def test_failing_edge_leaves_within_two_rounds_and_returns(nursery: trio.Nursery) -> None:
    running, edges = await cluster(nursery)
    prober = running.server.prober
    await prober.probe_round()
    assert {edge.state for edge in running.server.health.statistics()} == {EdgeState.UP}
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.1", "127.0.20.2"}

    edges[1].status = 500
    await prober.probe_round()
    assert running.server.health.state("edge-2") is EdgeState.UP  # one failure: not yet
    await prober.probe_round()
    assert running.server.health.state("edge-2") is EdgeState.DOWN
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.1"}

    edges[1].status = 200
    await prober.probe_round()
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.1"}
    await prober.probe_round()
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.1", "127.0.20.2"}
    assert all(edge.probes == 5 for edge in edges)


async def test_region_down_moves_to_the_next_region_then_all_down_to_origin(
    nursery: trio.Nursery,
) -> None:
    running, edges = await cluster(nursery)
    prober = running.server.prober
    await prober.probe_round()
    edges[0].status = edges[1].status = 500
    for _ in range(2):
        await prober.probe_round()
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.3"}  # eu -> us
    edges[2].status = 500
    for _ in range(2):
        await prober.probe_round()
    assert await answers_for(running, "video.kingcdn.test") == {ORIGIN}
    assert await answers_for(running, "movie.video.kingcdn.test") == {ORIGIN}
    stats = running.server.answerer.statistics()
    assert stats.answers[("all-down", "origin")] >= 7


async def test_servfail_all_down_policy(nursery: trio.Nursery) -> None:
    import dns.message
    import dns.rcode

    running, edges = await cluster(nursery, all_down="servfail")
    for edge in edges:
        edge.status = 503
    for _ in range(2):
        await running.server.prober.probe_round()
    response = await running.udp(dns.message.make_query("video.netcinema.test", "A"))
    assert response.rcode() == dns.rcode.SERVFAIL


async def test_an_edge_that_does_not_listen_is_down(nursery: trio.Nursery) -> None:
    running, edges = await cluster(nursery)
    assert edges[2].server is not None
    edges[2].server.shutdown(0)
    await edges[2].server.wait_stopped()
    for _ in range(2):
        await running.server.prober.probe_round()
    assert running.server.health.state("edge-3") is EdgeState.DOWN
    assert await answers_for(running, "video.kingcdn.test", source="127.0.42.9") <= {
        "127.0.20.1",
        "127.0.20.2",
    }


async def test_hashing_keeps_names_on_their_edge_when_another_leaves(nursery: trio.Nursery) -> None:
    running, edges = await cluster(nursery)
    prober = running.server.prober
    await prober.probe_round()
    names = [f"movie{index}.video.kingcdn.test" for index in range(30)]
    before = {name: (await running.addresses(name))[0] for name in names}
    assert set(before.values()) == {"127.0.20.1", "127.0.20.2", "127.0.20.3"}
    edges[0].status = 500
    for _ in range(2):
        await prober.probe_round()
    after = {name: (await running.addresses(name))[0] for name in names}
    for name in names:
        if before[name] != "127.0.20.1":
            assert after[name] == before[name]
        else:
            assert after[name] in ("127.0.20.2", "127.0.20.3")


async def test_load_figures_from_healthz_steer_least_loaded(nursery: trio.Nursery) -> None:
    running, edges = await cluster(nursery)
    edges[0].load = 99.0
    edges[1].load = 0.0
    edges[2].load = 99.0
    await running.server.prober.probe_round()
    assert running.server.health.load("edge-2") == 0.0
    picks = [(await running.addresses("ll.kingcdn.test"))[0] for _ in range(60)]
    assert picks.count("127.0.20.2") > 45  # weight 1 against 0.01 + 0.01


async def test_the_prober_runs_on_its_own_schedule(nursery: trio.Nursery) -> None:
    running, edges = await cluster(nursery, probe=True, health_interval="50ms")
    prober = running.server.prober
    edges[0].status = 500
    with trio.fail_after(30):
        while running.server.health.state("edge-1") is not EdgeState.DOWN:
            await prober.wait_round()
    assert prober.rounds >= 2
    edges[0].status = 200
    with trio.fail_after(30):
        while running.server.health.state("edge-1") is not EdgeState.UP:
            await prober.wait_round()
    assert await answers_for(running, "video.kingcdn.test") == {"127.0.20.1", "127.0.20.2"}
