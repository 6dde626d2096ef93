"""Sans-IO BEP 10 extension handshake and BEP 11 peer exchange (ut_pex) payloads.

How it works. Both sides set the BEP 10 reserved bit; then each sends an
extension handshake (extension id 0): a bencoded dictionary whose ``m``
maps extension names to the message ids *it* wants to receive, plus its
listen port ``p``. We offer ``ut_pex`` only. A ut_pex message is a bencoded
dictionary with ``added`` (compact IPv4 peers, 6 bytes each), ``added.f``
(one flag byte per added peer) and ``dropped``; IPv6 keys are ignored.

Everything a peer sends is hostile until checked: payloads are decoded by
fastbencode, must be dictionaries of the expected types, and are bounded
(:data:`MAX_PAYLOAD`, at most :data:`MAX_PEX_PEERS` peers taken per
message). Anything else is a :class:`RemoteProtocolError` (``reason``
``extension``) for the connection, never a crash. :class:`PexState` keeps,
per connection, what we already told the peer, so each message carries only
the difference (BEP 11), at most :data:`MAX_PEX_PEERS` added at a time.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import fastbencode
from seedcast.errors import RemoteProtocolError

__all__ = [
    "MAX_PEX_PEERS",
    "UT_PEX",
    "UT_PEX_ID",
    "ExtensionHandshake",
    "PexMessage",
    "PexState",
    "encode_handshake",
    "encode_pex",
    "parse_handshake",
    "parse_pex",
]

UT_PEX = b"ut_pex"
UT_PEX_ID = 1
"""The id we ask peers to use for ut_pex messages to us."""
MAX_PAYLOAD = 64 * 1024
MAX_PEX_PEERS = 50
"""Peers added per PEX message, sent or taken (BEP 11 suggests 50)."""
_MAX_CLIENT_NAME = 64

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ExtensionHandshake:
    extensions: dict[bytes, int]
    """Extension name -> the id the peer wants to receive it as (0 = disabled)."""
    port: int | None = None
    """The peer's listen port, if it said."""
    client: str | None = None

    @property
    def ut_pex(self) -> int | None:
        """The id to send ut_pex messages with, or None when the peer doesn't take them."""
        value = self.extensions.get(UT_PEX, 0)
        return value or None


@dataclass(frozen=True, slots=True)
class PexMessage:
    added: tuple[Address, ...]
    dropped: tuple[Address, ...]


def _fail(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason="extension")


def _decode_dict(payload: bytes) -> dict[bytes, object]:
    if len(payload) > MAX_PAYLOAD:
        raise _fail(f"extension payload of {len(payload)} bytes")
    try:
        value = fastbencode.bdecode(payload)  # type: ignore[attr-defined]
    except Exception as error:  # fastbencode raises ValueError and friends on garbage
        raise _fail(f"extension payload is not bencoded: {error}") from None
    if not isinstance(value, dict):
        raise _fail("extension payload is not a dictionary")
    return value


def encode_handshake(port: int | None, client: str) -> bytes:
    """Our extension handshake: ut_pex, our listen port, our client name."""
    message: dict[bytes, object] = {b"m": {UT_PEX: UT_PEX_ID}, b"v": client.encode()}
    if port:
        message[b"p"] = port
    return bytes(fastbencode.bencode(message))  # type: ignore[attr-defined]


def parse_handshake(payload: bytes) -> ExtensionHandshake:
    message = _decode_dict(payload)
    names = message.get(b"m", {})
    if not isinstance(names, dict):
        raise _fail("extension handshake 'm' is not a dictionary")
    extensions: dict[bytes, int] = {}
    for name, number in names.items():
        if isinstance(name, bytes) and isinstance(number, int) and 0 <= number <= 255:
            extensions[name] = number
    port = message.get(b"p")
    if not (isinstance(port, int) and 0 < port < 65536):
        port = None
    client = message.get(b"v")
    name = (
        client[:_MAX_CLIENT_NAME].decode("utf-8", "replace") if isinstance(client, bytes) else None
    )
    return ExtensionHandshake(extensions, port, name)


def _compact(addresses: Iterable[Address]) -> bytes:
    """6 bytes per IPv4 peer; others are skipped (inet_aton: a profile showed
    ipaddress parsing as the main cost of PEX)."""
    parts = []
    for host, port in addresses:
        try:
            parts.append(socket.inet_aton(host) + struct.pack(">H", port))
        except OSError:
            continue
    return b"".join(parts)


def _peers(value: object, key: str) -> tuple[Address, ...]:
    if value is None:
        return ()
    if not isinstance(value, bytes) or len(value) % 6:
        raise _fail(f"ut_pex '{key}' is not compact IPv4 peers")
    peers = []
    for offset in range(0, min(len(value), 6 * MAX_PEX_PEERS), 6):
        host = str(ipaddress.IPv4Address(value[offset : offset + 4]))
        (port,) = struct.unpack_from(">H", value, offset + 4)
        if port:
            peers.append((host, port))
    return tuple(peers)


def encode_pex(added: Iterable[Address], dropped: Iterable[Address]) -> bytes:
    """A ut_pex message (IPv4 peers only; others are skipped)."""
    added_v4 = _compact(added)
    message = {
        b"added": added_v4,
        b"added.f": bytes(len(added_v4) // 6),
        b"dropped": _compact(dropped),
    }
    return bytes(fastbencode.bencode(message))  # type: ignore[attr-defined]


def parse_pex(payload: bytes) -> PexMessage:
    """The peers a ut_pex message adds and drops (at most MAX_PEX_PEERS of each)."""
    message = _decode_dict(payload)
    return PexMessage(
        _peers(message.get(b"added"), "added"), _peers(message.get(b"dropped"), "dropped")
    )


class PexState:
    """What one peer has been told (per connection), to send only differences."""

    __slots__ = ("_told",)

    def __init__(self) -> None:
        self._told: set[Address] = set()

    def update(self, current: Iterable[Address]) -> bytes | None:
        """The ut_pex payload to send for the peers we know now; None when nothing changed."""
        now = set(current)
        added = sorted(now - self._told)[:MAX_PEX_PEERS]
        dropped = sorted(self._told - now)[:MAX_PEX_PEERS]
        if not added and not dropped:
            return None
        self._told.difference_update(dropped)
        self._told.update(added)
        return encode_pex(added, dropped)
