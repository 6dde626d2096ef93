"""Events of the BitTorrent peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10 framing).

Each message on the wire is one small frozen dataclass, validated on
construction (indices fit in 32 bits, hashes are 20 bytes, blocks are at most
16 KiB). :class:`seedcast.peer.wire.PeerWire` turns bytes into these events
and these events into bytes; nothing here does I/O.

Message ids are an :class:`IntEnum` that tolerates ids it does not know:
``MessageId(42)`` is a pseudo-member ``UNKNOWN_42`` rather than a ValueError,
so a newer client's messages are skipped, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from seedcast.units import KiB

BLOCK_SIZE = 16 * KiB
"""The request size every client agrees on (BEP 3)."""

MAX_MESSAGE_LENGTH = 1024 * KiB + BLOCK_SIZE
"""Length prefixes above this are hostile: no legitimate message is larger."""

PROTOCOL_NAME = b"BitTorrent protocol"
HANDSHAKE_LENGTH = 1 + len(PROTOCOL_NAME) + 8 + 20 + 20

# Reserved handshake bits (byte index, mask).
FAST_EXTENSION_BIT = (7, 0x04)
EXTENSION_PROTOCOL_BIT = (5, 0x10)
DHT_BIT = (7, 0x01)

_U32 = 0xFFFFFFFF


class MessageId(IntEnum):
    """Message ids of BEP 3, BEP 6 and BEP 10 (EXTENDED), plus PORT, which we only skip."""

    CHOKE = 0
    UNCHOKE = 1
    INTERESTED = 2
    NOT_INTERESTED = 3
    HAVE = 4
    BITFIELD = 5
    REQUEST = 6
    PIECE = 7
    CANCEL = 8
    PORT = 9
    SUGGEST_PIECE = 0x0D
    HAVE_ALL = 0x0E
    HAVE_NONE = 0x0F
    REJECT_REQUEST = 0x10
    ALLOWED_FAST = 0x11
    EXTENDED = 20

    @classmethod
    def _missing_(cls, value: object) -> MessageId | None:
        # Unknown ids become pseudo-members instead of raising: the framer
        # reports them as UnknownMessage and the shell ignores them.
        if isinstance(value, int) and 0 <= value <= 255:
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None

    @property
    def known(self) -> bool:
        return not self.name.startswith("UNKNOWN_")


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} must fit in 32 bits, got {value}")


@dataclass(frozen=True, slots=True)
class Handshake:
    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20:
            raise ValueError("info_hash must be 20 bytes")
        if len(self.peer_id) != 20:
            raise ValueError("peer_id must be 20 bytes")
        if len(self.reserved) != 8:
            raise ValueError("reserved must be 8 bytes")

    @classmethod
    def with_extensions(
        cls, info_hash: bytes, peer_id: bytes, *, fast: bool = True, extended: bool = False
    ) -> Handshake:
        reserved = bytearray(8)
        for wanted, (byte, mask) in (
            (fast, FAST_EXTENSION_BIT),
            (extended, EXTENSION_PROTOCOL_BIT),
        ):
            if wanted:
                reserved[byte] |= mask
        return cls(info_hash, peer_id, bytes(reserved))

    @property
    def supports_fast(self) -> bool:
        byte, mask = FAST_EXTENSION_BIT
        return bool(self.reserved[byte] & mask)

    @property
    def supports_extension_protocol(self) -> bool:
        """BEP 10."""
        byte, mask = EXTENSION_PROTOCOL_BIT
        return bool(self.reserved[byte] & mask)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    pass


@dataclass(frozen=True, slots=True)
class Choke:
    pass


@dataclass(frozen=True, slots=True)
class Unchoke:
    pass


@dataclass(frozen=True, slots=True)
class Interested:
    pass


@dataclass(frozen=True, slots=True)
class NotInterested:
    pass


@dataclass(frozen=True, slots=True)
class Have:
    index: int

    def __post_init__(self) -> None:
        _check_u32("index", self.index)


@dataclass(frozen=True, slots=True)
class Bitfield:
    """The pieces a peer has, one bit per piece, high bit of byte 0 = piece 0."""

    bits: bytes

    @classmethod
    def from_indices(cls, indices: object, num_pieces: int) -> Bitfield:
        field = bytearray((num_pieces + 7) // 8)
        for index in indices:  # type: ignore[attr-defined]
            field[index >> 3] |= 0x80 >> (index & 7)
        return cls(bytes(field))

    @classmethod
    def from_flags(cls, flags: bytes | bytearray) -> Bitfield:
        """From one byte per piece (non-zero = have)."""
        field = bytearray((len(flags) + 7) // 8)
        for index, flag in enumerate(flags):
            if flag:
                field[index >> 3] |= 0x80 >> (index & 7)
        return cls(bytes(field))

    def has(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (0x80 >> (index & 7)))

    def indices(self) -> list[int]:
        result = []
        for byte_index, byte in enumerate(self.bits):
            if byte:
                base = byte_index << 3
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        result.append(base + bit)
        return result


@dataclass(frozen=True, slots=True)
class BlockRef:
    """What a request, cancel or reject names: ``length`` bytes at ``begin`` of a piece."""

    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_u32("index", self.index)
        _check_u32("begin", self.begin)
        if not 0 < self.length <= BLOCK_SIZE:
            raise ValueError(f"block length must be 1..{BLOCK_SIZE}, got {self.length}")


@dataclass(frozen=True, slots=True)
class Request:
    block: BlockRef


@dataclass(frozen=True, slots=True)
class Cancel:
    block: BlockRef


@dataclass(frozen=True, slots=True)
class RejectRequest:
    block: BlockRef


@dataclass(frozen=True, slots=True)
class Piece:
    index: int
    begin: int
    data: bytes

    def __post_init__(self) -> None:
        _check_u32("index", self.index)
        _check_u32("begin", self.begin)
        if not 0 < len(self.data) <= BLOCK_SIZE:
            raise ValueError(f"block data must be 1..{BLOCK_SIZE} bytes, got {len(self.data)}")

    @property
    def block(self) -> BlockRef:
        return BlockRef(self.index, self.begin, len(self.data))


@dataclass(frozen=True, slots=True)
class Port:
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port must be 0..65535, got {self.port}")


@dataclass(frozen=True, slots=True)
class SuggestPiece:
    index: int

    def __post_init__(self) -> None:
        _check_u32("index", self.index)


@dataclass(frozen=True, slots=True)
class HaveAll:
    pass


@dataclass(frozen=True, slots=True)
class HaveNone:
    pass


@dataclass(frozen=True, slots=True)
class AllowedFast:
    index: int

    def __post_init__(self) -> None:
        _check_u32("index", self.index)


@dataclass(frozen=True, slots=True)
class Extended:
    """A BEP 10 message: ``extension_id`` 0 is the extension handshake, others
    are the ids the receiver assigned in its handshake (``seedcast.peer.extensions``)."""

    extension_id: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.extension_id <= 255:
            raise ValueError("extension_id must be a byte")


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message whose id we don't speak (extension protocol, future BEPs): skipped."""

    message_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class RequestsDropped:
    """Not a message: the peer choked us without the fast extension, so BEP 3
    says every request we had outstanding with it is discarded."""

    blocks: tuple[BlockRef, ...]


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Not a message: the peer closed its side (``receive_data(b"")``)."""


Event = (
    Handshake
    | KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Cancel
    | RejectRequest
    | Piece
    | Port
    | SuggestPiece
    | HaveAll
    | HaveNone
    | AllowedFast
    | Extended
    | UnknownMessage
    | RequestsDropped
    | ConnectionClosed
)
