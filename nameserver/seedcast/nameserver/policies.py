"""Edge selection: which edge addresses answer a steered name.

The policies are pure functions of the candidate edges and their inputs
(a turn counter, a hash key, load figures and a ``random.Random``):

- :func:`round_robin` rotates through the pool, one step per answer;
- :func:`rendezvous` (highest random weight hashing) ranks edges by
  ``blake2b(edge name, key)``, so a name keeps its edge and removing an edge
  moves only the names that edge had;
- :func:`least_loaded` samples edges without replacement, weighted by
  ``1 / (1 + load)``;
- geo (in :class:`Steering`) walks the regions by the latency table from the
  client's region and answers from the nearest one with an eligible edge,
  rotating within it;
- latency answers the client's region with the eligible edge of lowest
  *measured* delay (:class:`seedcast.nameserver.delays.MeasuredDelays`, fed by
  the path prober; the config table is only its starting point).

:class:`Steering` holds the little state these need (turn counters per name,
a memo of hash choices keyed by the health generation), asks the
:class:`HealthTracker` which edges are eligible, and applies the all-down
policy when none is. :class:`Locator` maps a source address or an EDNS Client
Subnet (RFC 7871) to a region and the SCOPE prefix length for which that
decision holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from seedcast.config import ClusterConfig, RegionConfig, SteeredName
from seedcast.nameserver.delays import MeasuredDelays
from seedcast.nameserver.health import HealthTracker

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MEMO_LIMIT = 65536


class Policy(StrEnum):
    ROUND_ROBIN = "round-robin"
    GEO = "geo"
    LEAST_LOADED = "least-loaded"
    CONSISTENT_HASH = "consistent-hash"
    LATENCY = "latency"


class AllDown(StrEnum):
    ORIGIN = "origin"
    ALL_EDGES = "all-edges"
    SERVFAIL = "servfail"


@dataclass(frozen=True, slots=True)
class Edge:
    name: str
    address: str
    region: str
    version: int
    """IP version of ``address``: 4 (answered as A) or 6 (AAAA)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome for one query; hashable, so rendered answers can be cached by it.

    The hash is computed once (selections are reused across queries and are
    part of the answer-cache key on the hot path).
    """

    addresses: tuple[str, ...]
    edges: tuple[str, ...]
    """Edge names in answer order (``origin`` when the all-down policy answered)."""
    scope: int = 0
    """EDNS Client Subnet SCOPE prefix length to answer with (0 = not tailored)."""
    servfail: bool = False
    all_down: bool = False
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.addresses, self.edges, self.scope, self.servfail, self.all_down)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash


# ---------------------------------------------------------------------------
# Pure policies


def round_robin(pool: Sequence[Edge], count: int, turn: int) -> tuple[Edge, ...]:
    """``count`` edges starting at ``turn`` (mod the pool), wrapping around."""
    if not pool:
        return ()
    start = turn % len(pool)
    rotated = [*pool[start:], *pool[:start]]
    return tuple(rotated[:count])


def rendezvous_score(edge: str, key: str) -> int:
    digest = hashlib.blake2b(f"{edge}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous(pool: Sequence[Edge], key: str, count: int) -> tuple[Edge, ...]:
    """The ``count`` edges with the highest rendezvous score for ``key``."""
    ranked = sorted(pool, key=lambda edge: rendezvous_score(edge.name, key), reverse=True)
    return tuple(ranked[:count])


def least_loaded(
    pool: Sequence[Edge], loads: Mapping[str, float | None], count: int, rng: random.Random
) -> tuple[Edge, ...]:
    """Weighted sampling without replacement, weight ``1 / (1 + load)``.

    An edge without a load figure counts as the mean of the known ones.
    """
    known = [load for edge in pool if (load := loads.get(edge.name)) is not None]
    default = sum(known) / len(known) if known else 0.0
    candidates = list(pool)
    weights = [1.0 / (1.0 + max(0.0, _or(loads.get(edge.name), default))) for edge in candidates]
    chosen: list[Edge] = []
    while candidates and len(chosen) < count:
        point = rng.random() * sum(weights)
        index = 0
        while index < len(weights) - 1 and point >= weights[index]:
            point -= weights[index]
            index += 1
        chosen.append(candidates.pop(index))
        weights.pop(index)
    return tuple(chosen)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def region_distance(regions: Mapping[str, RegionConfig], home: str, other: str) -> float:
    if home == other:
        return 0.0
    forward = regions[home].latency_ms.get(other) if home in regions else None
    if forward is not None:
        return forward
    backward = regions[other].latency_ms.get(home) if other in regions else None
    return float("inf") if backward is None else backward


def region_order(regions: Sequence[RegionConfig], home: str) -> tuple[str, ...]:
    """Region names, nearest first by the latency table (ties: config order)."""
    by_name = {region.name: region for region in regions}
    indexed = list(enumerate(region.name for region in regions))
    indexed.sort(key=lambda item: (region_distance(by_name, home, item[1]), item[0]))
    return tuple(name for _, name in indexed)


# ---------------------------------------------------------------------------
# Where is the client?


class Locator:
    """Source address or client subnet -> (region name or None, scope prefix length)."""

    def __init__(self, regions: Sequence[RegionConfig], *, memo_limit: int = _MEMO_LIMIT) -> None:
        self._networks: list[tuple[str, IPNetwork]] = [
            (region.name, ipaddress.ip_network(region.viewer_prefix)) for region in regions
        ]
        self._by_address: dict[str, str | None] = {}
        self._by_subnet: dict[tuple[int, int, bytes], tuple[str | None, int]] = {}
        self._memo_limit = memo_limit

    def region_of(self, address: str) -> str | None:
        """The first region whose viewer prefix holds ``address`` (None: none, or not an IP)."""
        try:
            return self._by_address[address]
        except KeyError:
            pass
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            region = None
        else:
            region = self._decide(parsed)
        if len(self._by_address) >= self._memo_limit:
            self._by_address.clear()
        self._by_address[address] = region
        return region

    def subnet(self, family: int, source_prefix: int, address: bytes) -> tuple[str | None, int]:
        """Region and SCOPE for an ECS option (family 1 = IPv4, 2 = IPv6; address is truncated).

        A SOURCE PREFIX-LENGTH of 0 means "don't tailor": no region, scope 0.
        """
        key = (family, source_prefix, address)
        memo = self._by_subnet.get(key)
        if memo is not None:
            return memo
        if source_prefix == 0:
            result: tuple[str | None, int] = (None, 0)
        else:
            width = 4 if family == 1 else 16
            full = address.ljust(width, b"\0")
            parsed: IPAddress = (
                ipaddress.IPv4Address(full) if family == 1 else ipaddress.IPv6Address(full)
            )
            region = self._decide(parsed)
            result = (region, self._scope(parsed, region))
        if len(self._by_subnet) >= self._memo_limit:
            self._by_subnet.clear()
        self._by_subnet[key] = result
        return result

    def _decide(self, address: IPAddress) -> str | None:
        for name, network in self._networks:
            if network.version == address.version and address in network:
                return name
        return None

    def _scope(self, address: IPAddress, region: str | None) -> int:
        """The shortest prefix of ``address`` all of whose addresses get the same decision."""
        same_version = [
            (name, network)
            for name, network in self._networks
            if network.version == address.version
        ]
        for length in range(address.max_prefixlen + 1):
            candidate = ipaddress.ip_network((address, length), strict=False)
            if region is None:
                if not any(candidate.overlaps(network) for _, network in same_version):
                    return length
                continue
            for name, network in same_version:
                if name == region:
                    if candidate.subnet_of(network):  # type: ignore[arg-type]
                        return length
                    break
                if candidate.overlaps(network):
                    break
        return address.max_prefixlen


# ---------------------------------------------------------------------------
# The stateful part


def advertised_host(url: str) -> str:
    """The address players are sent to: the host of an edge's (or the origin's) URL.

    The URL is ``public_url`` when set (multi-host), else ``http://<listen>``.
    It must be an IP address by now: ``seedcast dns`` resolves names once at
    start (see :func:`seedcast.nameserver.commands.resolve_advertised_names`).
    """
    host = urlsplit(url).hostname or ""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        raise ValueError(f"{url}: 0.0.0.0/:: is where a server listens, not where to send viewers")
    return str(address)


def edges_from_config(config: ClusterConfig) -> list[Edge]:
    """The edges as answered: their relays' addresses when ``netem.enabled``."""
    edges = []
    for edge in config.edges:
        if config.netem.enabled:
            host = advertised_host(f"http://{config.edge_relay(edge)}")
        else:
            host = advertised_host(edge.url)
        edges.append(Edge(edge.name, host, edge.region, ipaddress.ip_address(host).version))
    return edges


