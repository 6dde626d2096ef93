"""The discrete-event loop and its transfers."""

from __future__ import annotations

import math

import pytest
from seedcast.sim.events import EventLoop, Network


def test_timers_run_in_time_order_and_cancelled_ones_never() -> None:
    loop = EventLoop()
    seen: list[tuple[str, float]] = []
    loop.call_at(2.0, lambda: seen.append(("b", loop.now)))
    loop.call_at(1.0, lambda: seen.append(("a", loop.now)))
    loop.call_at(1.5, lambda: seen.append(("never", loop.now))).cancel()
    loop.call_at(1.0, lambda: loop.call_later(0.5, lambda: seen.append(("c", loop.now))))
    assert loop.run() == 2.0
    assert seen == [("a", 1.0), ("c", 1.5), ("b", 2.0)]


def test_a_transfer_takes_size_over_rate() -> None:
    loop = EventLoop()
    net = loop.network
    server = net.add_node(upload=100.0)
    client = net.add_node(download=math.inf)
    done: list[float] = []
    net.start(server, client, 250.0, lambda _: done.append(loop.now))
    loop.run()
    assert done == [pytest.approx(2.5)]
    assert net.bytes_sent[server] == pytest.approx(250.0)


def test_rates_change_when_a_transfer_ends() -> None:
    # Two transfers share a 100 B/s uplink: 50 each until the small one ends
    # at t=2 (100 B), then the big one gets all 100: 300 B done at 2 + 200/100 = 4.
    loop = EventLoop()
    net = loop.network
    server = net.add_node(upload=100.0)
    a, b = net.add_node(), net.add_node()
    done: dict[str, float] = {}
    net.start(server, a, 100.0, lambda _: done.setdefault("small", loop.now))
    net.start(server, b, 300.0, lambda _: done.setdefault("big", loop.now))
    loop.run()
    assert done == {"small": pytest.approx(2.0), "big": pytest.approx(4.0)}


def test_a_transfer_started_by_a_timer_and_cancelled_does_not_call_back() -> None:
    loop = EventLoop()
    net = loop.network
    server, client = net.add_node(upload=10.0), net.add_node()
    calls: list[int] = []
    transfer = net.start(server, client, 100.0, calls.append)
    loop.call_at(1.0, lambda: calls.append(-int(net.cancel(transfer))))
    loop.run()
    assert calls == [-90]
    assert net.active == 0


def test_until_stops_the_clock_with_work_left() -> None:
    loop = EventLoop()
    net = loop.network
    net.start(net.add_node(upload=1.0), net.add_node(), 100.0, lambda _: None)
    assert loop.run(until=10.0) == 10.0
    assert net.active == 1


def test_many_transfers_grow_the_tables() -> None:
    loop = EventLoop(Network())
    net = loop.network
    server = net.add_node(upload=1000.0)
    done: list[float] = []
    for _ in range(300):
        net.start(server, net.add_node(), 10.0, lambda _: done.append(loop.now))
    loop.run()
    assert len(done) == 300
    assert max(done) == pytest.approx(3.0, rel=1e-3)
