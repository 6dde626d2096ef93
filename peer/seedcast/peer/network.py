"""The swarm's connections: accepting, admitting, connecting, reading, timing out.

How it works. :class:`PeerConnections` is the connection half of
:class:`~seedcast.peer.swarm.Swarm` (a base class, so both halves share one
state): the accept loop asks :func:`~seedcast.peer.admission.admit` before
a connection costs anything (bans, per-host caps, eviction of the least
useful connection when full); outgoing connections go to the addresses
learned from trackers, PEX and ``add_peer``, at most ``max_half_open`` at a
time; each connection runs its reader here (receive, charge the download
caps, parse with the sans-IO wire, hand every event to ``Swarm._handle``)
beside its :class:`~seedcast.peer.connection.Connection` writer. Whatever a
peer does, and any bug in handling it, ends that connection and is counted
by reason; it never escapes to the swarm. The watchdog closes connections
that never finish the handshake, fall silent or stall a write.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

import trio
from seedcast.errors import RemoteProtocolError
from seedcast.peer._rawsocket import RawListener, RawStream, open_raw_stream
from seedcast.peer.admission import ConnectionView, admit
from seedcast.peer.bans import BanList
from seedcast.peer.connection import Connection, Wakeup
from seedcast.peer.messages import Event
from seedcast.peer.picker import PiecePicker
from seedcast.peer.settings import SwarmSettings
from seedcast.peer.wire import PeerWire, TorrentShape
from seedcast.ratelimit import TokenBucket, consume_all

__all__ = ["PeerConnections"]

log = logging.getLogger("seedcast.peer")

_RECEIVE_SIZE = 64 * 1024
_CHARGE_BYTES = 16 * 1024


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


class PeerConnections:
    """The connection half of a swarm (see the module docstring)."""

    # State owned by Swarm.__init__, shared with the trading half.
    settings: SwarmSettings
    peer_id: bytes
    shape: TorrentShape
    picker: PiecePicker
    bans: BanList
    listen_address: tuple[str, int] | None
    download_bucket: TokenBucket | None
    protocol_errors: Counter[str]
    refusals: Counter[str]
    evictions: int
    unfinished_handshakes: int
    _connections: set[Connection]
    _connecting: set[tuple[str, int]]
    _known: dict[tuple[str, int], float]
    _peer_ids: dict[tuple[str, int], bytes]
    _by_peer_id: dict[tuple[str, bytes], Connection]
    _nursery: trio.Nursery | None
    _tick_wakeup: Wakeup

    def _handle(self, conn: Connection, event: Event, now: float) -> None:
        raise NotImplementedError  # the trading half (Swarm) acts on events

    def add_peer(self, host: str, port: int) -> None:
        """Connect to ``host:port`` (as if a tracker had named it)."""
        self._known.setdefault((host, port), 0.0)
        self._tick_wakeup.set()

    def known_peers(self) -> list[tuple[str, int]]:
        """Addresses we know of (from trackers, PEX and add_peer)."""
        return list(self._known)

    def learn_peers(self, peers: Iterable[tuple[str, int, bytes | None]]) -> None:
        """Addresses to connect to (host, port, claimed peer id or None), from a tracker or PEX."""
        own = self.listen_address
        learned = False
        room = self.settings.max_known_peers - len(self._known)
        for host, port, peer_id in peers:
            address = (host, port)
            if own is not None and address == own:
                continue
            if address not in self._known:
                if room <= 0:
                    continue  # a flood of addresses (PEX, tracker) must not grow memory
                room -= 1
            if peer_id is not None:
                if peer_id == self.peer_id:
                    continue
                self._peer_ids[address] = peer_id
            self._known.setdefault(address, 0.0)
            learned = True
        if learned:
            self._tick_wakeup.set()

    def connection_count(self) -> int:
        return len(self._connections)

    async def _accept_loop(self, listener: RawListener) -> None:
        while True:
            try:
                stream, peer = await listener.accept()
            except OSError as error:  # EMFILE and friends: back off, never die
                log.warning("accept failed", extra={"fields": {"error": error}})
                await trio.sleep(0.1)
                continue
            if not self._admit(peer[0]):
                await stream.aclose()
                continue
            assert self._nursery is not None
            self._nursery.start_soon(
                self._run_connection, self._new_connection(stream, peer, False)
            )

    @property
    def connections_refused(self) -> int:
        return sum(self.refusals.values())

    def _admit(self, host: str) -> bool:
        """Take a connection from ``host``? Evicts the least useful one when full."""
        now = trio.current_time()
        settings = self.settings
        decision = admit(
            host,
            [self._view(conn, now) for conn in self._connections if not conn.closing],
            now,
            max_connections=settings.max_connections,
            per_host=settings.max_connections_per_host,
            grace=settings.eviction_grace,
            banned=self.bans.is_banned(host),
        )
        if decision.refusal is not None:
            self.refusals[decision.refusal] += 1
        if decision.evict is not None:
            assert isinstance(decision.evict, Connection)
            self.evictions += 1
            log.debug("evicted for a newcomer", extra={"fields": {"peer": decision.evict.address}})
            self._close(decision.evict)
        return decision.accept

    def _view(self, conn: Connection, now: float) -> ConnectionView:
        wire = conn.wire
        return ConnectionView(
            key=conn,
            host=conn.address[0],
            connected_at=conn.connected_at,
            established=wire.established,
            stalled=self._stalled(conn, now),
            exchanging=conn.down_meter.rate(now) > 0 or conn.up_meter.rate(now) > 0,
            wanted=wire.peer_interested or wire.am_interested,
        )

    def _stalled(self, conn: Connection, now: float) -> bool:
        """A write to ``conn`` has been blocked for ``stall_seconds``: it doesn't read."""
        since = conn.sending_since
        return since is not None and now - since > self.settings.stall_seconds

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
        await self._run_connection(self._new_connection(stream, address, True))

    def _new_connection(
        self, stream: RawStream, address: tuple[str, int], outgoing: bool
    ) -> Connection:
        """The connection's state, counted at once (admission sees it before it runs)."""
        now = trio.current_time()
        wire = PeerWire(
            self.peer_id,
            self.shape,
            fast=self.settings.fast_extension,
            extensions=self.settings.extension_protocol,
            expected_peer_id=self._peer_ids.get(address) if outgoing else None,
        )
        conn = Connection(
            stream,
            wire,
            address,
            outgoing=outgoing,
            now=now,
            upload_rate=self.settings.connection_upload_rate,
            download_rate=self.settings.connection_download_rate,
        )
        self._connections.add(conn)
        return conn

    async def _run_connection(self, conn: Connection) -> None:
        stream, wire, address = conn.stream, conn.wire, conn.address
        try:
            if conn.outgoing:
                conn.send(wire.handshake(self.shape.info_hash))
            async with trio.open_nursery() as nursery:
                conn.nursery = nursery
                nursery.start_soon(conn.writer)
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
            if not wire.established:
                self.unfinished_handshakes += 1  # connection churn, scans, timeouts
            self._forget(conn)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _forget(self, conn: Connection) -> None:
        conn.closing = True
        conn.wire.close()
        self._connections.discard(conn)
        peer_id = conn.wire.remote_peer_id
        key = (conn.address[0], peer_id or b"")
        if peer_id is not None and self._by_peer_id.get(key) is conn:
            del self._by_peer_id[key]
        if conn.listen_address is not None:
            self._known[conn.listen_address] = trio.current_time() + self.settings.retry_seconds
        self.picker.remove_peer(conn)
        conn.upload_wakeup.set()
        conn.drained.set()
        self._tick_wakeup.set()

    def _close(self, conn: Connection) -> None:
        """Drop ``conn`` from our side (ban, duplicate, both seeds)."""
        if conn.nursery is not None:
            conn.nursery.cancel_scope.cancel()
        conn.closing = True

    async def _reader(self, conn: Connection) -> None:
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

    def _watchdog(self, conn: Connection, now: float) -> None:
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
            if self.bans.is_banned(address[0]):
                continue
            if own is not None and address == own:
                continue
            claimed = self._peer_ids.get(address)
            if claimed is not None and (address[0], claimed) in self._by_peer_id:
                continue
            self._known[address] = now + settings.retry_seconds
            self._connecting.add(address)
            room -= 1
            self._nursery.start_soon(self._connect, address)
