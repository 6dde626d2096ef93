"""A peer connection: its state, outbox, writer task and uploader task.

How it works. Everything to send goes into ``outbox`` (:meth:`Connection.write`);
the writer task drains it in order. The uploader task serves the peer's
requests from ``upload_queue`` in batches, charging the upload caps first,
and writes the pieces itself when the writer is idle (one task switch less
per block) or queues them behind what the writer sends (backpressure at
``OUTBOX_HIGH_WATER``). The swarm owns the reader and every decision.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import trio
from seedcast.peer._rawsocket import RawStream
from seedcast.peer.extensions import ExtensionHandshake, PexState
from seedcast.peer.messages import BlockRef, Event, Piece
from seedcast.peer.wire import PeerWire
from seedcast.ratelimit import TokenBucket, consume_all
from seedcast.rates import RateMeter

__all__ = ["OUTBOX_HIGH_WATER", "Connection", "Wakeup"]

OUTBOX_HIGH_WATER = 128 * 1024
UPLOAD_BATCH = 2
"""Blocks charged to the upload caps and sent together."""


class Wakeup:
    """A level-triggered wake-up: ``set()`` then ``await wait()`` returns once."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class Connection:
    """One peer connection's state, its outbox and its writer and uploader tasks."""

    __slots__ = (
        "address",
        "closing",
        "connected_at",
        "down_bucket",
        "down_meter",
        "drained",
        "extensions",
        "fast_budget",
        "fast_granted",
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
        "pex",
        "pex_at",
        "pex_received_at",
        "request_depth",
        "request_depth_at",
        "sending",
        "sending_since",
        "stream",
        "suggested",
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
        upload_rate: float = 0.0,
        download_rate: float = 0.0,
    ) -> None:
        """``upload_rate``/``download_rate``: this connection's caps in bytes/s (0 = none)."""
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
        self.writer_wakeup = Wakeup()
        self.drained = Wakeup()
        self.upload_queue: deque[BlockRef] = deque()
        self.pending_haves: list[int] = []
        self.request_depth = 0
        self.request_depth_at = -1e9
        self.upload_wakeup = Wakeup()
        self.closing = False
        self.suggested: deque[int] = deque(maxlen=16)
        """Pieces the peer suggested (BEP 6), newest last."""
        self.fast_budget = 0
        self.fast_granted = False
        self.extensions: ExtensionHandshake | None = None
        """The peer's BEP 10 handshake, once received."""
        self.pex = PexState()
        self.pex_at = math.inf
        """When we next send the peer a ut_pex message."""
        self.pex_received_at = -math.inf
        """Bytes we still serve the peer while choking it (its allowed-fast pieces)."""
        self.nursery: trio.Nursery | None = None
        self.up_bucket = TokenBucket(upload_rate) if upload_rate else None
        self.down_bucket = TokenBucket(download_rate) if download_rate else None

    def write(self, data: bytes) -> None:
        if data and not self.closing:
            self.outbox += data
            self.writer_wakeup.set()

    def send(self, event: Event) -> None:
        self.write(self.wire.send(event))

    def __repr__(self) -> str:
        return f"<peer {self.address[0]}:{self.address[1]}>"

    async def writer(self) -> None:
        """Drain the outbox, in order, until cancelled."""
        conn = self
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

    async def uploader(
        self,
        read_block: Callable[[int, int, int], bytes],
        shared_bucket: Callable[[], TokenBucket | None],
        on_sent: Callable[[int], None],
    ) -> None:
        """Serve the peer's requests in order, charging the caps before each batch.

        ``shared_bucket()`` is the swarm-wide upload cap (it can change at
        run time); ``on_sent(bytes)`` counts what went out.
        """
        conn = self
        wire = conn.wire
        queue = conn.upload_queue
        while not conn.closing:
            while not queue:
                await conn.upload_wakeup.wait()
                if conn.closing:
                    return
            batch: list[BlockRef] = []
            while queue and len(batch) < UPLOAD_BATCH:
                block = queue.popleft()
                if block in wire.remote_requests:
                    batch.append(block)
            if not batch:
                continue
            bucket = shared_bucket()
            if bucket is not None or conn.up_bucket is not None:
                total = sum(block.length for block in batch)
                await consume_all((bucket, conn.up_bucket), total)
            if conn.closing:
                return
            parts = []
            sent = 0
            for block in batch:
                if block in wire.remote_requests:  # not cancelled or choked meanwhile
                    data = read_block(block.index, block.begin, block.length)
                    parts.append(wire.send(Piece(block.index, block.begin, data)))
                    sent += block.length
            if not sent:
                continue
            now = trio.current_time()
            conn.up_meter.add(sent, now)
            on_sent(sent)
            if conn.sending:
                # The writer is busy: queue behind what it sends.
                conn.write(b"".join(parts))
                while len(conn.outbox) > OUTBOX_HIGH_WATER and not conn.closing:
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
