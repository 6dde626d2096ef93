"""Sans-IO BitTorrent peer wire protocol (BEP 3 with the BEP 6 fast extension).

How it works: a :class:`PeerWire` is one side of one connection. Feed it the
bytes read from the socket with :meth:`PeerWire.receive_data` (``b""`` means
the peer closed) and it returns the events (``seedcast.peer.messages``) found
so far; incomplete input stays buffered. Turn an event into bytes to write
with :meth:`PeerWire.send`. Nothing here touches sockets, clocks or trio.

The wire keeps the state BEP 3 makes both sides agree on, so the shell can't
get it wrong: the handshake (info hash must name a torrent we serve and, on
an outgoing connection, the one we asked for; a peer id equal to ours is a
connection to ourselves; an expected peer id from the tracker must match),
the four choke/interest flags, the requests we sent (a piece we never asked
for is a protocol violation; a late piece for a cancelled request is not),
and the requests the peer sent (we only send pieces it asked for; choking it
rejects or discards them as BEP 6 / BEP 3 say).

Anything the remote side does wrong raises :class:`RemoteProtocolError` with
a short ``reason`` (for metrics); after that the wire is dead and raises the
same error again. Misuse by our own code raises :class:`LocalProtocolError`.

The rules about which message may come when live in ``_RECEIVE_RULES`` and
``_first_message_only`` below, in one place.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.peer.messages import (
    BLOCK_SIZE,
    HANDSHAKE_LENGTH,
    MAX_MESSAGE_LENGTH,
    PROTOCOL_NAME,
    AllowedFast,
    Bitfield,
    BlockRef,
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
    MessageId,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    RequestsDropped,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
)

__all__ = ["PeerWire", "TorrentShape", "WirePhase"]

_HEADER = struct.Struct(">IB")
_U32 = struct.Struct(">I")
_THREE_U32 = struct.Struct(">III")
_PIECE_HEADER = struct.Struct(">IBII")
_KEEP_ALIVE = b"\x00\x00\x00\x00"
_HAVE_HEADER = _HEADER.pack(5, MessageId.HAVE)
_HAVE_ID = int(MessageId.HAVE)
_COMPACT_AT = 256 * 1024

MAX_REMOTE_REQUESTS = 2048
"""Requests a peer may have outstanding with us; more is abuse."""
_MAX_CANCELLED = 4096


@dataclass(frozen=True, slots=True)
class TorrentShape:
    """What the wire needs to know about a torrent to check indices and ranges."""

    info_hash: bytes
    piece_length: int
    total_length: int

    num_pieces: int = field(init=False)

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20:
            raise ValueError("info_hash must be 20 bytes")
        if self.piece_length <= 0 or self.total_length <= 0:
            raise ValueError("piece_length and total_length must be positive")
        pieces = (self.total_length + self.piece_length - 1) // self.piece_length
        object.__setattr__(self, "num_pieces", pieces)

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range 0..{self.num_pieces - 1}")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def block_in_range(self, block: BlockRef) -> bool:
        return block.index < self.num_pieces and block.begin + block.length <= self.piece_size(
            block.index
        )


class WirePhase(Enum):
    HANDSHAKE = auto()
    """Nothing exchanged yet in this direction."""
    FIRST_MESSAGE = auto()
    """Handshake done; the next message may be a bitfield / have-all / have-none."""
    OPEN = auto()
    CLOSED = auto()
    ERROR = auto()


# Which message ids may arrive, and whether they need the fast extension.
# (Only ids listed here are parsed; others become UnknownMessage and are skipped.)
_FAST_ONLY = frozenset(
    {
        MessageId.SUGGEST_PIECE,
        MessageId.HAVE_ALL,
        MessageId.HAVE_NONE,
        MessageId.REJECT_REQUEST,
        MessageId.ALLOWED_FAST,
    }
)
_first_message_only = frozenset({MessageId.BITFIELD, MessageId.HAVE_ALL, MessageId.HAVE_NONE})
# Fixed payload lengths (id byte excluded); None = variable.
_RECEIVE_RULES: dict[MessageId, int | None] = {
    MessageId.CHOKE: 0,
    MessageId.UNCHOKE: 0,
    MessageId.INTERESTED: 0,
    MessageId.NOT_INTERESTED: 0,
    MessageId.HAVE: 4,
    MessageId.BITFIELD: None,
    MessageId.REQUEST: 12,
    MessageId.PIECE: None,
    MessageId.CANCEL: 12,
    MessageId.PORT: 2,
    MessageId.SUGGEST_PIECE: 4,
    MessageId.HAVE_ALL: 0,
    MessageId.HAVE_NONE: 0,
    MessageId.REJECT_REQUEST: 12,
    MessageId.ALLOWED_FAST: 4,
    MessageId.EXTENDED: None,
}

_SIMPLE_BYTES = {
    Choke: _HEADER.pack(1, MessageId.CHOKE),
    Unchoke: _HEADER.pack(1, MessageId.UNCHOKE),
    Interested: _HEADER.pack(1, MessageId.INTERESTED),
    NotInterested: _HEADER.pack(1, MessageId.NOT_INTERESTED),
    HaveAll: _HEADER.pack(1, MessageId.HAVE_ALL),
    HaveNone: _HEADER.pack(1, MessageId.HAVE_NONE),
}


def _fail(message: str, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason=reason)


def _take(blocks: OrderedDict[BlockRef, None], block: BlockRef) -> bool:
    """Remove ``block``; True when it was there."""
    if block in blocks:
        del blocks[block]
        return True
    return False


class PeerWire:
    """One side of a peer connection.

    ``torrents`` is the torrent this connection is for (outgoing connections)
    or every torrent we serve, by info hash (a listener that learns the
    torrent from the incoming handshake). ``expected_peer_id``, when the
    tracker told us one, must match the remote handshake.
    """

    def __init__(
        self,
        peer_id: bytes,
        torrents: TorrentShape | Mapping[bytes, TorrentShape],
        *,
        fast: bool = True,
        extensions: bool = False,
        expected_peer_id: bytes | None = None,
        max_remote_requests: int = MAX_REMOTE_REQUESTS,
    ) -> None:
        if len(peer_id) != 20:
            raise ValueError("peer_id must be 20 bytes")
        self.peer_id = peer_id
        self._torrents: Mapping[bytes, TorrentShape] = (
            {torrents.info_hash: torrents} if isinstance(torrents, TorrentShape) else torrents
        )
        self._offer_fast = fast
        self._offer_extensions = extensions
        self._expected_peer_id = expected_peer_id
        self._max_remote_requests = max_remote_requests
        self.torrent: TorrentShape | None = None
        self.sent_handshake: Handshake | None = None
        self.received_handshake: Handshake | None = None
        self.receive_phase = WirePhase.HANDSHAKE
        self.send_phase = WirePhase.HANDSHAKE
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.our_requests: OrderedDict[BlockRef, None] = OrderedDict()
        """Requests we sent that are neither answered, rejected nor cancelled."""
        self.remote_requests: OrderedDict[BlockRef, None] = OrderedDict()
        """Requests the peer sent that we have neither served, rejected nor dropped."""
        self.allowed_fast: set[int] = set()
        """Pieces the peer lets us request while it chokes us (BEP 6)."""
        self.allowed_fast_out: set[int] = set()
        """Pieces we let the peer request while we choke it (the AllowedFast we sent)."""
        self._cancelled: OrderedDict[BlockRef, None] = OrderedDict()
        self._buffer = bytearray()
        self._position = 0
        self._error: RemoteProtocolError | None = None
        self._established = False
        self._fast = False
        self._extended = False

    # -- state -------------------------------------------------------------

    @property
    def fast(self) -> bool:
        """True when both handshakes carry the fast-extension bit."""
        return self._fast

    @property
    def extended(self) -> bool:
        """True when both handshakes carry the BEP 10 extension-protocol bit."""
        return self._extended

    @property
    def established(self) -> bool:
        return self._established

    def _after_handshake(self) -> None:
        sent, received = self.sent_handshake, self.received_handshake
        self._established = sent is not None and received is not None
        self._fast = (
            sent is not None
            and received is not None
            and sent.supports_fast
            and received.supports_fast
        )
        self._extended = (
            sent is not None
            and received is not None
            and sent.supports_extension_protocol
            and received.supports_extension_protocol
        )

    @property
    def remote_peer_id(self) -> bytes | None:
        return self.received_handshake.peer_id if self.received_handshake else None

    def handshake(self, info_hash: bytes) -> Handshake:
        """The handshake we send for ``info_hash`` (with the bits we support)."""
        return Handshake.with_extensions(
            info_hash, self.peer_id, fast=self._offer_fast, extended=self._offer_extensions
        )

    def buffered(self) -> int:
        """Bytes received but not yet a whole message."""
        return len(self._buffer) - self._position

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Events parsed from ``data`` plus anything buffered; ``b""`` = EOF.

        Raises RemoteProtocolError (sticky) when the peer breaks the protocol.
        """
        if self._error is not None:
            raise self._error
        if self.receive_phase is WirePhase.CLOSED:
            if data:
                raise LocalProtocolError("receive_data after the peer closed the connection")
            return []
        if not data:
            self.receive_phase = WirePhase.CLOSED
            return [ConnectionClosed()]
        self._buffer += data
        return self.pending_events()

    def pending_events(self) -> list[Event]:
        """Events from bytes already buffered.

        On an incoming connection parsing pauses after the peer's handshake
        until we have sent ours (what follows depends on what we offered, e.g.
        the fast extension); call this once our handshake is sent.
        """
        if self._error is not None:
            raise self._error
        if self.receive_phase is WirePhase.CLOSED:
            return []
        events: list[Event] = []
        try:
            self._parse(events)
        except RemoteProtocolError as error:
            self._error = error
            self.receive_phase = WirePhase.ERROR
            self._buffer.clear()
            self._position = 0
            raise
        return events

    def _parse(self, events: list[Event]) -> None:
        buffer = self._buffer
        while True:
            available = len(buffer) - self._position
            if self.receive_phase is WirePhase.HANDSHAKE:
                self._check_handshake_prefix(available)
                if available < HANDSHAKE_LENGTH:
                    break
                start = self._position + 1 + len(PROTOCOL_NAME)
                reserved = bytes(buffer[start : start + 8])
                info_hash = bytes(buffer[start + 8 : start + 28])
                peer_id = bytes(buffer[start + 28 : start + 48])
                self._position += HANDSHAKE_LENGTH
                events.append(self._receive_handshake(Handshake(info_hash, peer_id, reserved)))
                continue
            if self.sent_handshake is None:
                if available > MAX_MESSAGE_LENGTH + 4:
                    raise _fail("flood before our handshake was sent", "oversized")
                break
            if available < 4:
                break
            (length,) = _U32.unpack_from(buffer, self._position)
            if length > MAX_MESSAGE_LENGTH:
                raise _fail(f"message length {length} exceeds {MAX_MESSAGE_LENGTH}", "oversized")
            if available < 4 + length:
                break
            start = self._position + 4
            self._position = start + length
            if length == 0:
                events.append(KeepAlive())
                continue
            if length == 5 and buffer[start] == _HAVE_ID:
                # HAVE, by far the most frequent message: the rules, inline.
                (index,) = _U32.unpack_from(buffer, start + 1)
                if index >= self.torrent.num_pieces:  # type: ignore[union-attr]
                    raise _fail(f"HAVE for piece {index} out of range", "range")
                self.receive_phase = WirePhase.OPEN
                events.append(Have(index))
                continue
            event = self._receive_message(MessageId(buffer[start]), start + 1, length - 1)
            if event is not None:
                events.append(event)
                if isinstance(event, Choke) and not self.fast and self.our_requests:
                    dropped = tuple(self.our_requests)
                    self.our_requests.clear()
                    events.append(RequestsDropped(dropped))
        if self._position >= _COMPACT_AT or self._position == len(buffer):
            del buffer[: self._position]
            self._position = 0

    def _check_handshake_prefix(self, available: int) -> None:
        # Reject garbage (an HTTP request, an encrypted handshake) as soon as
        # the first bytes show it, instead of waiting for 68 bytes.
        buffer = self._buffer
        start = self._position
        if available >= 1 and buffer[start] != len(PROTOCOL_NAME):
            raise _fail("not a BitTorrent handshake", "handshake")
        prefix = bytes(buffer[start + 1 : start + 1 + min(available - 1, len(PROTOCOL_NAME))])
        if not PROTOCOL_NAME.startswith(prefix):
            raise _fail("not a BitTorrent handshake", "handshake")

    def _receive_handshake(self, handshake: Handshake) -> Handshake:
        if self.sent_handshake is not None:
            if handshake.info_hash != self.sent_handshake.info_hash:
                raise _fail("handshake names a different torrent", "info-hash")
        elif handshake.info_hash not in self._torrents:
            raise _fail("handshake names a torrent we don't serve", "info-hash")
        if handshake.peer_id == self.peer_id:
            raise _fail("connected to ourselves", "self-connection")
        if self._expected_peer_id is not None and handshake.peer_id != self._expected_peer_id:
            raise _fail("peer id differs from the one the tracker gave", "peer-id")
        self.torrent = self._torrents[handshake.info_hash]
        self.received_handshake = handshake
        self.receive_phase = WirePhase.FIRST_MESSAGE
        self._after_handshake()
        return handshake

    def _receive_message(self, message_id: MessageId, start: int, size: int) -> Event | None:
        torrent = self.torrent
        assert torrent is not None
        buffer = self._buffer
        expected = _RECEIVE_RULES.get(message_id, -1)
        if expected == -1:
            self.receive_phase = WirePhase.OPEN
            return UnknownMessage(int(message_id), bytes(buffer[start : start + size]))
        if expected is not None and size != expected:
            raise _fail(f"{message_id.name} with a {size}-byte payload", "length")
        if message_id in _FAST_ONLY and not self.fast:
            raise _fail(f"{message_id.name} without the fast extension", "fast")
        if message_id in _first_message_only and self.receive_phase is not WirePhase.FIRST_MESSAGE:
            raise _fail(f"{message_id.name} after other messages", "order")
        if message_id is MessageId.EXTENDED:
            # Any time, even before the bitfield (libtorrent sends its
            # extension handshake first): the phase stays as it is.
            if not self._extended:  # not negotiated: skipped like any unknown message
                self.receive_phase = WirePhase.OPEN
                return UnknownMessage(int(message_id), bytes(buffer[start : start + size]))
            if size < 1:
                raise _fail("extension message without an extension id", "length")
            return Extended(buffer[start], bytes(buffer[start + 1 : start + size]))
        self.receive_phase = WirePhase.OPEN

        if message_id is MessageId.PIECE:
            if size < 9:
                raise _fail("PIECE shorter than its header", "length")
            index, begin = struct.unpack_from(">II", buffer, start)
            block_length = size - 8
            if block_length > BLOCK_SIZE:
                raise _fail(f"block of {block_length} bytes", "length")
            block = BlockRef(index, begin, block_length)
            if not (_take(self.our_requests, block) or _take(self._cancelled, block)):
                raise _fail("piece we never requested", "unrequested")
            return Piece(index, begin, bytes(buffer[start + 8 : start + size]))
        if message_id is MessageId.CHOKE:
            self.peer_choking = True
            return Choke()
        if message_id is MessageId.UNCHOKE:
            self.peer_choking = False
            return Unchoke()
        if message_id is MessageId.INTERESTED:
            self.peer_interested = True
            return Interested()
        if message_id is MessageId.NOT_INTERESTED:
            self.peer_interested = False
            return NotInterested()
        if message_id in (MessageId.HAVE, MessageId.SUGGEST_PIECE, MessageId.ALLOWED_FAST):
            (index,) = _U32.unpack_from(buffer, start)
            if index >= torrent.num_pieces:
                raise _fail(f"{message_id.name} for piece {index} out of range", "range")
            if message_id is MessageId.HAVE:
                return Have(index)
            if message_id is MessageId.SUGGEST_PIECE:
                return SuggestPiece(index)
            self.allowed_fast.add(index)
            return AllowedFast(index)
        if message_id is MessageId.BITFIELD:
            bits = bytes(buffer[start : start + size])
            if size != (torrent.num_pieces + 7) // 8:
                raise _fail(f"bitfield of {size} bytes for {torrent.num_pieces} pieces", "bitfield")
            spare = (8 - torrent.num_pieces % 8) % 8
            if spare and bits[-1] & ((1 << spare) - 1):
                raise _fail("bitfield has spare bits set", "bitfield")
            return Bitfield(bits)
        if message_id is MessageId.HAVE_ALL:
            return HaveAll()
        if message_id is MessageId.HAVE_NONE:
            return HaveNone()
        if message_id is MessageId.PORT:
            (port,) = struct.unpack_from(">H", buffer, start)
            return Port(port)
        # REQUEST, CANCEL, REJECT_REQUEST: index, begin, length.
        index, begin, length = _THREE_U32.unpack_from(buffer, start)
        if not 0 < length <= BLOCK_SIZE:
            raise _fail(f"{message_id.name} for {length} bytes", "length")
        block = BlockRef(index, begin, length)
        if not torrent.block_in_range(block):
            raise _fail(f"{message_id.name} out of range", "range")
        if message_id is MessageId.REQUEST:
            if self.am_choking and not self.fast:
                return None  # BEP 3: requests while choked are discarded
            if block in self.remote_requests:
                return None
            if len(self.remote_requests) >= self._max_remote_requests:
                raise _fail("too many outstanding requests", "flood")
            self.remote_requests[block] = None
            return Request(block)
        if message_id is MessageId.CANCEL:
            if not self.fast:
                self.remote_requests.pop(block, None)
            # With the fast extension the request stays pending: BEP 6 wants
            # every request answered, so the shell sends the piece or a reject.
            return Cancel(block)
        # REJECT_REQUEST
        if not (_take(self.our_requests, block) or _take(self._cancelled, block)):
            raise _fail("reject for a block we never requested", "unrequested")
        return RejectRequest(block)

    # -- sending -----------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes that put ``event`` on the wire; updates the state.

        Raises LocalProtocolError when ``event`` breaks the protocol from our
        side (a request while choked, a piece nobody asked for, ...).
        """
        kind = type(event)
        if self.send_phase is WirePhase.OPEN:
            # Fast path for the messages sent by the thousand.
            if kind is Have:
                index = event.index  # type: ignore[union-attr]
                if index >= self.torrent.num_pieces:  # type: ignore[union-attr]
                    raise LocalProtocolError(f"piece {index} out of range")
                return _HAVE_HEADER + _U32.pack(index)
            if kind is Piece:
                return self._send_piece(event)  # type: ignore[arg-type]
        if isinstance(event, Handshake):
            return self._send_handshake(event)
        if not self.established:
            raise LocalProtocolError(f"{type(event).__name__} before both handshakes")
        if self.send_phase in (WirePhase.CLOSED, WirePhase.ERROR):
            raise LocalProtocolError("send on a closed wire")
        torrent = self.torrent
        assert torrent is not None
        first = self.send_phase is WirePhase.FIRST_MESSAGE
        if isinstance(event, Bitfield | HaveAll | HaveNone) and not first:
            raise LocalProtocolError(f"{type(event).__name__} must be the first message")
        fast_only = HaveAll | HaveNone | RejectRequest | AllowedFast | SuggestPiece
        if isinstance(event, fast_only) and not self.fast:
            raise LocalProtocolError(f"{type(event).__name__} needs the fast extension")
        if isinstance(event, KeepAlive):
            return _KEEP_ALIVE
        if isinstance(event, Extended):
            if not self._extended:
                raise LocalProtocolError("Extended needs the BEP 10 extension protocol")
            if 2 + len(event.payload) > MAX_MESSAGE_LENGTH:
                raise LocalProtocolError("extension message too large")
            body = bytes([MessageId.EXTENDED, event.extension_id]) + event.payload
            return _U32.pack(len(body)) + body
        self.send_phase = WirePhase.OPEN

        if isinstance(event, Piece):
            return self._send_piece(event)
        if isinstance(event, Choke):
            self.am_choking = True
            out = _SIMPLE_BYTES[Choke]
            allowed = self.allowed_fast_out
            dropped = [block for block in self.remote_requests if block.index not in allowed]
            if self.fast:
                rejects = [
                    self._block_message(MessageId.REJECT_REQUEST, block) for block in dropped
                ]
                out += b"".join(rejects)
            for block in dropped:  # requests for allowed-fast pieces stay (BEP 6)
                del self.remote_requests[block]
            return out
        if isinstance(event, Unchoke):
            self.am_choking = False
        elif isinstance(event, Interested):
            self.am_interested = True
        elif isinstance(event, NotInterested):
            self.am_interested = False
        simple = _SIMPLE_BYTES.get(type(event))
        if simple is not None:
            return simple
        if isinstance(event, Have | SuggestPiece | AllowedFast):
            if event.index >= torrent.num_pieces:
                raise LocalProtocolError(f"piece {event.index} out of range")
            message_id = {
                Have: MessageId.HAVE,
                SuggestPiece: MessageId.SUGGEST_PIECE,
                AllowedFast: MessageId.ALLOWED_FAST,
            }[type(event)]
            if message_id is MessageId.ALLOWED_FAST:
                self.allowed_fast_out.add(event.index)
            return _HEADER.pack(5, message_id) + _U32.pack(event.index)
        if isinstance(event, Bitfield):
            if len(event.bits) != (torrent.num_pieces + 7) // 8:
                raise LocalProtocolError("bitfield length does not match the torrent")
            return _HEADER.pack(1 + len(event.bits), MessageId.BITFIELD) + event.bits
        if isinstance(event, Request):
            block = event.block
            if not torrent.block_in_range(block):
                raise LocalProtocolError(f"request {block} out of range")
            if self.peer_choking and not (self.fast and block.index in self.allowed_fast):
                raise LocalProtocolError("request while the peer chokes us")
            if block in self.our_requests:
                raise LocalProtocolError(f"request {block} already outstanding")
            self._cancelled.pop(block, None)
            self.our_requests[block] = None
            return self._block_message(MessageId.REQUEST, block)
        if isinstance(event, Cancel):
            block = event.block
            if not _take(self.our_requests, block):
                return b""  # already answered: nothing to cancel
            self._cancelled[block] = None
            if len(self._cancelled) > _MAX_CANCELLED:
                self._cancelled.popitem(last=False)
            return self._block_message(MessageId.CANCEL, block)
        if isinstance(event, RejectRequest):
            if not _take(self.remote_requests, event.block):
                raise LocalProtocolError(f"reject of {event.block}, which was not requested")
            return self._block_message(MessageId.REJECT_REQUEST, event.block)
        if isinstance(event, Port):
            return _HEADER.pack(3, MessageId.PORT) + struct.pack(">H", event.port)
        if isinstance(event, UnknownMessage):
            return _HEADER.pack(1 + len(event.payload), event.message_id) + event.payload
        raise LocalProtocolError(f"cannot send {type(event).__name__}")

    def send_haves(self, indices: Sequence[int]) -> bytes:
        """Several HAVE messages at once (what ``send(Have(i))`` gives, for each)."""
        if self.send_phase is not WirePhase.OPEN:
            return b"".join(self.send(Have(index)) for index in indices)
        limit = self.torrent.num_pieces  # type: ignore[union-attr]
        arguments: list[int] = []
        for index in indices:
            if not 0 <= index < limit:
                raise LocalProtocolError(f"piece {index} out of range")
            arguments += (5, MessageId.HAVE, index)
        return struct.pack(">" + "IBI" * len(indices), *arguments)

    def _send_piece(self, piece: Piece) -> bytes:
        block = piece.block
        if not _take(self.remote_requests, block):
            raise LocalProtocolError(f"piece {block} was not requested (or was cancelled)")
        header = _PIECE_HEADER.pack(9 + len(piece.data), MessageId.PIECE, piece.index, piece.begin)
        return header + piece.data

    def _send_handshake(self, handshake: Handshake) -> bytes:
        if self.sent_handshake is not None:
            raise LocalProtocolError("handshake already sent")
        if handshake.info_hash not in self._torrents:
            raise LocalProtocolError("handshake for a torrent this wire was not given")
        if self.received_handshake and handshake.info_hash != self.received_handshake.info_hash:
            raise LocalProtocolError("handshake answers with a different info hash")
        self.torrent = self._torrents[handshake.info_hash]
        self.sent_handshake = handshake
        self.send_phase = WirePhase.FIRST_MESSAGE
        self._after_handshake()
        return (
            bytes([len(PROTOCOL_NAME)])
            + PROTOCOL_NAME
            + handshake.reserved
            + handshake.info_hash
            + handshake.peer_id
        )

    @staticmethod
    def _block_message(message_id: MessageId, block: BlockRef) -> bytes:
        return _HEADER.pack(13, message_id) + _THREE_U32.pack(
            block.index, block.begin, block.length
        )

    def close(self) -> None:
        """Mark the wire closed from our side; later sends are errors."""
        self.send_phase = WirePhase.CLOSED
