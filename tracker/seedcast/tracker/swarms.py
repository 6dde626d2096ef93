"""The tracker core: swarms of peers per torrent, announce and scrape, expiry, bounds.

How it works (sans-IO: no sockets, no clock; every call takes ``now`` and a ``random.Random``):

- A **swarm** per info hash holds its peers by peer id, split into two slot arrays, seeders and
  leechers, so a random subset of ``k`` peers costs O(k) (``Random.sample`` over an index range
  that spans both arrays) and removing a peer is a swap with the last slot. A second index by
  (ip, port) means a client that restarts with a new peer id replaces its old entry instead of
  being handed out twice.
- **Announce**: ``stopped`` removes the peer and returns no peers. Anything else inserts or
  refreshes the peer (``left == 0`` makes it a seeder; ``completed`` counts one download per
  peer) and answers with up to ``numwant`` (default 50, capped at 200) random other peers:
  never the requester, and only leechers when the requester is a seed. The interval sent back
  is jittered by +-``interval_jitter`` so clients drift apart.
- **Expiry**: one global ordered dict keeps every (info hash, peer id) in order of last
  announce (refreshing moves it to the end), so expiring the peers silent for longer than
  interval (+jitter) + grace pops from the front and costs only what it removes. Every
  announce expires first; the shell also calls :meth:`Tracker.expire` on a timer.
- **Bounds**: at most ``max_peers_per_source`` entries per swarm from one IP address (a new
  one replaces that address's own longest-silent entry, so a flood of fresh peer ids churns
  only itself), ``max_peers_per_torrent`` per swarm and ``max_peers`` in total. A peer is
  *verified* once it has announced twice (a real client re-announces; a forged flood fires
  once): when a swarm is full, a newcomer replaces its oldest unverified peer, never a
  verified one; with none to replace it still gets an answer, with a warning, but is not
  remembered. At most ``max_torrents`` swarms: an empty swarm (kept only for its download
  count) is evicted first, then the oldest swarm without a verified peer; if none, a new
  torrent is refused.
- **Allowlist** (private mode): announces for other info hashes are refused and scrapes
  leave them out.
- **Identity**: a peer id already in the swarm from another IP address is refused unless the
  announce carries the same ``key`` as the first one, so nobody can stop or move someone
  else's entry by copying a peer id.

Refusals raise :class:`~seedcast.tracker._events.Rejected`; the protocol layers turn them into
a ``failure reason`` (HTTP) or an error packet (UDP).
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence

from seedcast.config import TrackerConfig
from seedcast.errors import ConfigError

from ._events import (
    INFO_HASH_LENGTH,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResult,
    PeerAddress,
    Rejected,
    ScrapeEntry,
    SwarmStatistics,
    TrackerStatistics,
)

MAX_SCRAPE_ALL = 1000
"""A scrape naming no torrent lists at most this many (the busiest)."""


def pack_address(ip: str, port: int) -> bytes:
    """Compact peer form (BEP 23 / BEP 7): the address bytes then the port, big-endian."""
    return ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")


class _Peer:
    __slots__ = ("address", "completed", "key", "last_seen", "left", "seed", "slot", "verified")

    def __init__(self, address: PeerAddress, key: bytes, left: int | None, now: float) -> None:
        self.address = address
        self.key = key
        self.left = left
        self.seed = left == 0
        self.last_seen = now
        self.completed = False
        self.slot = -1
        self.verified = False


class _PeerSlots:
    """Peers in a list with O(1) add, O(1) swap-remove and O(k) random choice."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[_Peer] = []

    def add(self, peer: _Peer) -> None:
        peer.slot = len(self.items)
        self.items.append(peer)

    def remove(self, peer: _Peer) -> None:
        last = self.items.pop()
        if last is not peer:
            self.items[peer.slot] = last
            last.slot = peer.slot
        peer.slot = -1

    def __len__(self) -> int:
        return len(self.items)


class _Swarm:
    __slots__ = (
        "by_endpoint",
        "by_source",
        "downloaded",
        "leechers",
        "peers",
        "seeders",
        "unverified",
        "verified",
    )

    def __init__(self) -> None:
        self.peers: dict[bytes, _Peer] = {}
        self.by_endpoint: dict[tuple[str, int], bytes] = {}
        # peer ids per IP address, longest silent first
        self.by_source: dict[str, OrderedDict[bytes, None]] = {}
        # peers that announced only once, oldest first
        self.unverified: OrderedDict[bytes, None] = OrderedDict()
        self.verified = 0
        self.seeders = _PeerSlots()
        self.leechers = _PeerSlots()
        self.downloaded = 0

    def slots_of(self, peer: _Peer) -> _PeerSlots:
        return self.seeders if peer.seed else self.leechers


