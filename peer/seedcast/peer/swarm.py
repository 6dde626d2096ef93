"""The trio shell of a BitTorrent peer: one torrent, many connections.

How it works. :class:`Swarm` owns the sans-IO cores (a :class:`PiecePicker`,
a :class:`Choker`, a :class:`~seedcast.peer.bans.BanList`, one
:class:`PeerWire` per connection) and the :class:`Storage`, and does the I/O
around them. Its connection half (accepting with admission control,
connecting, the reader, the watchdog) is
:class:`~seedcast.peer.network.PeerConnections`; this module is the trading
half, which acts on every event the wire reports.

* ``serve`` checks what is already on disk (resume), listens, and runs the
  :class:`~seedcast.peer.announcer.Announcer` (HTTP announces: started,
  periodic, completed, stopped), the tick loop (choker, keep-alives, PEX,
  stalled requests, new connections) and one task group per connection.
* A connection (:class:`~seedcast.peer.connection.Connection`) has three
  tasks: the reader (receive, charge the download buckets, feed the wire,
  act on events synchronously), its writer (drains its outbox; control
  messages and pieces share it in order) and its uploader (serves the
  peer's requests in order, charging the upload buckets before each block).
  Every read and write has a deadline.
* Requests are pipelined: each connection keeps ``rate x request_seconds``
  bytes of requests outstanding (within ``min``/``max_request_queue``).
* BEP 6 in full: a newcomer with few pieces is granted the canonical
  allowed-fast set (:mod:`seedcast.peer.fast`), served even while choked,
  once each; the peer's allowed-fast pieces are requested while it chokes
  us, and its suggestions start before other new pieces.
* BEP 10 + BEP 11: peers learn each other through ut_pex
  (:mod:`seedcast.peer.extensions`), so a swarm keeps growing while its
  tracker is down.
* Every piece is SHA-1 verified before it counts, is announced or served.
  A failed piece is fetched again from a single peer (the picker's parole);
  the blocks each address sent are remembered by hash, and once the piece
  passes, an address whose blocks differ is banned at once. An address that
  alone delivered ``ban_threshold`` failed pieces is banned too. Bans are by
  evidence (:class:`~seedcast.peer.bans.BanList`), never by a claimed peer id.
* Rate caps use :mod:`seedcast.ratelimit` buckets per swarm (this virtual
  peer) and per connection; several swarms can share one process, each with
  its own sockets, buckets and address (``local_address``).

Hostile peers cost a connection, never the process: a
:class:`RemoteProtocolError` or transport error closes that connection and
is counted by reason.

For streaming (the viewer agent): ``swarm.picker`` takes deadlines and a
window; :meth:`Swarm.add_piece_listener` / :meth:`Swarm.wait_piece` report
verified pieces; :meth:`Swarm.add_verified_piece` stores a piece fetched
elsewhere (the CDN) and announces it to the swarm.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import trio
from seedcast.errors import RemoteProtocolError
from seedcast.peer._rawsocket import RawListener
from seedcast.peer.announce import AnnounceEvent, AnnounceResponse
from seedcast.peer.announcer import Announcer, Fetch
from seedcast.peer.bans import BanList
from seedcast.peer.choker import Choker, ChokerPeer, is_snubbed
from seedcast.peer.connection import Connection, Wakeup
from seedcast.peer.extensions import UT_PEX_ID, encode_handshake, parse_handshake, parse_pex
from seedcast.peer.fast import ALLOWED_FAST_PIECES, allowed_fast_set
from seedcast.peer.messages import (
    BLOCK_SIZE,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    Piece,
    RejectRequest,
    Request,
    RequestsDropped,
    SuggestPiece,
    Unchoke,
)
from seedcast.peer.metainfo import Metainfo
from seedcast.peer.network import PeerConnections
from seedcast.peer.picker import PiecePicker
from seedcast.peer.settings import (
    PieceCompleted,
    SwarmSettings,
    SwarmStatistics,
    new_peer_id,
)
from seedcast.peer.storage import Storage
from seedcast.peer.wire import TorrentShape
from seedcast.ratelimit import TokenBucket
from seedcast.version import VERSION

__all__ = ["PieceCompleted", "Swarm", "SwarmSettings", "SwarmStatistics", "new_peer_id"]

log = logging.getLogger("seedcast.peer")

_DEPTH_SECONDS = 0.25


class Swarm(PeerConnections):
    """One torrent shared with the swarm. See the module docstring."""

    def __init__(
        self,
        metainfo: Metainfo,
        storage: Storage,
        *,
        settings: SwarmSettings | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        announce_urls: Iterable[str] | None = None,
        fetch: Fetch | None = None,
        peer_id: bytes | None = None,
        rng: random.Random | None = None,
        name: str = "peer",
        have: Iterable[int] | None = None,
        upload_bucket: TokenBucket | None = None,
        download_bucket: TokenBucket | None = None,
    ) -> None:
        """``have``: pieces known good on disk (skips the resume check); None = check.

        ``upload_bucket``/``download_bucket``: caps shared with other swarms of
        the process (a viewer agent with several videos); by default each swarm
        has its own from ``settings.upload_rate``/``download_rate``.
        """
        self.metainfo = metainfo
        self.storage = storage
        self.settings = settings or SwarmSettings()
        self.name = name
        self._rng = rng or random.Random()
        self.peer_id = peer_id or new_peer_id(self._rng)
        self._listen = listen
        self.listen_address: tuple[str, int] | None = None
        if announce_urls is None:
            announce_urls = [metainfo.announce] if metainfo.announce else []
        self.announcer = Announcer(self, list(announce_urls), fetch)
        self._initial_have = None if have is None else list(have)
        self.shape = TorrentShape(metainfo.info_hash, metainfo.piece_length, metainfo.total_length)
        # Trailing BEP 47 padding is never requested: it reads as zeros anyway.
        self.picker = PiecePicker(
            [metainfo.piece_payload(index) for index in range(metainfo.piece_count)], rng=self._rng
        )
        self.choker = Choker(
            rng=self._rng,
            regular_slots=self.settings.regular_unchokes,
            optimistic_slots=self.settings.optimistic_unchokes,
            interval=self.settings.choke_interval,
            optimistic_interval=self.settings.optimistic_interval,
            seed_policy=self.settings.seed_policy,
            credit=self.settings.unchoke_credit,
            seed_quota=self.settings.seed_quota,
        )
        self.upload_bucket = upload_bucket or (
            TokenBucket(self.settings.upload_rate) if self.settings.upload_rate else None
        )
        self.download_bucket = download_bucket or (
            TokenBucket(self.settings.download_rate) if self.settings.download_rate else None
        )
        self._connections: set[Connection] = set()
        self._by_peer_id: dict[tuple[str, bytes], Connection] = {}
        """(IP, peer id) -> its connection: one per peer; an id alone is only a claim."""
        self._connecting: set[tuple[str, int]] = set()
        self._known: dict[tuple[str, int], float] = {}
        """Addresses to connect to -> earliest next attempt."""
        self._peer_ids: dict[tuple[str, int], bytes] = {}
        """Address -> the peer id the tracker claims for it (checked in the handshake)."""
        self.bans = BanList(threshold=self.settings.ban_threshold)
        self._piece_listeners: list[Callable[[PieceCompleted], None]] = []
        self._piece_waiters: dict[int, trio.Event] = {}
        self._complete_event = trio.Event()
        self._ready_event = trio.Event()
        self._tick_wakeup = Wakeup()
        self._flush_wakeup = Wakeup()
        self._unflushed: set[Connection] = set()
        self._nursery: trio.Nursery | None = None
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.bytes_uploaded = 0
        self.bytes_downloaded = 0
        self.hash_failures = 0
        self.pex_learned = 0
        self.unfinished_handshakes = 0
        """Connections that ended before both handshakes were done."""
        """Addresses first learned through PEX."""
        self.refusals: Counter[str] = Counter()
        self.evictions = 0
        self.protocol_errors: Counter[str] = Counter()

    # -- public API -----------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.picker.complete

    async def announce(
        self, event: AnnounceEvent | None, *, quiet: bool = False
    ) -> AnnounceResponse | None:
        """One announce to the trackers now (see :meth:`Announcer.announce`)."""
        return await self.announcer.announce(event, quiet=quiet)

    @property
    def last_announce(self) -> AnnounceResponse | None:
        return self.announcer.last_response

    @property
    def tracker_errors(self) -> int:
        return self.announcer.errors

    def bytes_left(self) -> int:
        """Bytes of the pieces we still lack."""
        picker = self.picker
        if picker.complete:
            return 0
        return sum(
            self.metainfo.piece_size(index)
            for index in range(picker.num_pieces)
            if not picker.has(index)
        )

    def add_piece_listener(self, listener: Callable[[PieceCompleted], None]) -> None:
        """Call ``listener(PieceCompleted)`` for every piece verified from now on."""
        self._piece_listeners.append(listener)

    def remove_piece_listener(self, listener: Callable[[PieceCompleted], None]) -> None:
        if listener in self._piece_listeners:
            self._piece_listeners.remove(listener)

    async def wait_piece(self, index: int) -> None:
        """Return once piece ``index`` is verified and stored."""
        if self.picker.has(index):
            return
        event = self._piece_waiters.setdefault(index, trio.Event())
        await event.wait()

    async def wait_complete(self) -> None:
        await self._complete_event.wait()

    async def wait_ready(self) -> None:
        """Return once the resume check is done and the peer listens."""
        await self._ready_event.wait()

    def add_verified_piece(self, index: int, data: bytes, *, source: str = "edge") -> bool:
        """Store a piece fetched elsewhere; verified first. Announced to the swarm when good."""
        if self.picker.has(index):
            return True
        if not self.storage.write_piece(index, data):
            self.hash_failures += 1
            return False
        self.storage.discard_piece(index)
        self._piece_passed(index, source, trio.current_time())
        self._judge_suspects(index, data)  # peers whose blocks of it failed before lied
        return True

    def prioritise(self, deadlines: Mapping[int, float], window: Iterable[int]) -> None:
        """Streaming priorities, replacing the last ones: pieces needed by a deadline
        (earliest first) and a prefetch window (rarest first); requests go out at once."""
        picker = self.picker
        picker.clear_priorities()
        for index, deadline in deadlines.items():
            picker.set_deadline(index, deadline)
        picker.set_window(window)
        if deadlines or window:
            self.request_more()

    def request_more(self) -> None:
        """Fill every connection's request pipeline now (after the picker's priorities changed)."""
        now = trio.current_time()
        for conn in list(self._connections):
            if conn.wire.established and not conn.closing:
                self._fill_requests(conn, now)

    def read(self, index: int, begin: int, length: int) -> bytes:
        """Bytes of a verified piece (ValueError when we don't have it)."""
        if not self.picker.has(index):
            raise ValueError(f"piece {index} is not here yet")
        return self.storage.read_block(index, begin, length)

    def set_rates(self, upload: float | None = None, download: float | None = None) -> None:
        """Change the caps at run time (0 = unlimited)."""
        if upload is not None:
            if self.upload_bucket is None:
                self.upload_bucket = TokenBucket(upload) if upload else None
            else:
                self.upload_bucket.set_rate(upload)
        if download is not None:
            if self.download_bucket is None:
                self.download_bucket = TokenBucket(download) if download else None
            else:
                self.download_bucket.set_rate(download)

    def statistics(self) -> SwarmStatistics:
        established = [conn for conn in self._connections if conn.wire.established]
        seconds = None
        if self.completed_at is not None and self.started_at is not None:
            seconds = self.completed_at - self.started_at
        return SwarmStatistics(
            name=self.name,
            info_hash=self.metainfo.info_hash.hex(),
            bytes_uploaded=self.bytes_uploaded,
            bytes_downloaded=self.bytes_downloaded,
            pieces_have=self.picker.have_count,
            pieces_total=self.picker.num_pieces,
            peers_connected=len(established),
            peers_unchoked=sum(1 for conn in established if not conn.wire.am_choking),
            peers_interested=sum(1 for conn in established if conn.wire.peer_interested),
            peers_unchoking_us=sum(1 for conn in established if not conn.wire.peer_choking),
            hash_failures=self.hash_failures,
            bans=self.bans.bans,
            connections_refused=self.connections_refused,
            protocol_errors=dict(self.protocol_errors),
            refusals=dict(self.refusals),
            evictions=self.evictions,
            pex_learned=self.pex_learned,
            unfinished_handshakes=self.unfinished_handshakes,
            seconds_to_complete=seconds,
            complete=self.complete,
        )

    # -- serving ------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Check the data, listen, announce and trade until cancelled."""
        self.started_at = trio.current_time()
        have = self._initial_have
        if have is None:
            have = await trio.to_thread.run_sync(self.storage.check)
        now = trio.current_time()
        for index in have:
            self._piece_passed(index, "disk", now, announce=False)
        if self.picker.complete:
            self.completed_at = self.started_at
        host, port = self._listen
        listener = RawListener(host, port)
        bound = listener.address
        self.listen_address = bound
        log.info(
            "listening",
            extra={
                "fields": {
                    "torrent": self.metainfo.name,
                    "address": f"{bound[0]}:{bound[1]}",
                    "pieces": f"{self.picker.have_count}/{self.picker.num_pieces}",
                }
            },
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._accept_loop, listener)
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._flush_loop)
                if self.announcer.urls:
                    nursery.start_soon(self.announcer.run)
                self._ready_event.set()
                task_status.started([f"{bound[0]}:{bound[1]}"])
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await listener.aclose()

    # -- connections -------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        """Send the HAVEs waiting for peers we choke, every ``batch_seconds``."""
        while True:
            await self._flush_wakeup.wait()
            await trio.sleep(self.settings.batch_seconds)
            pending, self._unflushed = self._unflushed, set()
            for conn in pending:
                self._flush_haves(conn)

    def _flush_haves(self, conn: Connection) -> None:
        if conn.pending_haves and not conn.closing:
            conn.write(conn.wire.send_haves(conn.pending_haves))
        conn.pending_haves.clear()

    def _upload_cap(self) -> TokenBucket | None:
        return self.upload_bucket

    def _count_upload(self, sent: int) -> None:
        self.bytes_uploaded += sent

    # -- events ------------------------------------------------------------------------

    def _handle(self, conn: Connection, event: Event, now: float) -> None:
        wire = conn.wire
        picker = self.picker
        if isinstance(event, Piece):
            self._on_piece(conn, event, now)
        elif isinstance(event, Have):
            if picker.peer_has(conn, event.index):
                self._after_peer_pieces(conn, now)  # a piece we want
            elif picker.complete and picker.peer_is_seed(conn):
                self._close(conn)
        elif isinstance(event, Request):
            block = event.block
            conn.last_request_at = now
            if not picker.has(block.index):
                raise RemoteProtocolError(
                    f"request for piece {block.index}, which we never announced",
                    reason="request-missing",
                )
            if wire.am_choking and not (
                block.index in wire.allowed_fast_out and conn.fast_budget >= block.length
            ):
                conn.send(RejectRequest(block))  # fast extension: answer every request
            else:
                if wire.am_choking:
                    conn.fast_budget -= block.length
                conn.upload_queue.append(block)
                conn.upload_wakeup.set()
        elif isinstance(event, Cancel):
            try:
                conn.upload_queue.remove(event.block)
            except ValueError:
                pass
            if wire.fast and event.block in wire.remote_requests:
                conn.send(RejectRequest(event.block))
        elif isinstance(event, Unchoke | AllowedFast):
            self._fill_requests(conn, now)
        elif isinstance(event, SuggestPiece):
            conn.suggested.append(event.index)
            self._fill_requests(conn, now)
        elif isinstance(event, RejectRequest):
            picker.cancel_request(conn, event.block)
        elif isinstance(event, RequestsDropped):
            for block in event.blocks:
                picker.cancel_request(conn, block)
        elif isinstance(event, Interested | NotInterested):
            self._tick_wakeup.set()
        elif isinstance(event, Bitfield):
            picker.peer_has_pieces(conn, event.indices())
            self._grant_allowed_fast(conn)
            self._after_peer_pieces(conn, now)
        elif isinstance(event, HaveAll):
            picker.peer_has_all(conn)
            self._after_peer_pieces(conn, now)
        elif isinstance(event, HaveNone):
            self._grant_allowed_fast(conn)
        elif isinstance(event, Extended):
            self._on_extended(conn, event, now)
        elif isinstance(event, Handshake):
            self._on_handshake(conn, event, now)
        elif isinstance(event, ConnectionClosed):
            conn.closing = True
        # Choke (requests come back as rejects or RequestsDropped),
        # KeepAlive, Port, unknown messages: nothing to do.

    def _on_handshake(self, conn: Connection, handshake: Handshake, now: float) -> None:
        peer_id = handshake.peer_id
        if self.bans.is_banned(conn.address[0]):
            raise RemoteProtocolError("banned peer", reason="banned")
        key = (conn.address[0], peer_id)
        existing = self._by_peer_id.get(key)
        if existing is not None:
            # Both sides connected at once: keep the connection opened by the
            # peer with the smaller id, so both ends drop the same one.
            keep_outgoing = self.peer_id < peer_id
            if conn.outgoing == keep_outgoing and existing.outgoing != keep_outgoing:
                self._close(existing)
            else:
                raise RemoteProtocolError("second connection to the same peer", reason="duplicate")
        self._by_peer_id[key] = conn
        if conn.outgoing:
            self._peer_ids[conn.address] = peer_id
            self._known[conn.address] = now + self.settings.retry_seconds
        else:
            conn.send(conn.wire.handshake(handshake.info_hash))
        self.picker.add_peer(conn)
        wire = conn.wire
        if wire.fast and self.picker.complete:
            conn.send(HaveAll())
        elif wire.fast and self.picker.have_count == 0:
            conn.send(HaveNone())
        elif self.picker.have_count:
            conn.send(Bitfield.from_flags(self.picker.have_flags()))
        if wire.extended:
            port = self.listen_address[1] if self.listen_address else None
            conn.send(Extended(0, encode_handshake(port, f"Seedcast {VERSION}")))
        assert conn.nursery is not None
        conn.nursery.start_soon(
            conn.uploader, self.storage.read_block, self._upload_cap, self._count_upload
        )
        self._tick_wakeup.set()

    def _on_extended(self, conn: Connection, event: Extended, now: float) -> None:
        """BEP 10 handshake and BEP 11 ut_pex; other extensions are ignored."""
        if event.extension_id == 0:
            handshake = parse_handshake(event.payload)
            conn.extensions = handshake
            if handshake.port is not None and not conn.outgoing:
                # Where the peer listens: what PEX tells others about it.
                conn.listen_address = (conn.address[0], handshake.port)
            if handshake.ut_pex is not None and conn.pex_at == math.inf:
                conn.pex_at = now + 1.0  # the first list soon, then every pex_interval
        elif event.extension_id == UT_PEX_ID:
            if now - conn.pex_received_at < self.settings.pex_interval / 2:
                self.protocol_errors["pex-flood"] += 1  # ignored, not fatal
                return
            conn.pex_received_at = now
            message = parse_pex(event.payload)
            before = len(self._known)
            self.learn_peers((host, port, None) for host, port in message.added)
            self.pex_learned += len(self._known) - before

    def _send_pex(self, conn: Connection, now: float) -> None:
        """Tell ``conn`` which peers we are connected to (only what changed)."""
        extensions = conn.extensions
        if extensions is None or extensions.ut_pex is None or now < conn.pex_at:
            return
        conn.pex_at = now + self.settings.pex_interval
        current = [
            other.listen_address
            for other in self._connections
            if other is not conn
            and other.listen_address is not None
            and other.wire.established
            and not other.closing
        ]
        payload = conn.pex.update(current)
        if payload is not None:
            conn.send(Extended(extensions.ut_pex, payload))

    def _grant_allowed_fast(self, conn: Connection) -> None:
        """BEP 6: the peer may fetch these pieces (those we have) while we choke it.

        Once per connection, after its first bitfield / have-all / have-none,
        and only to a peer with fewer pieces than the set: it is there to get
        newcomers trading, not free data for everyone.
        """
        picker = self.picker
        if conn.fast_granted or not conn.wire.fast or not picker.have_count:
            return
        conn.fast_granted = True
        if picker.peer_piece_count(conn) >= ALLOWED_FAST_PIECES:
            return
        granted = [
            index
            for index in allowed_fast_set(
                conn.address[0], self.metainfo.info_hash, self.picker.num_pieces
            )
            if self.picker.has(index)
        ]
        for index in granted:
            conn.send(AllowedFast(index))
        # Each granted piece once: a peer that re-requests them gets rejects, not free data.
        conn.fast_budget = sum(self.metainfo.piece_payload(index) for index in granted)

    def _after_peer_pieces(self, conn: Connection, now: float) -> None:
        if self.picker.complete and self.picker.peer_is_seed(conn):
            self._close(conn)  # two seeds have nothing to say to each other
            return
        self._update_interest(conn, now)

    def _update_interest(self, conn: Connection, now: float, *, fill: bool = True) -> None:
        wire = conn.wire
        want = self.picker.is_interesting(conn)
        if want and not wire.am_interested:
            conn.send(Interested())
            conn.interested_since = now
        elif not want and wire.am_interested:
            conn.send(NotInterested())
            conn.interested_since = None
        if fill and want and not wire.peer_choking:
            self._fill_requests(conn, now)

    def _fill_requests(self, conn: Connection, now: float) -> None:
        wire = conn.wire
        if not wire.am_interested or conn.closing:
            return
        only: set[int] | None = None
        if wire.peer_choking:
            if not (wire.fast and wire.allowed_fast):
                return
            only = wire.allowed_fast  # BEP 6: these we may request while choked
        if now - conn.request_depth_at > _DEPTH_SECONDS:
            # Requests to keep outstanding: what the peer sends in request_seconds.
            settings = self.settings
            depth = int(conn.down_meter.rate(now) * settings.request_seconds / BLOCK_SIZE)
            conn.request_depth = max(
                settings.min_request_queue, min(settings.max_request_queue, depth)
            )
            conn.request_depth_at = now
        wanted = conn.request_depth - len(wire.our_requests)
        if wanted <= 0:
            return
        blocks = self.picker.pick_blocks(conn, wanted, now, only=only, suggested=conn.suggested)
        if blocks:
            conn.write(b"".join(wire.send(Request(block)) for block in blocks))

    def _on_piece(self, conn: Connection, piece: Piece, now: float) -> None:
        length = len(piece.data)
        self.bytes_downloaded += length
        conn.down_meter.add(length, now)
        conn.last_block_at = now
        block = piece.block
        outcome = self.picker.block_received(conn, block)
        for other, duplicate in outcome.cancel:
            assert isinstance(other, Connection)
            if duplicate in other.wire.our_requests:
                other.send(Cancel(duplicate))
        if outcome.accepted:
            self.storage.write_block(piece.index, piece.begin, piece.data)
            self.bans.block_received(piece.index, piece.begin, conn.address)
            if outcome.piece_complete:
                self._on_piece_complete(piece.index, now)
        self._fill_requests(conn, now)

    def _on_piece_complete(self, index: int, now: float) -> None:
        buffer = self.storage.take_piece(index)
        if buffer is not None and self.storage.write_piece(index, buffer):
            self._piece_passed(index, "peer", now)
            self._judge_suspects(index, buffer)
            return
        self.hash_failures += 1
        contributors = self.picker.piece_failed(index)
        log.info(
            "piece failed verification",
            extra={"fields": {"piece": index, "peers": len(contributors)}},
        )
        for host in self.bans.piece_failed(index, buffer):
            self._banned(host)
        for conn in list(self._connections):
            if conn.wire.established and not conn.closing:
                self._fill_requests(conn, now)

    def _judge_suspects(self, index: int, good: bytes | bytearray) -> None:
        """A piece that failed before now passed: whoever sent a different block lied."""
        for host in self.bans.piece_passed(index, good):
            self._banned(host)

    def _banned(self, host: str) -> None:
        """``host`` was just banned: say so and drop its connections."""
        log.warning(
            "peer banned", extra={"fields": {"peer": host, "reason": self.bans.reason(host)}}
        )
        for conn in list(self._connections):
            if conn.address[0] == host:
                self._close(conn)

    def _piece_passed(self, index: int, source: str, now: float, *, announce: bool = True) -> None:
        for peer, block in self.picker.piece_passed(index):
            assert isinstance(peer, Connection)
            if block in peer.wire.our_requests and not peer.closing:
                peer.send(Cancel(block))
        self.bans.forget_piece(index)
        if announce:
            for conn in list(self._connections):
                if conn.closing or not conn.wire.established:
                    continue
                if not self.picker.peer_has_piece(conn, index):
                    conn.pending_haves.append(index)
                    if not conn.wire.am_choking:
                        self._flush_haves(conn)  # it may ask for it right away
                    elif conn not in self._unflushed:
                        if not self._unflushed:
                            self._flush_wakeup.set()
                        self._unflushed.add(conn)
                elif conn.wire.am_interested:
                    # It may have had nothing else we want.
                    self._update_interest(conn, now, fill=False)
        event = PieceCompleted(index, source)
        for listener in list(self._piece_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("piece listener failed")
        waiter = self._piece_waiters.pop(index, None)
        if waiter is not None:
            waiter.set()
        if self.picker.complete and not self._complete_event.is_set():
            self._on_complete(now, announce=announce)

    def _on_complete(self, now: float, *, announce: bool) -> None:
        self.completed_at = now
        self._complete_event.set()
        if announce and self.started_at is not None:
            log.info(
                "download complete",
                extra={
                    "fields": {
                        "torrent": self.metainfo.name,
                        "seconds": f"{now - self.started_at:.2f}",
                        "bytes": self.bytes_downloaded,
                    }
                },
            )
        self.announcer.wake()
        for conn in list(self._connections):
            if not conn.wire.established or conn.closing:
                continue
            if self.picker.peer_is_seed(conn):
                self._close(conn)
            else:
                self._update_interest(conn, now, fill=False)  # not interested any more

    # -- periodic work -----------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last_housekeeping = -1e9
        while True:
            with trio.move_on_after(1.0):
                await self._tick_wakeup.wait()
            now = trio.current_time()
            self._run_choker(now)
            if now - last_housekeeping >= 1.0:
                last_housekeeping = now
                self._housekeeping(now)
            self._connect_more(now)

    def _run_choker(self, now: float) -> None:
        established = [
            conn for conn in self._connections if conn.wire.established and not conn.closing
        ]
        views = [
            ChokerPeer(
                key=conn,
                interested=conn.wire.peer_interested,
                download_rate=conn.down_meter.rate(now),
                upload_rate=conn.up_meter.rate(now),
                connected_at=conn.connected_at,
                snubbed=is_snubbed(now, conn.interested_since, conn.last_block_at),
                idle=self._idle(conn, now),
                uploaded=int(conn.up_meter.total),
                downloaded=int(conn.down_meter.total),
            )
            for conn in established
        ]
        decision = self.choker.decide(now, views, seeding=self.picker.complete)
        for conn in established:
            if conn in decision.unchoked:
                if conn.wire.am_choking:
                    conn.send(Unchoke())
                    conn.unchoked_at = now
            elif not conn.wire.am_choking:
                conn.send(Choke())
                # Requests for allowed-fast pieces survive a choke (BEP 6).
                remaining = conn.wire.remote_requests
                queue = conn.upload_queue
                kept = [block for block in queue if block in remaining]
                queue.clear()
                queue.extend(kept)

    def _idle(self, conn: Connection, now: float) -> bool:
        """Unchoked for a while and asking us for nothing, or not reading what it asked for."""
        if self._stalled(conn, now):
            return True
        if conn.wire.am_choking or conn.wire.remote_requests or conn.upload_queue:
            return False
        grace = self.settings.idle_unchoke_seconds
        return now - conn.unchoked_at > grace and now - conn.last_request_at > grace

    def _housekeeping(self, now: float) -> None:
        settings = self.settings
        for peer, block in self.picker.stalled(now, settings.request_timeout):
            assert isinstance(peer, Connection)
            self.picker.cancel_request(peer, block)
            if block in peer.wire.our_requests and not peer.closing:
                peer.send(Cancel(block))
        for conn in list(self._connections):
            if conn.closing:
                continue
            self._watchdog(conn, now)
            if not conn.wire.established or conn.closing:
                continue
            if now - conn.last_sent >= settings.keepalive_interval and not conn.outbox:
                conn.send(KeepAlive())
            self._send_pex(conn, now)
            self._fill_requests(conn, now)
