"""The trio shell of a BitTorrent peer: one torrent, many connections.

How it works. :class:`Swarm` owns the sans-IO cores (a :class:`PiecePicker`,
a :class:`Choker`, one :class:`PeerWire` per connection) and the
:class:`Storage`, and does the I/O around them:

* ``serve`` checks what is already on disk (resume), listens, and runs the
  tracker loop (HTTP announces: started, periodic, completed, stopped), the
  tick loop (choker, keep-alives, stalled requests, new connections) and one
  task group per connection.
* A connection has three tasks: the reader (receive, charge the download
  buckets, feed the wire, act on events synchronously), the writer (drains
  the connection's outbox; control messages and pieces share it in order)
  and the uploader (serves the peer's requests in order, charging the upload
  buckets before each block). Every read and write has a deadline.
* Requests are pipelined: each connection keeps ``rate x request_seconds``
  bytes of requests outstanding (within ``min``/``max_request_queue``).
* Every piece is SHA-1 verified before it counts, is announced or served.
  A failed piece is fetched again from a single peer (the picker's parole);
  the blocks each peer sent are remembered by hash, and once the piece
  passes, a peer whose blocks differ is banned at once (by peer id and
  address). A peer that alone delivered ``ban_threshold`` failed pieces is
  banned too.
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
import random
import string
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import sha1
from typing import TYPE_CHECKING, Any

import trio
from seedcast.errors import (
    ProtocolError,
    RemoteProtocolError,
    SeedcastError,
    TransportError,
)
from seedcast.peer._rawsocket import RawListener, RawStream, open_raw_stream
from seedcast.peer.announce import (
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    parse_announce_response,
)
from seedcast.peer.choker import Choker, ChokerPeer, is_snubbed
from seedcast.peer.messages import (
    BLOCK_SIZE,
    Bitfield,
    BlockRef,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
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
    Unchoke,
)
from seedcast.peer.metainfo import Metainfo
from seedcast.peer.picker import PiecePicker
from seedcast.peer.rates import RateMeter
from seedcast.peer.storage import Storage
from seedcast.peer.wire import PeerWire, TorrentShape
from seedcast.ratelimit import TokenBucket, consume_all

if TYPE_CHECKING:
    from seedcast.http11 import HttpClient

__all__ = ["PieceCompleted", "Swarm", "SwarmSettings", "SwarmStatistics", "new_peer_id"]

log = logging.getLogger("seedcast.peer")

PEER_ID_PREFIX = b"-SC0100-"
_RECEIVE_SIZE = 64 * 1024
_OUTBOX_HIGH_WATER = 128 * 1024
_CHARGE_BYTES = 16 * 1024
_DEPTH_SECONDS = 0.25
_UPLOAD_BATCH = 2
"""Blocks charged to the upload caps and sent together."""
_STOPPED_ANNOUNCE_SECONDS = 2.0

Fetch = Callable[[str, str | None], Awaitable[bytes]]
"""``await fetch(url, local_address)`` -> response body (raises TransportError / ProtocolError)."""


def new_peer_id(rng: random.Random) -> bytes:
    """Azureus-style peer id: ``-SC0100-`` and 12 random letters/digits."""
    alphabet = string.ascii_letters + string.digits
    return PEER_ID_PREFIX + "".join(rng.choice(alphabet) for _ in range(12)).encode()


@dataclass(frozen=True, slots=True)
class SwarmSettings:
    upload_rate: float = 0.0
    """Bytes/s this peer uploads in total; 0 = unlimited."""
    download_rate: float = 0.0
    connection_upload_rate: float = 0.0
    """Bytes/s per connection; 0 = unlimited."""
    connection_download_rate: float = 0.0
    max_connections: int = 50
    max_half_open: int = 8
    regular_unchokes: int = 4
    optimistic_unchokes: int = 1
    choke_interval: float = 10.0
    optimistic_interval: float = 30.0
    connect_timeout: float = 5.0
    handshake_timeout: float = 10.0
    idle_timeout: float = 180.0
    write_timeout: float = 60.0
    keepalive_interval: float = 60.0
    request_timeout: float = 20.0
    seed_policy: str = "fastest-upload"
    """Whom a seed unchokes: "fastest-upload" or "round-robin" (least served first)."""
    idle_unchoke_seconds: float = 2.0
    batch_seconds: float = 0.5
    """HAVE messages to peers we choke wait this long to travel together."""
    """An unchoked peer that asks for nothing this long gives its slot to another."""
    request_seconds: float = 3.0
    min_request_queue: int = 4
    max_request_queue: int = 500
    ban_threshold: int = 3
    numwant: int = 50
    announce_timeout: float = 10.0
    retry_seconds: float = 30.0
    local_address: str | None = None
    """Source address of outgoing connections and announces (a 127.0.40.k)."""
    fast_extension: bool = True


@dataclass(frozen=True, slots=True)
class SwarmStatistics:
    name: str
    info_hash: str
    bytes_uploaded: int
    bytes_downloaded: int
    pieces_have: int
    pieces_total: int
    peers_connected: int
    peers_unchoked: int
    """Peers we upload to."""
    peers_interested: int
    """Peers interested in what we have."""
    peers_unchoking_us: int
    hash_failures: int
    bans: int
    connections_refused: int
    protocol_errors: dict[str, int] = field(default_factory=dict)
    seconds_to_complete: float | None = None
    complete: bool = False


@dataclass(frozen=True, slots=True)
class PieceCompleted:
    index: int
    source: str
    """"peer" (downloaded here), "disk" (found at start) or what add_verified_piece said."""


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


class _Wakeup:
    """A level-triggered wake-up: ``set()`` then ``await wait()`` returns once."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class _Connection:
    __slots__ = (
        "address",
        "closing",
        "connected_at",
        "down_bucket",
        "down_meter",
        "drained",
        "interested_since",
        "last_block_at",
        "last_received",
        "last_request_at",
        "last_sent",
        "listen_address",
        "nursery",
        "outbox",
        "outgoing",
        "pending_haves",
        "request_depth",
        "request_depth_at",
        "sending",
        "sending_since",
        "stream",
        "uncharged",
        "unchoked_at",
        "up_bucket",
        "up_meter",
        "upload_queue",
        "upload_wakeup",
        "wire",
        "writer_wakeup",
    )

    def __init__(
        self,
        stream: RawStream,
        wire: PeerWire,
        address: tuple[str, int],
        *,
        outgoing: bool,
        now: float,
        settings: SwarmSettings,
    ) -> None:
        self.stream = stream
        self.wire = wire
        self.address = address
        self.listen_address: tuple[str, int] | None = address if outgoing else None
        self.outgoing = outgoing
        self.connected_at = now
        self.last_received = now
        self.last_sent = now
        self.sending = False
        self.sending_since: float | None = None
        self.uncharged = 0
        self.interested_since: float | None = None
        self.last_block_at: float | None = None
        self.last_request_at = now
        self.unchoked_at = now
        self.down_meter = RateMeter(now)
        self.up_meter = RateMeter(now)
        self.outbox = bytearray()
        self.writer_wakeup = _Wakeup()
        self.drained = _Wakeup()
        self.upload_queue: deque[BlockRef] = deque()
        self.pending_haves: list[int] = []
        self.request_depth = 0
        self.request_depth_at = -1e9
        self.upload_wakeup = _Wakeup()
        self.closing = False
        self.nursery: trio.Nursery | None = None
        self.up_bucket = (
            TokenBucket(settings.connection_upload_rate)
            if settings.connection_upload_rate
            else None
        )
        self.down_bucket = (
            TokenBucket(settings.connection_download_rate)
            if settings.connection_download_rate
            else None
        )

    def write(self, data: bytes) -> None:
        if data and not self.closing:
            self.outbox += data
            self.writer_wakeup.set()

    def send(self, event: Event) -> None:
        self.write(self.wire.send(event))

    @property
    def identity(self) -> tuple[str, bytes | None]:
        return self.address[0], self.wire.remote_peer_id

    def __repr__(self) -> str:
        return f"<peer {self.address[0]}:{self.address[1]}>"