class Steering:
    """Chooses edge addresses for steered names; see the module docstring.

    Round-robin and geo answers are rotations: for a given pool the possible
    answers are built once per health generation and handed out in turn, so a
    query costs a counter step and a list index. Hash choices are memoized
    per (name, generation). Least-loaded draws from ``rng`` every time.
    """

    def __init__(
        self,
        *,
        edges: Sequence[Edge],
        regions: Sequence[RegionConfig],
        health: HealthTracker,
        all_down: str = AllDown.ORIGIN,
        origin_address: str | None = None,
        delays: MeasuredDelays | None = None,
    ) -> None:
        self.edges = tuple(edges)
        self.health = health
        self.delays = delays
        self.all_down = AllDown(all_down)
        self.origin_address = origin_address
        self._orders = {region.name: region_order(regions, region.name) for region in regions}
        self._by_name = {edge.name: edge for edge in self.edges}
        self._policies = {policy.value: policy for policy in Policy}
        self._turns: dict[tuple[str, int, str | None], int] = {}
        self._pools: dict[int, tuple[int, tuple[Edge, ...]]] = {}
        self._rotations: dict[
            tuple[str, int, str | None, int, int], tuple[tuple[int, int], list[Selection]]
        ] = {}
        self._hash_memo: dict[tuple[str, int, int, int], Selection] = {}

    @classmethod
    def from_config(cls, config: ClusterConfig, health: HealthTracker) -> Steering:
        origin_host = advertised_host(config.origin.url)
        return cls(
            edges=edges_from_config(config),
            regions=config.regions,
            health=health,
            all_down=config.dns.all_down,
            origin_address=origin_host,
            delays=MeasuredDelays.from_config(config),
        )

    def pool(self, version: int) -> tuple[Edge, ...]:
        """Eligible edges of an IP version, memoized per health generation."""
        generation = self.health.generation
        memo = self._pools.get(version)
        if memo is not None and memo[0] == generation:
            return memo[1]
        configured = [edge.name for edge in self.edges if edge.version == version]
        pool = tuple(self._by_name[name] for name in self.health.eligible(configured))
        self._pools[version] = (generation, pool)
        return pool

    def select(
        self,
        steered: SteeredName,
        owner: str,
        version: int,
        rng: random.Random,
        *,
        region: str | None = None,
        scope: int = 0,
    ) -> Selection:
        """Addresses for ``owner`` (lower-case text, no final dot) matched by ``steered``.

        ``region``/``scope`` come from :class:`Locator` (used by the geo policy only;
        other policies answer scope 0). An empty ``addresses`` means NODATA: no edge
        of that IP version is configured.
        """
        policy = self._policies.get(steered.policy) or Policy(steered.policy)
        count = max(1, steered.answers)
        generation = self.health.generation
        if policy is Policy.CONSISTENT_HASH:
            key = (owner, version, count, generation)
            chosen = self._hash_memo.get(key)
            if chosen is None:
                chosen = self._fallback(version) or self._build(
                    rendezvous(self._candidates(version), owner, count), 0
                )
                if len(self._hash_memo) >= _MEMO_LIMIT:
                    self._hash_memo.clear()
                self._hash_memo[key] = chosen
            return chosen
        if policy is Policy.LEAST_LOADED:
            fallback = self._fallback(version)
            if fallback is not None:
                return fallback
            pool = self._candidates(version)
            loads = {edge.name: self.health.load(edge.name) for edge in pool}
            return self._build(least_loaded(pool, loads, count, rng), 0)
        group: str | None = None
        if policy is Policy.GEO or policy is Policy.LATENCY:
            # An unknown client (no region) gets every eligible edge in turn, but the
            # scope still says for which block of addresses that decision holds.
            group = region if region in self._orders else None
        else:
            scope = 0
        rotation_key = (steered.name, version, group, scope, count)
        memo = self._rotations.get(rotation_key)
        measured = self.delays.generation if self.delays is not None else 0
        if memo is None or memo[0] != (generation, measured):
            memo = ((generation, measured), self._rotation(version, group, scope, count, policy))
            self._rotations[rotation_key] = memo
        rotation = memo[1]
        if len(rotation) == 1:
            return rotation[0]
        turn_key = (steered.name, version, group)
        turn = self._turns.get(turn_key, 0)
        self._turns[turn_key] = turn + 1
        return rotation[turn % len(rotation)]

    def _candidates(self, version: int) -> tuple[Edge, ...]:
        """Eligible edges, or every configured one under the all-edges policy."""
        pool = self.pool(version)
        if pool:
            return pool
        return tuple(edge for edge in self.edges if edge.version == version)

    def _fallback(self, version: int) -> Selection | None:
        """The answer when no edge of ``version`` is eligible (None: there is one)."""
        if self.pool(version):
            return None
        if not any(edge.version == version for edge in self.edges):
            return Selection((), ())  # nothing configured: NODATA
        if self.all_down is AllDown.SERVFAIL:
            return Selection((), (), servfail=True, all_down=True)
        if self.all_down is AllDown.ORIGIN:
            origin = self.origin_address
            if origin is None or ipaddress.ip_address(origin).version != version:
                return Selection((), (), all_down=True)
            return Selection((origin,), ("origin",), all_down=True)
        return None  # all-edges: the policy runs over every configured edge

    def _build(self, chosen: Sequence[Edge], scope: int) -> Selection:
        all_down = not self.pool(chosen[0].version) if chosen else False
        return Selection(
            tuple(edge.address for edge in chosen),
            tuple(edge.name for edge in chosen),
            scope=scope,
            all_down=all_down,
        )

    def _rotation(
        self, version: int, group: str | None, scope: int, count: int, policy: Policy
    ) -> list[Selection]:
        """Every answer round-robin can give, in turn order, for a region (or all edges)."""
        fallback = self._fallback(version)
        if fallback is not None:
            return [fallback]
        pool = self._candidates(version)
        if policy is Policy.LATENCY and group is not None and self.delays is not None:
            names = self.delays.choose(group, [edge.name for edge in pool], count)
            if names:
                return [self._build([self._by_name[name] for name in names], scope)]
        if group is not None:
            for candidate_region in self._orders[group]:
                local = tuple(edge for edge in pool if edge.region == candidate_region)
                if local:
                    pool = local
                    break
        return [self._build(round_robin(pool, count, turn), scope) for turn in range(len(pool))]
