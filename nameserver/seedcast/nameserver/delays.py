"""Measured delay from each region's clients to each edge, for the ``latency`` policy.

Sans-IO: :class:`MeasuredDelays` is fed probe results (``record(region, edge,
rtt or None, now)``) and keeps, per (region, edge), an exponentially weighted
moving average of the round-trip time and of the loss (a probe without an
answer counts as lost). It starts from the config: each path's RTT is what the
region table says (last mile + region-to-region latency, both ways, see
:class:`seedcast.netem.paths.Topology`), so answers are sensible before the
first probe and a path never measured keeps its configured figure.

Each region has a chosen edge: the one with the lowest *cost* (RTT, plus one
retransmission timeout per lost probe's worth of loss). A region moves to
another edge only when that edge is cheaper by ``margin`` (a fraction), so two
edges of nearly equal delay do not make answers flap. ``generation`` changes
whenever a choice changes, so the steering can cache answers on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from seedcast.config import ClusterConfig
from seedcast.netem.paths import MIN_RTO, Topology


@dataclass(slots=True)
class PathEstimate:
    rtt: float
    """Seconds (moving average; the configured figure until measured)."""
    loss: float = 0.0
    samples: int = 0
    lost: int = 0
    last_sample: float | None = None
    last_rtt: float | None = None

    @property
    def cost(self) -> float:
        return self.rtt + self.loss * max(MIN_RTO, 2 * self.rtt)


@dataclass(frozen=True, slots=True)
class DelayRow:
    """One (region, edge) figure, for metrics and status."""

    region: str
    prefix: str
    edge: str
    rtt: float
    loss: float
    samples: int
    lost: int
    chosen: bool


class MeasuredDelays:
    """RTT and loss per (region, edge); see the module docstring."""

    def __init__(
        self,
        topology: Topology,
        edges: Iterable[tuple[str, str]],
        *,
        alpha: float = 0.5,
        margin: float = 0.1,
    ) -> None:
        """``edges``: (edge name, edge region) pairs."""
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.margin = margin
        self.prefixes = {name: region.viewer_prefix for name, region in topology.regions.items()}
        pairs = list(edges)
        self.edges = tuple(name for name, _ in pairs)
        self._estimates: dict[tuple[str, str], PathEstimate] = {}
        for region in topology.regions:
            for edge, edge_region in pairs:
                there = topology.path(region, edge_region or None)
                back = topology.path(
                    edge_region or None, region, source_last_mile=False, destination_last_mile=True
                )
                self._estimates[(region, edge)] = PathEstimate(rtt=there.delay + back.delay)
        self._chosen: dict[str, str] = {}
        for region in topology.regions:
            best = self._cheapest(region, self.edges)
            if best is not None:
                self._chosen[region] = best
        self.generation = 0

    @classmethod
    def from_config(cls, config: ClusterConfig) -> MeasuredDelays:
        return cls(
            Topology.from_config(config),
            [(edge.name, edge.region) for edge in config.edges],
            alpha=config.netem.probe_alpha,
            margin=config.netem.switch_margin,
        )

    def estimate(self, region: str, edge: str) -> PathEstimate:
        return self._estimates[(region, edge)]

    def record(self, region: str, edge: str, rtt: float | None, now: float) -> None:
        """One probe: its round-trip time in seconds, or None when it got no answer."""
        entry = self._estimates.get((region, edge))
        if entry is None:
            return
        alpha = self.alpha
        entry.samples += 1
        entry.last_sample = now
        if rtt is None:
            entry.lost += 1
            entry.loss += alpha * (1 - entry.loss)
        else:
            rtt = max(0.0, rtt)
            entry.last_rtt = rtt
            entry.loss -= alpha * entry.loss
            # The first measurement replaces the configured guess outright.
            entry.rtt = (
                rtt if entry.samples - entry.lost == 1 else entry.rtt + alpha * (rtt - entry.rtt)
            )
        self._reconsider(region)

    def _cheapest(self, region: str, edges: Iterable[str]) -> str | None:
        ranked = self.ranked(region, edges)
        return ranked[0] if ranked else None

    def ranked(self, region: str, edges: Iterable[str]) -> list[str]:
        """``edges`` cheapest first (ties: the given order)."""
        names = list(edges)
        order = {name: index for index, name in enumerate(names)}
        return sorted(
            (name for name in names if (region, name) in self._estimates),
            key=lambda name: (self._estimates[(region, name)].cost, order[name]),
        )

    def _reconsider(self, region: str) -> None:
        best = self._cheapest(region, self.edges)
        current = self._chosen.get(region)
        if best is None or best == current:
            return
        if current is not None:
            now_cost = self._estimates[(region, current)].cost
            if self._estimates[(region, best)].cost >= now_cost * (1 - self.margin):
                return
        self._chosen[region] = best
        self.generation += 1

    def choose(self, region: str, edges: Sequence[str], count: int = 1) -> list[str]:
        """The ``count`` edges for ``region`` among ``edges`` (eligible ones), best first.

        The region's chosen edge comes first when it is among them, then the
        rest by cost.
        """
        ranked = self.ranked(region, edges)
        chosen = self._chosen.get(region)
        if chosen in ranked:
            ranked.remove(chosen)
            ranked.insert(0, chosen)
        return ranked[:count]

    def rows(self) -> list[DelayRow]:
        return [
            DelayRow(
                region=region,
                prefix=self.prefixes.get(region, ""),
                edge=edge,
                rtt=entry.rtt,
                loss=entry.loss,
                samples=entry.samples,
                lost=entry.lost,
                chosen=self._chosen.get(region) == edge,
            )
            for (region, edge), entry in self._estimates.items()
        ]
