"""The sans-IO core of emulated paths: who is where, what a path costs, when data leaves.

A **path** goes from a source region to a destination region. Its one-way
profile is the source's last mile, the region-to-region latency (the
``latency_ms`` table, either direction) and the destination's last mile;
jitter and loss add up the same way (losses combine as independent drops).
Edges and other servers sit in their region's core (no last mile of their
own), so a viewer in ``eu`` reaching an ``eu`` edge pays the eu last mile
each way, and an ``us`` edge the transatlantic latency on top.

A :class:`DelayLine` is one direction of one flow. ``admit(now)`` says when
what arrived at ``now`` is delivered (``now + delay + jitter``) or that it is
lost (``None``). A byte stream (``ordered=True``) never overtakes itself, and
a TCP segment that is "lost" is delivered one retransmission timeout late
(``max(200 ms, 2 RTT)``, Linux's minimum RTO) instead, since a relay cannot
drop bytes from a stream. Randomness comes from the caller's
``random.Random`` so runs repeat.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from seedcast.config import ClusterConfig, RegionConfig

MIN_RTO = 0.2
"""Seconds: Linux's minimum TCP retransmission timeout."""


@dataclass(frozen=True, slots=True)
class PathProfile:
    """One direction of a path: seconds of delay, +- seconds of jitter, drop probability."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError(f"delay and jitter must not be negative: {self}")
        if not 0 <= self.loss <= 1:
            raise ValueError(f"loss must be a fraction 0..1: {self}")

    def then(self, other: PathProfile) -> PathProfile:
        """This path followed by ``other``."""
        return PathProfile(
            self.delay + other.delay,
            self.jitter + other.jitter,
            1 - (1 - self.loss) * (1 - other.loss),
        )


def _table(regions: Mapping[str, RegionConfig], table: str, home: str, other: str) -> float:
    forward = getattr(regions[home], table).get(other) if home in regions else None
    if forward is not None:
        return float(forward)
    backward = getattr(regions[other], table).get(home) if other in regions else None
    return 0.0 if backward is None else float(backward)


class Topology:
    """Path profiles between the regions of a config, with runtime overrides.

    ``set_path`` replaces the core (region-to-region) part of a path, both
    directions, e.g. to show the DNS moving viewers when a path gets slow.
    """

    def __init__(self, regions: Sequence[RegionConfig]) -> None:
        self.regions = {region.name: region for region in regions}
        self._overrides: dict[tuple[str, str], PathProfile] = {}
        self._networks = [
            (region.name, ipaddress.ip_network(region.viewer_prefix)) for region in regions
        ]

    @classmethod
    def from_config(cls, config: ClusterConfig) -> Topology:
        return cls(config.regions)

    def region_of(self, address: str) -> str | None:
        """The region whose viewer prefix holds ``address`` (None: a server, or unknown)."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return None
        for name, network in self._networks:
            if parsed.version == network.version and parsed in network:
                return name
        return None

    def last_mile(self, region: str | None) -> PathProfile:
        found = self.regions.get(region or "")
        if found is None:
            return PathProfile()
        return PathProfile(
            found.last_mile_ms / 1000, found.last_mile_jitter_ms / 1000, found.last_mile_loss
        )

    def core(self, source: str | None, destination: str | None) -> PathProfile:
        """Region-to-region part of a path (0 within a region or for unknown ones)."""
        if source is None or destination is None:
            return PathProfile()
        override = self._overrides.get((source, destination))
        if override is not None:
            return override
        if source == destination:
            return PathProfile()
        return PathProfile(
            _table(self.regions, "latency_ms", source, destination) / 1000,
            0.0,
            _table(self.regions, "loss", source, destination),
        )

    def path(
        self,
        source: str | None,
        destination: str | None,
        *,
        source_last_mile: bool = True,
        destination_last_mile: bool = False,
    ) -> PathProfile:
        """One-way profile from ``source`` to ``destination`` (region names or None)."""
        profile = self.core(source, destination)
        if source_last_mile:
            profile = self.last_mile(source).then(profile)
        if destination_last_mile:
            profile = profile.then(self.last_mile(destination))
        return profile

    def set_path(self, source: str, destination: str, profile: PathProfile) -> None:
        """Override the core of ``source`` <-> ``destination`` (both directions)."""
        for name in (source, destination):
            if name not in self.regions:
                known = ", ".join(self.regions) or "none"
                raise ValueError(f"unknown region {name!r} (known: {known})")
        self._overrides[(source, destination)] = profile
        self._overrides[(destination, source)] = profile


class DelayLine:
    """When data admitted at ``now`` leaves one direction of a flow (see the module docstring).

    ``profile`` may be swapped at any time (``line.profile = ...``); data
    already scheduled keeps its time.
    """

    def __init__(self, profile: PathProfile, rng: random.Random, *, ordered: bool) -> None:
        self.profile = profile
        self.rng = rng
        self.ordered = ordered
        self.last_out = float("-inf")
        self.admitted = 0
        self.lost = 0

    def admit(self, now: float, *, rtt: float | None = None) -> float | None:
        """Delivery time of what arrives at ``now``; None when it is dropped.

        ``rtt`` (seconds, ordered lines only) sizes the retransmission delay
        of a "lost" segment; default twice this direction's delay.
        """
        profile = self.profile
        self.admitted += 1
        lost = profile.loss > 0 and self.rng.random() < profile.loss
        delay = profile.delay
        if profile.jitter > 0:
            delay = max(0.0, delay + self.rng.uniform(-profile.jitter, profile.jitter))
        if lost:
            self.lost += 1
            if not self.ordered:
                return None
            delay += max(MIN_RTO, 2 * profile.delay if rtt is None else rtt)
        out = now + delay
        if self.ordered:
            out = max(out, self.last_out)
            self.last_out = out
        return out
