"""The flow model of file distribution: 10^3..10^6 peers, numpy-vectorised.

Each peer is a row of arrays (bytes received, caps, arrival time); time moves
in steps of ``dt``. In a step, the upload on offer is the server's (plus the
edges' for hybrid) and ``efficiency`` x the upload of every peer, scaled
by ``min(1, bytes held / piece length)``: a peer shares only verified pieces,
so its upload comes on as its first piece does (the epidemic start-up of a
swarm); seeds stay in the swarm. That upload is shared max-min fair among the peers still
downloading, each limited by its download cap (water-filling), and no peer
can hold more than the server has sent in total (every byte starts there:
the F/u_s term of the bound). client-server and cdn are the same without peer
upload; cdn splits the clients among the edges as the DNS round-robin does.

``efficiency`` stands for what the fluid leaves out and the piece level has:
tit-for-tat slots, pieces in flight, the end game. It is fitted to the
piece-level simulation (:func:`fit_efficiency`), which runs the product's
cores, so the flow model inherits their behaviour instead of assuming a
perfect scheduler. With ``efficiency = 1`` and ``dt -> 0`` it reaches the
bound of :mod:`seedcast.bench.theory` exactly (the tests check this).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from seedcast.bench.theory import Scenario

__all__ = ["FluidSettings", "fit_efficiency", "fluid_distribution", "water_fill"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FluidSettings:
    piece_length: int = 64 * 1024
    efficiency: float = 1.0
    start_seconds: float = 0.0
    steps: int = 2000
    """Time steps over the bound's duration (dt = bound / steps)."""


def water_fill(caps: FloatArray, total: float) -> FloatArray:
    """Rates ``min(caps, level)`` summing to ``total`` (or all of ``caps`` if that is less)."""
    if len(caps) == 0 or total <= 0:
        return np.zeros(len(caps))
    if total >= caps.sum():
        return caps.copy()
    level = total / len(caps)
    # Progressive filling: the peers capped below the level take their cap,
    # the rest share what is left equally; a few rounds at most.
    for _ in range(64):
        below = caps < level
        spare = total - caps[below].sum()
        above = len(caps) - int(below.sum())
        new_level = spare / above if above else math.inf
        if math.isclose(new_level, level, rel_tol=1e-12):
            break
        level = new_level
    return np.minimum(caps, level)


def fluid_distribution(
    strategy: str,
    scenario: Scenario,
    settings: FluidSettings | None = None,
    *,
    downloads: FloatArray | None = None,
    uploads: FloatArray | None = None,
    arrivals: FloatArray | None = None,
    bound_s: float | None = None,
) -> FloatArray:
    """Each client's completion time (seconds), in client order.

    ``downloads``/``uploads``/``arrivals`` override the scenario's equal caps
    and simultaneous start per client (heterogeneous peers, arrivals).
    """
    from seedcast.bench.theory import bound

    settings = settings or FluidSettings()
    count = scenario.clients
    size = float(scenario.file_size)
    down = np.full(count, float(scenario.peer_down)) if downloads is None else downloads
    up = np.full(count, float(scenario.peer_up)) if uploads is None else uploads
    arrive = np.zeros(count) if arrivals is None else arrivals
    arrive = arrive + settings.start_seconds
    reference = bound_s or bound(strategy, scenario)
    dt = max(reference / settings.steps, 1e-4)
    received = np.zeros(count)
    finished = np.full(count, math.inf)
    edge_rate = scenario.edge_up or scenario.server_up
    if strategy == "client-server":
        groups = [np.arange(count)]
        supplies = [scenario.server_up]
    elif strategy == "cdn":
        groups = [np.arange(edge, count, scenario.edges) for edge in range(scenario.edges)]
        supplies = [edge_rate] * scenario.edges
    elif strategy in ("p2p", "hybrid"):
        groups = [np.arange(count)]
        supplies = [
            scenario.server_up + (scenario.edges * edge_rate if strategy == "hybrid" else 0)
        ]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    peers_upload = strategy in ("p2p", "hybrid")
    sent_by_server = 0.0
    now = 0.0
    horizon = 50 * reference + arrive.max() + 10
    while now < horizon:
        present = arrive <= now
        downloading = present & (received < size)
        if not downloading.any():
            if present.all():
                break
            now = float(arrive[~present].min())
            continue
        moved = np.zeros(count)
        server_bytes = 0.0
        shareable = np.minimum(received / settings.piece_length, 1.0)
        for members, supply in zip(groups, supplies, strict=True):
            active = members[downloading[members]]
            if not len(active):
                continue
            offer = supply
            if peers_upload:
                offer += settings.efficiency * float(up[present] @ shareable[present])
            rates = water_fill(down[active], offer)
            step = rates * dt
            if peers_upload:
                # Nobody can hold bytes the server has not sent yet.
                ceiling = sent_by_server + supply * dt
                step = np.minimum(step, np.maximum(ceiling - received[active], 0.0))
            moved[active] = step
            server_bytes += min(supply * dt, float(step.sum()))
        sent_by_server += server_bytes
        before = received.copy()
        received = np.minimum(received + moved, size)
        newly = (received >= size) & ~np.isfinite(finished)
        if newly.any():
            # Interpolate within the step: the exact instant the last byte came.
            gained = np.maximum(received[newly] - before[newly], 1e-12)
            fraction = (size - before[newly]) / gained
            finished[newly] = now + np.clip(fraction, 0.0, 1.0) * dt
        now += dt
    return finished


def fit_efficiency(
    strategy: str,
    scenarios: Sequence[Scenario],
    targets: Sequence[float],
    settings: FluidSettings,
    *,
    simulate: Callable[[str, Scenario, FluidSettings], float] | None = None,
) -> float:
    """The peer-upload efficiency whose fluid times best match ``targets`` (least squares
    of the relative error), by golden-section search on [0.5, 1]."""

    def fluid_time(scenario: Scenario, candidate: FluidSettings) -> float:
        if simulate is not None:
            return simulate(strategy, scenario, candidate)
        return float(fluid_distribution(strategy, scenario, candidate).max())

    def loss(efficiency: float) -> float:
        candidate = FluidSettings(
            settings.piece_length, efficiency, settings.start_seconds, settings.steps
        )
        return sum(
            ((fluid_time(scenario, candidate) - target) / target) ** 2
            for scenario, target in zip(scenarios, targets, strict=True)
        )

    low, high = 0.5, 1.0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(18):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return (low + high) / 2