class Tracker:
    """Swarm state and the announce/scrape rules. One per tracker process."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.allowlist = _parse_allowlist(self.config.allowlist)
        self._swarms: dict[bytes, _Swarm] = {}
        self._empty: OrderedDict[bytes, None] = OrderedDict()
        # swarms with no verified peer, oldest first: what a flood of fresh hashes creates
        self._unproven: OrderedDict[bytes, None] = OrderedDict()
        self._recency: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
        self._peer_count = 0
        self._seeder_count = 0
        self._announces: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._scrapes = 0
        self._not_stored = 0
        self._expired = 0
        self._displaced = 0
        jitter = min(max(self.config.interval_jitter, 0.0), 0.9)
        self._jitter = jitter
        self.peer_ttl = math.ceil(self.config.interval * (1 + jitter)) + self.config.peer_grace
        """Seconds after its last announce that a peer is forgotten."""

    # --- announce -------------------------------------------------------------------------

    def announce(self, request: AnnounceRequest, now: float, rng: random.Random) -> AnnounceResult:
        """Apply one announce and choose the peers to send back. Raises Rejected."""
        self.expire(now)
        if self.allowlist is not None and request.info_hash not in self.allowlist:
            raise self._reject("torrent not registered with this tracker", "not_allowed")
        swarm = self._swarms.get(request.info_hash)
        peer = swarm.peers.get(request.peer_id) if swarm is not None else None
        moved = peer is not None and peer.address.ip != request.ip
        if moved and not (peer is not None and peer.key and peer.key == request.key):
            raise self._reject(
                "peer_id already in this swarm from another address", "peer_id_conflict"
            )
        interval = self._interval(rng)
        min_interval = max(1, round(self.config.min_interval))

        if request.event is AnnounceEvent.STOPPED:
            if swarm is not None and peer is not None:
                self._remove(request.info_hash, swarm, peer)
            self._announces[request.event.label] += 1
            complete = len(swarm.seeders) if swarm is not None else 0
            incomplete = len(swarm.leechers) if swarm is not None else 0
            return AnnounceResult(interval, min_interval, complete, incomplete, ())

        if swarm is None:
            swarm = self._new_swarm(request.info_hash)
        warning = ""
        if peer is None:
            peer = self._insert(request, swarm, now)
            if peer is None:
                warning = "swarm is full: you are not listed, announce again later"
        else:
            self._refresh(request, swarm, peer, now)
        if request.event is AnnounceEvent.COMPLETED and (peer is None or not peer.completed):
            swarm.downloaded += 1
            if peer is not None:
                peer.completed = True
        self._announces[request.event.label] += 1

        numwant = self.config.numwant_default if request.numwant is None else request.numwant
        numwant = max(0, min(numwant, self.config.numwant_max))
        peers = self._choose(swarm, request, numwant, rng)
        return AnnounceResult(
            interval, min_interval, len(swarm.seeders), len(swarm.leechers), peers, warning
        )

    def _interval(self, rng: random.Random) -> int:
        spread = rng.uniform(-self._jitter, self._jitter)
        return max(1, round(self.config.interval * (1 + spread)))

    def _new_swarm(self, info_hash: bytes) -> _Swarm:
        if len(self._swarms) >= self.config.max_torrents:
            if self._empty:
                evicted, _ = self._empty.popitem(last=False)
                del self._swarms[evicted]
                self._unproven.pop(evicted, None)
            elif self._unproven:
                evicted, _ = self._unproven.popitem(last=False)
                self._drop_swarm(evicted)
            else:
                raise self._reject("tracker is full: too many torrents", "tracker_full")
        swarm = _Swarm()
        self._swarms[info_hash] = swarm
        self._empty[info_hash] = None
        self._unproven[info_hash] = None
        return swarm

    def _drop_swarm(self, info_hash: bytes) -> None:
        swarm = self._swarms[info_hash]
        for peer in list(swarm.peers.values()):
            self._remove(info_hash, swarm, peer)
            self._displaced += 1
        self._empty.pop(info_hash, None)
        del self._swarms[info_hash]

    def _make_room(self, request: AnnounceRequest, swarm: _Swarm) -> bool:
        """Free a slot for a new peer per the bounds (see the module docstring)."""
        own = swarm.by_source.get(request.ip)
        if own is not None and len(own) >= self.config.max_peers_per_source:
            self._remove(request.info_hash, swarm, swarm.peers[next(iter(own))])
            self._displaced += 1
        if len(swarm.peers) >= self.config.max_peers_per_torrent:
            if not swarm.unverified:
                return False
            self._remove(request.info_hash, swarm, swarm.peers[next(iter(swarm.unverified))])
            self._displaced += 1
        return self._peer_count < self.config.max_peers

    def _insert(self, request: AnnounceRequest, swarm: _Swarm, now: float) -> _Peer | None:
        endpoint = (request.ip, request.port)
        previous_id = swarm.by_endpoint.get(endpoint)
        if previous_id is not None:
            # Only one process can listen on ip:port: the old entry is a restarted client.
            self._remove(request.info_hash, swarm, swarm.peers[previous_id])
        if not self._make_room(request, swarm):
            self._not_stored += 1
            return None
        address = PeerAddress(
            request.peer_id, request.ip, request.port, pack_address(request.ip, request.port)
        )
        peer = _Peer(address, request.key, request.left, now)
        swarm.peers[request.peer_id] = peer
        swarm.by_endpoint[endpoint] = request.peer_id
        swarm.by_source.setdefault(request.ip, OrderedDict())[request.peer_id] = None
        swarm.unverified[request.peer_id] = None
        swarm.slots_of(peer).add(peer)
        self._recency[(request.info_hash, request.peer_id)] = None
        self._peer_count += 1
        self._seeder_count += peer.seed
        self._empty.pop(request.info_hash, None)
        return peer

    def _refresh(self, request: AnnounceRequest, swarm: _Swarm, peer: _Peer, now: float) -> None:
        peer.last_seen = now
        self._recency.move_to_end((request.info_hash, request.peer_id))
        if not peer.verified:
            peer.verified = True
            del swarm.unverified[request.peer_id]
            swarm.verified += 1
            self._unproven.pop(request.info_hash, None)
        if request.key and not peer.key:
            peer.key = request.key
        if (request.ip, request.port) != (peer.address.ip, peer.address.port):
            other = swarm.by_endpoint.get((request.ip, request.port))
            if other is not None and other != request.peer_id:
                self._remove(request.info_hash, swarm, swarm.peers[other])
            del swarm.by_endpoint[(peer.address.ip, peer.address.port)]
            self._forget_source(swarm, peer)
            swarm.by_source.setdefault(request.ip, OrderedDict())[request.peer_id] = None
            peer.address = PeerAddress(
                request.peer_id, request.ip, request.port, pack_address(request.ip, request.port)
            )
            swarm.by_endpoint[(request.ip, request.port)] = request.peer_id
        else:
            swarm.by_source[request.ip].move_to_end(request.peer_id)
        if request.left is not None:
            peer.left = request.left
        seed = request.left == 0 if request.left is not None else peer.seed
        if seed != peer.seed:
            swarm.slots_of(peer).remove(peer)
            self._seeder_count += 1 if seed else -1
            peer.seed = seed
            swarm.slots_of(peer).add(peer)

    def _remove(self, info_hash: bytes, swarm: _Swarm, peer: _Peer) -> None:
        peer_id = peer.address.peer_id
        swarm.slots_of(peer).remove(peer)
        del swarm.peers[peer_id]
        del swarm.by_endpoint[(peer.address.ip, peer.address.port)]
        self._forget_source(swarm, peer)
        if peer.verified:
            swarm.verified -= 1
            if not swarm.verified:
                self._unproven[info_hash] = None
        else:
            del swarm.unverified[peer_id]
        del self._recency[(info_hash, peer_id)]
        self._peer_count -= 1
        self._seeder_count -= peer.seed
        if not swarm.peers:
            self._empty[info_hash] = None

    @staticmethod
    def _forget_source(swarm: _Swarm, peer: _Peer) -> None:
        ip = peer.address.ip
        own = swarm.by_source[ip]
        del own[peer.address.peer_id]
        if not own:
            del swarm.by_source[ip]

    def _choose(
        self, swarm: _Swarm, request: AnnounceRequest, numwant: int, rng: random.Random
    ) -> tuple[PeerAddress, ...]:
        if numwant == 0:
            return ()
        leechers = swarm.leechers.items
        pools: list[list[_Peer]] = (
            [leechers] if request.is_seed else [leechers, swarm.seeders.items]
        )
        size = sum(len(pool) for pool in pools)
        # The requester may be in the pools: draw one extra so dropping it still leaves numwant.
        draw = min(size, numwant + 1)
        chosen: list[PeerAddress] = []
        for index in rng.sample(range(size), draw):
            peer = leechers[index] if index < len(leechers) else pools[-1][index - len(leechers)]
            if peer.address.peer_id == request.peer_id:
                continue
            chosen.append(peer.address)
            if len(chosen) == numwant:
                break
        return tuple(chosen)

    # --- scrape, expiry, statistics -------------------------------------------------------

    def scrape(self, info_hashes: Sequence[bytes], now: float) -> list[ScrapeEntry]:
        """Counts for the named torrents (unknown ones read as zeros; outside the allowlist
        they are left out). Naming none lists the busiest ``MAX_SCRAPE_ALL`` torrents."""
        self.expire(now)
        self._scrapes += 1
        if not info_hashes:
            busiest = sorted(
                self._swarms.items(), key=lambda item: len(item[1].peers), reverse=True
            )[:MAX_SCRAPE_ALL]
            info_hashes = [info_hash for info_hash, _ in busiest]
        entries: list[ScrapeEntry] = []
        for info_hash in dict.fromkeys(info_hashes):
            if self.allowlist is not None and info_hash not in self.allowlist:
                continue
            swarm = self._swarms.get(info_hash)
            if swarm is None:
                entries.append(ScrapeEntry(info_hash, 0, 0, 0))
            else:
                entries.append(
                    ScrapeEntry(
                        info_hash, len(swarm.seeders), swarm.downloaded, len(swarm.leechers)
                    )
                )
        return entries

    def expire(self, now: float) -> int:
        """Forget peers silent for longer than ``peer_ttl``; returns how many."""
        removed = 0
        while self._recency:
            info_hash, peer_id = next(iter(self._recency))
            swarm = self._swarms[info_hash]
            peer = swarm.peers[peer_id]
            if now - peer.last_seen <= self.peer_ttl:
                break
            self._remove(info_hash, swarm, peer)
            removed += 1
        self._expired += removed
        return removed

    def note_error(self, reason: str) -> None:
        """Count a request refused before it reached the core (bad query, bad packet)."""
        self._errors[reason] += 1

    def _reject(self, message: str, reason: str) -> Rejected:
        self._errors[reason] += 1
        return Rejected(message, reason=reason)

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(
            torrents=len(self._swarms),
            peers=self._peer_count,
            seeders=self._seeder_count,
            announces=dict(self._announces),
            scrapes=self._scrapes,
            errors=dict(self._errors),
            peers_not_stored=self._not_stored,
            expired=self._expired,
            peers_displaced=self._displaced,
        )

    def swarm_statistics(self, limit: int | None = None) -> list[SwarmStatistics]:
        """Per-torrent counts, busiest first (``limit`` of them when given)."""
        swarms: Iterable[tuple[bytes, _Swarm]] = sorted(
            self._swarms.items(), key=lambda item: len(item[1].peers), reverse=True
        )
        result = [
            SwarmStatistics(info_hash, len(swarm.seeders), len(swarm.leechers), swarm.downloaded)
            for info_hash, swarm in swarms
        ]
        return result[:limit] if limit is not None else result

    def check_invariants(self) -> None:
        """Assert the internal indexes agree (for tests)."""
        total = seeders = 0
        for info_hash, swarm in self._swarms.items():
            assert len(swarm.peers) == len(swarm.seeders) + len(swarm.leechers)
            assert len(swarm.by_endpoint) == len(swarm.peers)
            for slots, seed in ((swarm.seeders, True), (swarm.leechers, False)):
                for slot, peer in enumerate(slots.items):
                    assert peer.slot == slot
                    assert peer.seed is seed
                    assert swarm.peers[peer.address.peer_id] is peer
                    assert (info_hash, peer.address.peer_id) in self._recency
            for endpoint, peer_id in swarm.by_endpoint.items():
                address = swarm.peers[peer_id].address
                assert (address.ip, address.port) == endpoint
            assert (info_hash in self._empty) == (not swarm.peers)
            assert sum(len(own) for own in swarm.by_source.values()) == len(swarm.peers)
            for ip, own in swarm.by_source.items():
                assert all(swarm.peers[peer_id].address.ip == ip for peer_id in own)
            verified = sum(peer.verified for peer in swarm.peers.values())
            assert verified == swarm.verified == len(swarm.peers) - len(swarm.unverified)
            assert (info_hash in self._unproven) == (not swarm.verified)
            total += len(swarm.peers)
            seeders += len(swarm.seeders)
        assert total == self._peer_count == len(self._recency)
        assert seeders == self._seeder_count
        last = -math.inf
        for info_hash, peer_id in self._recency:
            seen = self._swarms[info_hash].peers[peer_id].last_seen
            assert seen >= last
            last = seen


def _parse_allowlist(entries: Sequence[str]) -> frozenset[bytes] | None:
    if not entries:
        return None
    hashes: set[bytes] = set()
    for entry in entries:
        try:
            value = bytes.fromhex(entry.strip())
        except ValueError:
            value = b""
        if len(value) != INFO_HASH_LENGTH:
            raise ConfigError(f"tracker.allowlist: {entry!r} is not a 40-digit hex info hash")
        hashes.add(value)
    return frozenset(hashes)
