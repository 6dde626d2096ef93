"""Piece-level simulation of file distribution, driving the product's own cores.

Every simulated BitTorrent peer owns a real :class:`~seedcast.peer.picker.PiecePicker`
and :class:`~seedcast.peer.choker.Choker`, fed the way the trio shell
(:mod:`seedcast.peer.swarm`) feeds them: bitfields and HAVEs go to the
picker, the choker runs every second (and at once when a peer becomes
interested) with each connection's rates from a real
:class:`~seedcast.peer.rates.RateMeter`, requests are pipelined to
``rate x request_seconds`` (at least ``min_request_queue`` blocks), an
uploader serves its requests in order, and a choke drops what was queued.
Hybrid peers also run the distribution bench's web seed: one piece at a time
from their edge, chosen by the bench's own
:func:`~seedcast.bench._webseed.choose_piece`; the edge each client uses is
the DNS round-robin policy's answer
(:func:`seedcast.nameserver.policies.round_robin`). HTTP strategies are one
transfer of the whole file per client.

What is modelled and not: bytes move through :class:`~seedcast.sim.events.Network`
(max-min fair sharing of every uplink and downlink); a connection costs
``connect_seconds`` before its first message (handshake and bitfield; the
tracker's answer is immediate); protocol overhead is ``overhead`` (a fraction
of the bytes: BitTorrent/HTTP framing and TCP/IP headers). Hashing, disks
and CPU time are not modelled: a real run whose processes saturate the CPUs
is slower than this (see the calibration report).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seedcast.bench._webseed import choose_piece
from seedcast.bench.theory import Scenario, bound
from seedcast.nameserver.policies import Edge, round_robin
from seedcast.peer.choker import Choker, ChokerPeer, is_snubbed
from seedcast.peer.messages import BLOCK_SIZE, BlockRef
from seedcast.peer.picker import PiecePicker
from seedcast.peer.rates import RateMeter
from seedcast.sim.events import EventLoop, Network

__all__ = ["PieceSettings", "SwarmResult", "simulate_distribution"]


@dataclass(frozen=True, slots=True)
class PieceSettings:
    """The knobs of the piece-level model (defaults: the product's SwarmSettings)."""

    piece_length: int = 64 * 1024
    max_connections: int = 50
    numwant: int = 50
    regular_unchokes: int = 4
    optimistic_unchokes: int = 1
    choke_interval: float = 10.0
    optimistic_interval: float = 30.0
    tick_seconds: float = 1.0
    """How often each peer runs its choker (the shell's tick loop)."""
    request_seconds: float = 3.0
    min_request_queue: int = 4
    max_request_queue: int = 500
    idle_unchoke_seconds: float = 2.0
    job_blocks: int = 4
    """Blocks an uploader sends as one transfer (one rate computation for them)."""
    connect_seconds: float = 0.0
    """Handshake and bitfield exchange before a connection carries requests."""
    start_seconds: float = 0.0
    """Fixed cost before a client's first byte (process start, announce, HTTP request)."""
    overhead: float = 0.0
    """Extra bytes on the wire per payload byte (framing, headers)."""
    resolution: float = 1e-3
    seed_seconds: float = math.inf
    """How long a client keeps seeding once complete before it leaves (churn); inf = stays."""


@dataclass(slots=True)
class SwarmResult:
    completion_s: list[float]
    bytes: dict[str, int]
    events: int
    unfinished: int = 0


@dataclass(slots=True)
class _Link:
    """``uploader -> downloader``: what the downloader asked for and whether it may."""

    uploader: int
    downloader: int
    connected_at: float
    choking: bool = True
    interested: bool = False
    """The downloader is interested in the uploader."""
    interested_since: float | None = None
    requests: list[BlockRef] = field(default_factory=list)
    transfer: int | None = None
    in_flight: list[BlockRef] = field(default_factory=list)
    meter: RateMeter | None = None
    unchoked_at: float = 0.0
    last_request_at: float = 0.0
    last_block_at: float | None = None
    depth: int = 4
    depth_at: float = -1e9


def _number(key: Hashable) -> int:
    """The picker keys its peers by their number."""
    assert isinstance(key, int)
    return key


class _Peer:
    __slots__ = (
        "choker",
        "complete_at",
        "edge",
        "edge_busy",
        "edge_order",
        "ins",
        "node",
        "number",
        "outs",
        "partial",
        "picker",
        "rng",
        "seed",
        "tick_pending",
    )

    def __init__(
        self,
        number: int,
        node: int,
        picker: PiecePicker | None,
        rng: random.Random,
        settings: PieceSettings,
    ) -> None:
        self.number = number
        self.node = node
        self.picker = picker
        self.seed = picker is None
        self.rng = rng
        self.choker = Choker(
            rng=rng,
            regular_slots=settings.regular_unchokes,
            optimistic_slots=settings.optimistic_unchokes,
            interval=settings.choke_interval,
            optimistic_interval=settings.optimistic_interval,
        )
        self.outs: dict[int, _Link] = {}
        """Links on which this peer uploads, by downloader."""
        self.ins: dict[int, _Link] = {}
        """Links on which this peer downloads, by uploader."""
        self.complete_at: float | None = None
        self.edge: int | None = None
        self.edge_busy: set[int] = set()
        self.edge_order: list[int] = []
        self.tick_pending = False
        self.partial: dict[int, dict[str, int]] = {}
        """Bytes accepted so far for pieces in progress, by source (undone if the edge wins)."""

    @property
    def complete(self) -> bool:
        return self.picker is None or self.picker.complete


class _Swarm:
    def __init__(
        self, strategy: str, scenario: Scenario, settings: PieceSettings, rng: random.Random
    ) -> None:
        self.strategy = strategy
        self.scenario = scenario
        self.settings = settings
        self.rng = rng
        self.loop = EventLoop(Network(resolution=settings.resolution))
        self.net = self.loop.network
        file_size = scenario.file_size
        count = math.ceil(file_size / settings.piece_length)
        self.piece_sizes = [settings.piece_length] * count
        self.piece_sizes[-1] = file_size - settings.piece_length * (count - 1)
        self.peers: list[_Peer] = []
        self.clients: list[_Peer] = []
        self.done = 0
        self.bytes = {"from_server": 0, "from_edge": 0, "from_peers": 0, "edge_wasted": 0}
        self.wire = 1.0 + settings.overhead

    # -- set-up ---------------------------------------------------------------------------

    def add_peer(self, upload: float, download: float, *, seed: bool) -> _Peer:
        node = self.net.add_node(upload, download)
        rng = random.Random(self.rng.random())
        picker = None if seed else PiecePicker(self.piece_sizes, rng=rng)
        peer = _Peer(len(self.peers), node, picker, rng, self.settings)
        self.peers.append(peer)
        return peer

    def run(self) -> SwarmResult:
        scenario, settings = self.scenario, self.settings
        if self.strategy in ("client-server", "cdn"):
            return self._run_http()
        seed = self.add_peer(scenario.server_up, math.inf, seed=True)
        edges: list[int] = []
        pool: list[Edge] = []
        if self.strategy == "hybrid":
            for number in range(scenario.edges):
                edges.append(self.net.add_node(scenario.edge_up or scenario.server_up, math.inf))
                pool.append(Edge(f"edge-{number + 1}", f"127.0.20.{number + 1}", "any", 4))
        for number in range(scenario.clients):
            client = self.add_peer(scenario.peer_up, scenario.peer_down, seed=False)
            self.clients.append(client)
            if edges:
                (chosen,) = round_robin(pool, 1, number)
                client.edge = edges[pool.index(chosen)]
                client.edge_order = list(range(len(self.piece_sizes)))
                client.rng.shuffle(client.edge_order)
        start = settings.start_seconds
        self._wire_up(seed, start + settings.connect_seconds)
        for peer in self.peers:
            self.loop.call_at(
                start + self.rng.random() * settings.tick_seconds,
                functools.partial(self._tick, peer),
            )
        for client in self.clients:
            if client.edge is not None:
                self.loop.call_at(start, functools.partial(self._edge_next, client))
        self.loop.run(until=start + 20 * bound(self.strategy, scenario) + 60)
        return self._result()

    def _wire_up(self, seed: _Peer, when: float) -> None:
        """The connection graph: every peer announces at once and connects to the peers the
        tracker names (up to numwant, random) that still take connections. Clients dial in
        a random order, half their connection budget first and the rest in a second round,
        so that no group of late peers ends up connected only among themselves."""
        settings = self.settings
        everyone = [seed, *self.clients]
        order = list(self.clients)
        self.rng.shuffle(order)
        for budget in (settings.max_connections // 2, settings.max_connections):
            for client in order:
                room = min(budget, settings.numwant) - len(client.outs)
                if room <= 0:
                    continue
                candidates = [
                    peer
                    for peer in everyone
                    if peer is not client
                    and peer.number not in client.outs
                    and len(peer.outs) < settings.max_connections
                ]
                if len(candidates) > room:
                    candidates = self.rng.sample(candidates, room)
                for other in candidates:
                    self._connect(client, other, when)

    def _run_http(self) -> SwarmResult:
        scenario = self.scenario
        if self.strategy == "client-server":
            servers = [self.net.add_node(scenario.server_up, math.inf)]
        else:
            rate = scenario.edge_up or scenario.server_up
            servers = [self.net.add_node(rate, math.inf) for _ in range(scenario.edges)]
        pool = [Edge(f"edge-{n + 1}", f"127.0.20.{n + 1}", "any", 4) for n in range(len(servers))]
        completion: list[float] = []
        for number in range(scenario.clients):
            node = self.net.add_node(math.inf, scenario.peer_down)
            (chosen,) = round_robin(pool, 1, number)
            server = servers[pool.index(chosen)]

            def done(_: int) -> None:
                completion.append(self.loop.now)

            def begin(server: int = server, node: int = node, done: Any = done) -> None:
                self.net.start(server, node, scenario.file_size * self.wire, done)

            self.loop.call_at(self.settings.start_seconds, begin)
        self.loop.run()
        self.bytes["from_server" if self.strategy == "client-server" else "from_edge"] = (
            scenario.file_size * len(completion)
        )
        return SwarmResult(sorted(completion), dict(self.bytes), self.loop.steps)

    def _result(self) -> SwarmResult:
        completion = sorted(c.complete_at for c in self.clients if c.complete_at is not None)
        return SwarmResult(
            completion, dict(self.bytes), self.loop.steps, len(self.clients) - len(completion)
        )

    # -- connections ------------------------------------------------------------------------

    def _connect(self, a: _Peer, b: _Peer, when: float) -> None:
        a.outs[b.number] = _Link(a.number, b.number, when)
        b.outs[a.number] = _Link(b.number, a.number, when)
        a.ins[b.number] = b.outs[a.number]
        b.ins[a.number] = a.outs[b.number]
        self.loop.call_at(when, lambda: self._established(a, b))

    def _established(self, a: _Peer, b: _Peer) -> None:
        now = self.loop.now
        for mine, theirs in ((a, b), (b, a)):
            link = theirs.outs[mine.number]
            link.meter = RateMeter(now)
            link.connected_at = now
            if mine.picker is not None:
                mine.picker.add_peer(theirs.number)
                if theirs.picker is None:
                    mine.picker.peer_has_all(theirs.number)
                else:
                    have = theirs.picker.have_flags()
                    mine.picker.peer_has_pieces(
                        theirs.number, [i for i, flag in enumerate(have) if flag]
                    )
        for mine, theirs in ((a, b), (b, a)):
            self._update_interest(mine, theirs)

    def _update_interest(self, downloader: _Peer, uploader: _Peer) -> None:
        link = uploader.outs[downloader.number]
        picker = downloader.picker
        want = picker is not None and not picker.complete and picker.is_interesting(uploader.number)
        if want and not link.interested:
            link.interested = True
            link.interested_since = self.loop.now
            self._wake(uploader)
        elif not want and link.interested:
            link.interested = False
            link.interested_since = None
            self._wake(uploader)
        if want:
            self._fill(link)

    def _wake(self, peer: _Peer) -> None:
        # The shell wakes its tick loop when a peer's interest changes.
        if not peer.tick_pending:
            peer.tick_pending = True
            self.loop.call_later(0.0, lambda: self._choke(peer, woken=True))

    # -- choking ------------------------------------------------------------------------------

    def _tick(self, peer: _Peer) -> None:
        if self.done >= len(self.clients):
            return
        self._choke(peer, woken=False)
        self.loop.call_later(self.settings.tick_seconds, lambda: self._tick(peer))

    def _choke(self, peer: _Peer, *, woken: bool) -> None:
        if woken:
            peer.tick_pending = False
        now = self.loop.now
        grace = self.settings.idle_unchoke_seconds
        views = []
        for number, link in peer.outs.items():
            if link.meter is None:
                continue
            back = peer.ins[number]
            idle = (
                not link.choking
                and not link.requests
                and link.transfer is None
                and now - link.unchoked_at > grace
                and now - link.last_request_at > grace
            )
            views.append(
                ChokerPeer(
                    key=number,
                    interested=link.interested,
                    download_rate=back.meter.rate(now) if back.meter else 0.0,
                    upload_rate=link.meter.rate(now),
                    connected_at=link.connected_at,
                    snubbed=is_snubbed(now, back.interested_since, back.last_block_at),
                    idle=idle,
                    uploaded=link.meter.total,
                )
            )
        decision = peer.choker.decide(now, views, seeding=peer.complete)
        for number, link in peer.outs.items():
            if link.meter is None:
                continue
            if number in decision.unchoked:
                if link.choking:
                    link.choking = False
                    link.unchoked_at = now
                    self._fill(link)
            elif not link.choking:
                link.choking = True
                self._drop_requests(link)

    def _drop_requests(self, link: _Link) -> None:
        """A choke: the uploader forgets the queued requests (what is in flight arrives)."""
        picker = self.peers[link.downloader].picker
        dropped = link.requests + self._trim(link, set(link.in_flight))
        if picker is not None:
            for block in dropped:
                picker.cancel_request(link.uploader, block)
        link.requests.clear()

    def _cancel(self, link: _Link, block: BlockRef) -> None:
        """A CANCEL: a queued block is forgotten, one not yet begun leaves the batch."""
        if block in link.requests:
            link.requests.remove(block)
        elif block in link.in_flight:
            self._trim(link, {block})

    def _trim(self, link: _Link, blocks: set[BlockRef]) -> list[BlockRef]:
        """Take ``blocks`` out of the batch in flight where sending has not reached them
        (the uploader sends block by block); returns those taken out."""
        if link.transfer is None or not blocks:
            return []
        left = self.net.remaining(link.transfer)
        total = sum(block.length for block in link.in_flight) * self.wire
        sent = total - left
        position = 0.0
        keep: list[BlockRef] = []
        removed: list[BlockRef] = []
        for block in link.in_flight:
            begun = position < sent - 1e-6
            (removed if block in blocks and not begun else keep).append(block)
            position += block.length * self.wire
        if not removed:
            return []
        if not keep:
            keep, removed = removed[:1], removed[1:]  # the first block is on the wire
        link.in_flight = keep
        self.net.resize(link.transfer, left - sum(b.length for b in removed) * self.wire)
        return removed

    # -- requests and blocks ------------------------------------------------------------------

    def _fill(self, link: _Link) -> None:
        downloader = self.peers[link.downloader]
        picker = downloader.picker
        if link.choking or not link.interested or picker is None or link.meter is None:
            return
        now = self.loop.now
        settings = self.settings
        if now - link.depth_at > 0.25:
            rate = link.meter.rate(now)
            depth = int(rate * settings.request_seconds / BLOCK_SIZE)
            link.depth = max(settings.min_request_queue, min(settings.max_request_queue, depth))
            link.depth_at = now
        wanted = link.depth - len(link.requests) - len(link.in_flight)
        if wanted > 0:
            blocks = picker.pick_blocks(link.uploader, wanted, now)
            if blocks:
                link.requests.extend(blocks)
                link.last_request_at = now
        self._serve(link)

    def _serve(self, link: _Link) -> None:
        if link.transfer is not None or not link.requests or link.choking:
            return
        batch = link.requests[: self.settings.job_blocks]
        del link.requests[: len(batch)]
        link.in_flight = batch
        size = sum(block.length for block in batch) * self.wire
        src = self.peers[link.uploader].node
        dst = self.peers[link.downloader].node
        link.transfer = self.net.start(src, dst, size, lambda _: self._arrived(link))

    def _arrived(self, link: _Link) -> None:
        now = self.loop.now
        link.transfer = None
        batch, link.in_flight = link.in_flight, []
        downloader = self.peers[link.downloader]
        uploader = self.peers[link.uploader]
        picker = downloader.picker
        assert picker is not None
        assert link.meter is not None
        payload = sum(block.length for block in batch)
        link.meter.add(payload, now)
        link.last_block_at = now
        source = "from_server" if uploader.seed else "from_peers"
        for block in batch:
            outcome = picker.block_received(uploader.number, block)
            if outcome.accepted:
                self.bytes[source] += block.length
                counts = downloader.partial.setdefault(block.index, {})
                counts[source] = counts.get(source, 0) + block.length
            for other, duplicate in outcome.cancel:
                self._cancel(self.peers[_number(other)].outs[downloader.number], duplicate)
            if outcome.piece_complete:
                self._passed(downloader, block.index)
        if not downloader.complete:
            self._fill(link)
        self._serve(link)

    def _passed(self, peer: _Peer, index: int) -> None:
        picker = peer.picker
        assert picker is not None
        peer.partial.pop(index, None)
        for other, block in picker.piece_passed(index):
            self._cancel(self.peers[_number(other)].outs[peer.number], block)
        for number, link in peer.ins.items():
            neighbour = self.peers[number]
            if link.meter is None:
                continue  # not connected yet: the bitfield will say it
            if neighbour.picker is not None and neighbour.picker.peer_has(peer.number, index):
                self._update_interest(neighbour, peer)
        if picker.complete:
            peer.complete_at = self.loop.now
            self.done += 1
            for number in peer.ins:
                self._update_interest(peer, self.peers[number])
            if self.done >= len(self.clients):
                self.loop.stop()
            elif math.isfinite(self.settings.seed_seconds):
                self.loop.call_later(
                    self.settings.seed_seconds, functools.partial(self._leave, peer)
                )
        else:
            for number in peer.ins:
                uploader = self.peers[number]
                link = uploader.outs[peer.number]
                if link.interested and not picker.is_interesting(number):
                    self._update_interest(peer, uploader)

    def _leave(self, peer: _Peer) -> None:
        """A departure: every connection closes; neighbours forget its pieces and requests."""
        for number in list(peer.outs):
            other = self.peers[number]
            for link in (peer.outs.pop(number), other.outs.pop(peer.number)):
                if link.transfer is not None:
                    self.net.cancel(link.transfer)
                    link.transfer = None
            del other.ins[peer.number]
            del peer.ins[number]
            if other.picker is not None:
                other.picker.remove_peer(peer.number)
                # What it had requested from the leaver goes back to the picker: ask others.
                for uploader in other.ins:
                    self._fill(self.peers[uploader].outs[other.number])

    # -- the hybrid's web seed ---------------------------------------------------------------

    def _edge_next(self, peer: _Peer) -> None:
        picker = peer.picker
        if picker is None or picker.complete or peer.edge is None:
            return
        availability = [picker.availability(i) for i in range(picker.num_pieces)]
        index = choose_piece(picker.have_flags(), availability, peer.edge_busy, peer.edge_order)
        if index is None:
            return
        peer.edge_busy.add(index)
        size = self.piece_sizes[index]
        self.net.start(
            peer.edge, peer.node, size * self.wire, lambda _: self._edge_arrived(peer, index, size)
        )

    def _edge_arrived(self, peer: _Peer, index: int, size: int) -> None:
        peer.edge_busy.discard(index)
        picker = peer.picker
        assert picker is not None
        if picker.has(index):
            self.bytes["edge_wasted"] += size
        else:
            # Blocks of it that peers had delivered are superseded: count the piece once.
            for source, count in peer.partial.pop(index, {}).items():
                self.bytes[source] -= count
            self.bytes["from_edge"] += size
            self._passed(peer, index)
        self._edge_next(peer)


def simulate_distribution(
    strategy: str,
    scenario: Scenario,
    settings: PieceSettings | None = None,
    *,
    seed: int = 1,
) -> SwarmResult:
    """Distribute one file to ``scenario.clients`` clients with ``strategy``; piece level."""
    swarm = _Swarm(strategy, scenario, settings or PieceSettings(), random.Random(seed))
    return swarm.run()


def completion_summary(result: SwarmResult) -> dict[str, Any]:
    """The fields of a bench record that come from the completion times."""
    times: Sequence[float] = result.completion_s
    return {
        "measured_s": max(times) if times else math.inf,
        "min_client_s": min(times) if times else None,
        "completion_s": [round(t, 4) for t in times],
        "unfinished": result.unfinished,
        "bytes": result.bytes,
    }