class Swarm:
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
        self.announce_urls = [url for url in announce_urls if url.startswith("http")]
        self._fetch = fetch
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
        )
        self.upload_bucket = upload_bucket or (
            TokenBucket(self.settings.upload_rate) if self.settings.upload_rate else None
        )
        self.download_bucket = download_bucket or (
            TokenBucket(self.settings.download_rate) if self.settings.download_rate else None
        )
        self._connections: set[_Connection] = set()
        self._by_peer_id: dict[bytes, _Connection] = {}
        self._connecting: set[tuple[str, int]] = set()
        self._known: dict[tuple[str, int], float] = {}
        """Addresses to connect to -> earliest next attempt."""
        self._peer_ids: dict[tuple[str, int], bytes] = {}
        self._banned_hosts: set[str] = set()
        self._banned_ids: set[bytes] = set()
        self._blame: Counter[tuple[str, bytes | None]] = Counter()
        self._block_sources: dict[int, dict[int, tuple[str, bytes | None]]] = {}
        self._suspects: dict[int, list[tuple[tuple[str, bytes | None], int, bytes]]] = {}
        self._piece_listeners: list[Callable[[PieceCompleted], None]] = []
        self._piece_waiters: dict[int, trio.Event] = {}
        self._complete_event = trio.Event()
        self._ready_event = trio.Event()
        self._tick_wakeup = _Wakeup()
        self._flush_wakeup = _Wakeup()
        self._unflushed: set[_Connection] = set()
        self._announce_wakeup = _Wakeup()
        self._nursery: trio.Nursery | None = None
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.bytes_uploaded = 0
        self.bytes_downloaded = 0
        self.hash_failures = 0
        self.bans = 0
        self.connections_refused = 0
        self.protocol_errors: Counter[str] = Counter()
        self.tracker_errors = 0
        self.last_announce: AnnounceResponse | None = None
        self._http: HttpClient | None = None

    # -- public API -----------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.picker.complete

    def add_peer(self, host: str, port: int) -> None:
        """Connect to ``host:port`` (as if a tracker had named it)."""
        self._known.setdefault((host, port), 0.0)
        self._tick_wakeup.set()

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
            bans=self.bans,
            connections_refused=self.connections_refused,
            protocol_errors=dict(self.protocol_errors),
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
                if self.announce_urls:
                    nursery.start_soon(self._tracker_loop)
                self._ready_event.set()
                task_status.started([f"{bound[0]}:{bound[1]}"])
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def _accept_loop(self, listener: RawListener) -> None:
        while True:
            try:
                stream, peer = await listener.accept()
            except OSError as error:  # EMFILE and friends: back off, never die
                log.warning("accept failed", extra={"fields": {"error": error}})
                await trio.sleep(0.1)
                continue
            if len(self._connections) >= self.settings.max_connections or (
                peer[0] in self._banned_hosts
            ):
                self.connections_refused += 1
                await stream.aclose()
                continue
            assert self._nursery is not None
            self._nursery.start_soon(self._run_connection, stream, peer, False)

    # -- connections -------------------------------------------------------------------

    async def _connect(self, address: tuple[str, int]) -> None:
        try:
            with trio.fail_after(self.settings.connect_timeout):
                stream = await open_raw_stream(*address, local_address=self.settings.local_address)
        except (OSError, trio.TooSlowError) as error:
            log.debug("connect failed", extra={"fields": {"address": address, "error": error}})
            self._known[address] = trio.current_time() + self.settings.retry_seconds
            self._connecting.discard(address)
            return
        self._connecting.discard(address)
        await self._run_connection(stream, address, True)

    async def _run_connection(
        self, stream: RawStream, address: tuple[str, int], outgoing: bool
    ) -> None:
        now = trio.current_time()
        wire = PeerWire(
            self.peer_id,
            self.shape,
            fast=self.settings.fast_extension,
            expected_peer_id=self._peer_ids.get(address) if outgoing else None,
        )
        conn = _Connection(
            stream, wire, address, outgoing=outgoing, now=now, settings=self.settings
        )
        self._connections.add(conn)
        try:
            if outgoing:
                conn.send(wire.handshake(self.metainfo.info_hash))
            async with trio.open_nursery() as nursery:
                conn.nursery = nursery
                nursery.start_soon(self._writer, conn)
                await self._reader(conn)
                nursery.cancel_scope.cancel()
        # Errors arrive wrapped in the connection's nursery group: sort them
        # with except*. Nothing a peer does (nor a bug in handling it) may
        # escape this function: it would take the whole swarm down.
        except* RemoteProtocolError as group:
            for error in _leaves(group):
                assert isinstance(error, RemoteProtocolError)
                self.protocol_errors[error.reason] += 1
                log.debug(
                    "peer broke the protocol",
                    extra={"fields": {"peer": address, "reason": error.reason, "error": error}},
                )
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as group:
            log.debug(
                "connection lost", extra={"fields": {"peer": address, "error": _leaves(group)[0]}}
            )
        except* trio.TooSlowError:
            self.protocol_errors["timeout"] += 1
            log.debug("connection timed out", extra={"fields": {"peer": address}})
        except* Exception as group:
            self.protocol_errors["internal"] += 1
            log.error(
                "connection failed on our side",
                exc_info=_leaves(group)[0],
                extra={"fields": {"peer": address}},
            )
        finally:
            self._forget(conn)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _forget(self, conn: _Connection) -> None:
        conn.closing = True
        conn.wire.close()
        self._connections.discard(conn)
        peer_id = conn.wire.remote_peer_id
        if peer_id is not None and self._by_peer_id.get(peer_id) is conn:
            del self._by_peer_id[peer_id]
        if conn.listen_address is not None:
            self._known[conn.listen_address] = trio.current_time() + self.settings.retry_seconds
        self.picker.remove_peer(conn)
        conn.upload_wakeup.set()
        conn.drained.set()
        self._tick_wakeup.set()

    def _close(self, conn: _Connection) -> None:
        """Drop ``conn`` from our side (ban, duplicate, both seeds)."""
        if conn.nursery is not None:
            conn.nursery.cancel_scope.cancel()
        conn.closing = True

    async def _reader(self, conn: _Connection) -> None:
        # No per-read deadline here (a cancel scope per read costs more than
        # the read): the tick loop's watchdog closes silent connections.
        stream = conn.stream
        wire = conn.wire
        charge_at = _CHARGE_BYTES
        while not conn.closing:
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                wire.receive_data(b"")
                return
            now = trio.current_time()
            conn.last_received = now
            if self.download_bucket is not None or conn.down_bucket is not None:
                # Charge the download caps in chunks: small control messages
                # would otherwise cost a scheduler round trip each.
                conn.uncharged += len(data)
                if conn.uncharged >= charge_at:
                    charged, conn.uncharged = conn.uncharged, 0
                    await consume_all((self.download_bucket, conn.down_bucket), charged)
                    now = trio.current_time()
            events = wire.receive_data(data)
            while events:
                for event in events:
                    self._handle(conn, event, now)
                    if conn.closing:
                        return
                # Parsing pauses after an incoming handshake until ours is sent.
                events = wire.pending_events() if wire.buffered() else []

    async def _writer(self, conn: _Connection) -> None:
        stream = conn.stream
        while True:
            while not conn.outbox or conn.sending:
                await conn.writer_wakeup.wait()
            data = conn.outbox
            conn.outbox = bytearray()
            conn.sending = True
            conn.sending_since = trio.current_time()
            try:
                await stream.send_all(data)
            finally:
                conn.sending = False
                conn.sending_since = None
            conn.last_sent = trio.current_time()
            conn.drained.set()

    async def _flush_loop(self) -> None:
        """Send the HAVEs waiting for peers we choke, every ``batch_seconds``."""
        while True:
            await self._flush_wakeup.wait()
            await trio.sleep(self.settings.batch_seconds)
            pending, self._unflushed = self._unflushed, set()
            for conn in pending:
                self._flush_haves(conn)

    def _flush_haves(self, conn: _Connection) -> None:
        if conn.pending_haves and not conn.closing:
            conn.write(conn.wire.send_haves(conn.pending_haves))
        conn.pending_haves.clear()

    def _watchdog(self, conn: _Connection, now: float) -> None:
        """Close connections that stay silent, never finish the handshake or stall a write."""
        settings = self.settings
        if not conn.wire.established:
            expired = now - conn.connected_at > settings.handshake_timeout
        else:
            expired = now - conn.last_received > settings.idle_timeout
        sending = conn.sending_since
        if expired or (sending is not None and now - sending > settings.write_timeout):
            self.protocol_errors["timeout"] += 1
            log.debug("connection timed out", extra={"fields": {"peer": conn.address}})
            self._close(conn)

    async def _uploader(self, conn: _Connection) -> None:
        wire = conn.wire
        queue = conn.upload_queue
        while not conn.closing:
            while not queue:
                await conn.upload_wakeup.wait()
                if conn.closing:
                    return
            batch: list[BlockRef] = []
            while queue and len(batch) < _UPLOAD_BATCH:
                block = queue.popleft()
                if block in wire.remote_requests:
                    batch.append(block)
            if not batch:
                continue
            if self.upload_bucket is not None or conn.up_bucket is not None:
                total = sum(block.length for block in batch)
                await consume_all((self.upload_bucket, conn.up_bucket), total)
            if conn.closing:
                return
            parts = []
            sent = 0
            for block in batch:
                if block in wire.remote_requests:  # not cancelled or choked meanwhile
                    data = self.storage.read_block(block.index, block.begin, block.length)
                    parts.append(wire.send(Piece(block.index, block.begin, data)))
                    sent += block.length
            if not sent:
                continue
            now = trio.current_time()
            conn.up_meter.add(sent, now)
            self.bytes_uploaded += sent
            if conn.sending:
                # The writer is busy: queue behind what it sends.
                conn.write(b"".join(parts))
                while len(conn.outbox) > _OUTBOX_HIGH_WATER and not conn.closing:
                    await conn.drained.wait()
                continue
            # Send ourselves (one task switch less per block), after anything queued.
            conn.sending = True
            if conn.outbox:
                parts.insert(0, bytes(conn.outbox))
                conn.outbox = bytearray()
            conn.sending_since = now
            try:
                await conn.stream.send_all(b"".join(parts))
            finally:
                conn.sending = False
                conn.sending_since = None
            conn.last_sent = trio.current_time()
            if conn.outbox:
                conn.writer_wakeup.set()

    # -- events ------------------------------------------------------------------------

    def _handle(self, conn: _Connection, event: Event, now: float) -> None:
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
            if wire.am_choking:
                conn.send(RejectRequest(block))  # fast extension: answer every request
            else:
                conn.upload_queue.append(block)
                conn.upload_wakeup.set()
        elif isinstance(event, Cancel):
            try:
                conn.upload_queue.remove(event.block)
            except ValueError:
                pass
            if wire.fast and event.block in wire.remote_requests:
                conn.send(RejectRequest(event.block))
        elif isinstance(event, Unchoke):
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
            self._after_peer_pieces(conn, now)
        elif isinstance(event, HaveAll):
            picker.peer_has_all(conn)
            self._after_peer_pieces(conn, now)
        elif isinstance(event, Handshake):
            self._on_handshake(conn, event, now)
        elif isinstance(event, ConnectionClosed):
            conn.closing = True
        # Choke (requests come back as rejects or RequestsDropped), HaveNone,
        # KeepAlive, AllowedFast, SuggestPiece, Port, unknown messages: nothing to do.

    def _on_handshake(self, conn: _Connection, handshake: Handshake, now: float) -> None:
        peer_id = handshake.peer_id
        if peer_id in self._banned_ids or conn.address[0] in self._banned_hosts:
            raise RemoteProtocolError("banned peer", reason="banned")
        existing = self._by_peer_id.get(peer_id)
        if existing is not None:
            # Both sides connected at once: keep the connection opened by the
            # peer with the smaller id, so both ends drop the same one.
            keep_outgoing = self.peer_id < peer_id
            if conn.outgoing == keep_outgoing and existing.outgoing != keep_outgoing:
                self._close(existing)
            else:
                raise RemoteProtocolError("second connection to the same peer", reason="duplicate")
        self._by_peer_id[peer_id] = conn
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
        assert conn.nursery is not None
        conn.nursery.start_soon(self._uploader, conn)
        self._tick_wakeup.set()

    def _after_peer_pieces(self, conn: _Connection, now: float) -> None:
        if self.picker.complete and self.picker.peer_is_seed(conn):
            self._close(conn)  # two seeds have nothing to say to each other
            return
        self._update_interest(conn, now)

    def _update_interest(self, conn: _Connection, now: float, *, fill: bool = True) -> None:
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

    def _fill_requests(self, conn: _Connection, now: float) -> None:
        wire = conn.wire
        if wire.peer_choking or not wire.am_interested or conn.closing:
            return
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
        blocks = self.picker.pick_blocks(conn, wanted, now)
        if blocks:
            conn.write(b"".join(wire.send(Request(block)) for block in blocks))

    def _on_piece(self, conn: _Connection, piece: Piece, now: float) -> None:
        length = len(piece.data)
        self.bytes_downloaded += length
        conn.down_meter.add(length, now)
        conn.last_block_at = now
        block = piece.block
        outcome = self.picker.block_received(conn, block)
        for other, duplicate in outcome.cancel:
            assert isinstance(other, _Connection)
            if duplicate in other.wire.our_requests:
                other.send(Cancel(duplicate))
        if outcome.accepted:
            self.storage.write_block(piece.index, piece.begin, piece.data)
            sources = self._block_sources.setdefault(piece.index, {})
            sources[piece.begin // BLOCK_SIZE] = conn.identity
            if outcome.piece_complete:
                self._on_piece_complete(piece.index, now)
        self._fill_requests(conn, now)

    def _on_piece_complete(self, index: int, now: float) -> None:
        buffer = self.storage.take_piece(index)
        sources = self._block_sources.pop(index, {})
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
        if buffer is not None:
            suspects = self._suspects.setdefault(index, [])
            for block_number, identity in sources.items():
                start = block_number * BLOCK_SIZE
                digest = sha1(buffer[start : start + BLOCK_SIZE]).digest()
                suspects.append((identity, block_number, digest))
        culprits = set(sources.values())
        if len(culprits) == 1:
            # A piece from a single peer that fails is that peer's fault.
            (identity,) = culprits
            self._blame[identity] += 1
            if self._blame[identity] >= self.settings.ban_threshold:
                self._ban(identity, "hash failures")
        for conn in list(self._connections):
            if conn.wire.established and not conn.closing:
                self._fill_requests(conn, now)

    def _judge_suspects(self, index: int, good: bytes | bytearray) -> None:
        """A piece that failed before now passed: whoever sent a different block lied."""
        suspects = self._suspects.pop(index, None)
        if not suspects:
            return
        for identity, block_number, digest in suspects:
            start = block_number * BLOCK_SIZE
            if sha1(good[start : start + BLOCK_SIZE]).digest() != digest:
                self._ban(identity, "sent corrupt data")

    def _ban(self, identity: tuple[str, bytes | None], why: str) -> None:
        host, peer_id = identity
        if peer_id is not None and peer_id in self._banned_ids:
            return
        self.bans += 1
        if peer_id is not None:
            self._banned_ids.add(peer_id)
        if host:
            self._banned_hosts.add(host)
        log.warning("peer banned", extra={"fields": {"peer": host, "reason": why}})
        for conn in list(self._connections):
            if conn.address[0] == host or (peer_id and conn.wire.remote_peer_id == peer_id):
                self._close(conn)

    def _piece_passed(self, index: int, source: str, now: float, *, announce: bool = True) -> None:
        for peer, block in self.picker.piece_passed(index):
            assert isinstance(peer, _Connection)
            if block in peer.wire.our_requests and not peer.closing:
                peer.send(Cancel(block))
        self._block_sources.pop(index, None)
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
        self._announce_wakeup.set()
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
                uploaded=conn.up_meter.total,
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
                conn.upload_queue.clear()

    def _idle(self, conn: _Connection, now: float) -> bool:
        """Unchoked for a while and asking us for nothing."""
        if conn.wire.am_choking or conn.wire.remote_requests or conn.upload_queue:
            return False
        grace = self.settings.idle_unchoke_seconds
        return now - conn.unchoked_at > grace and now - conn.last_request_at > grace

    def _housekeeping(self, now: float) -> None:
        settings = self.settings
        for peer, block in self.picker.stalled(now, settings.request_timeout):
            assert isinstance(peer, _Connection)
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
            self._fill_requests(conn, now)

    def _connect_more(self, now: float) -> None:
        if self._nursery is None:
            return
        settings = self.settings
        room = settings.max_connections - len(self._connections) - len(self._connecting)
        if room <= 0 or not self._known:
            return
        connected = {conn.listen_address for conn in self._connections if conn.listen_address}
        own = self.listen_address
        for address, not_before in list(self._known.items()):
            if room <= 0 or len(self._connecting) >= settings.max_half_open:
                break
            if not_before > now or address in connected or address in self._connecting:
                continue
            if address[0] in self._banned_hosts or self._peer_ids.get(address) in self._banned_ids:
                continue
            if own is not None and address == own:
                continue
            if self._peer_ids.get(address) in self._by_peer_id:
                continue
            self._known[address] = now + settings.retry_seconds
            self._connecting.add(address)
            room -= 1
            self._nursery.start_soon(self._connect, address)

    # -- tracker --------------------------------------------------------------------------

    def _left(self) -> int:
        missing = self.picker.num_pieces - self.picker.have_count
        if not missing:
            return 0
        return sum(
            self.metainfo.piece_size(index)
            for index in range(self.picker.num_pieces)
            if not self.picker.has(index)
        )

    async def announce(
        self, event: AnnounceEvent | None, *, quiet: bool = False
    ) -> AnnounceResponse | None:
        """One announce to each tracker URL in turn; the first answer wins. None if all fail.

        Failures are counted and logged (a warning, or debug when ``quiet``).
        """
        assert self.listen_address is not None
        request = AnnounceRequest(
            info_hash=self.metainfo.info_hash,
            peer_id=self.peer_id,
            port=self.listen_address[1],
            uploaded=self.bytes_uploaded,
            downloaded=self.bytes_downloaded,
            left=self._left(),
            event=event,
            numwant=0 if event is AnnounceEvent.STOPPED else self.settings.numwant,
        )
        for url in self.announce_urls:
            try:
                with trio.fail_after(self.settings.announce_timeout):
                    body = await self._get(request.url(url))
                response = parse_announce_response(body)
            except (SeedcastError, OSError, trio.TooSlowError, ValueError) as error:
                self.tracker_errors += 1
                reason = error.reason if isinstance(error, ProtocolError) else type(error).__name__
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "announce failed",
                    extra={"fields": {"tracker": url, "reason": reason, "error": error}},
                )
                continue
            self.last_announce = response
            own = self.listen_address
            for peer in response.peers:
                address = (peer.host, peer.port)
                if own is not None and address == own:
                    continue
                if peer.peer_id is not None:
                    if peer.peer_id == self.peer_id:
                        continue
                    self._peer_ids[address] = peer.peer_id
                self._known.setdefault(address, 0.0)
            if response.peers:
                self._tick_wakeup.set()
            return response
        return None

    async def _get(self, url: str) -> bytes:
        if self._fetch is not None:
            return await self._fetch(url, self.settings.local_address)
        if self._http is None:
            timeout = self.settings.announce_timeout
            from seedcast.http11 import HttpClient

            self._http = HttpClient(
                connect_timeout=timeout,
                read_timeout=timeout,
                max_connections_per_host=2,
                local_address=self.settings.local_address,
            )
        response = await self._http.request("GET", url)
        if response.status != 200:
            raise TransportError(f"tracker answered HTTP {response.status}")
        content: bytes = response.content
        return content

    async def _tracker_loop(self) -> None:
        event: AnnounceEvent | None = AnnounceEvent.STARTED
        completed_sent = self.picker.complete
        failures = 0
        try:
            while True:
                response = await self.announce(event, quiet=failures > 0)
                if response is None:
                    # Back off, and say so once: a tracker that is down must not flood the log.
                    delay = min(5.0 * 2**failures, 300.0)
                    failures += 1
                else:
                    failures = 0
                    event = None
                    delay = response.interval
                    few_peers = len(self._connections) < min(10, self.settings.max_connections)
                    if few_peers and not self.picker.complete and response.min_interval:
                        delay = min(delay, max(response.min_interval, 5.0))
                with trio.move_on_after(delay):
                    while completed_sent or not self.picker.complete:
                        await self._announce_wakeup.wait()
                if self.picker.complete and not completed_sent:
                    completed_sent = True
                    if event is None:
                        event = AnnounceEvent.COMPLETED
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_STOPPED_ANNOUNCE_SECONDS):
                await self.announce(AnnounceEvent.STOPPED, quiet=True)
                if self._http is not None:
                    await self._http.aclose()
                    self._http = None
