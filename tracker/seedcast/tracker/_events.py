"""Requests, answers and statistics of the tracker core: small frozen dataclasses."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from seedcast.errors import RemoteProtocolError

INFO_HASH_LENGTH = 20
PEER_ID_LENGTH = 20


class AnnounceEvent(enum.IntEnum):
    """Announce events, numbered as on the UDP wire (BEP 15)."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3

    @classmethod
    def _missing_(cls, value: object) -> AnnounceEvent:
        # Unknown numbers (UDP) count as a regular announce instead of failing.
        return cls.NONE

    @property
    def label(self) -> str:
        return self.name.lower()


class Rejected(RemoteProtocolError):
    """An announce or scrape the tracker refuses; ``str()`` is the BEP 3 failure reason.

    ``reason`` is the metric label (``bad_info_hash``, ``not_allowed``, ...).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, status_hint=200, reason=reason)


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """One announce, from HTTP or UDP, after validation."""

    info_hash: bytes
    peer_id: bytes
    ip: str
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int | None = None
    """Bytes still missing; None when the client did not say (treated as a leecher)."""
    event: AnnounceEvent = AnnounceEvent.NONE
    numwant: int | None = None
    key: bytes = b""

    def __post_init__(self) -> None:
        if len(self.info_hash) != INFO_HASH_LENGTH or len(self.peer_id) != PEER_ID_LENGTH:
            raise ValueError("info_hash and peer_id are 20 bytes")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range")

    @property
    def is_seed(self) -> bool:
        return self.left == 0


@dataclass(frozen=True, slots=True)
class PeerAddress:
    peer_id: bytes
    ip: str
    port: int
    packed: bytes
    """Compact form: 4-byte IPv4 or 16-byte IPv6 address, then the port (BEP 23, BEP 7)."""

    @property
    def is_ipv6(self) -> bool:
        return len(self.packed) == 18


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    interval: int
    min_interval: int
    complete: int
    incomplete: int
    peers: tuple[PeerAddress, ...]
    warning: str = ""


@dataclass(frozen=True, slots=True)
class ScrapeEntry:
    info_hash: bytes
    complete: int
    downloaded: int
    incomplete: int


@dataclass(frozen=True, slots=True)
class SwarmStatistics:
    info_hash: bytes
    seeders: int
    leechers: int
    downloaded: int


@dataclass(frozen=True, slots=True)
class TrackerStatistics:
    torrents: int
    peers: int
    seeders: int
    announces: Mapping[str, int] = field(default_factory=dict)
    """Announces answered, by event label (none, started, completed, stopped)."""
    scrapes: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    """Refused requests by reason."""
    peers_not_stored: int = 0
    """Announces answered but not remembered because a memory bound was reached."""
    expired: int = 0
    peers_displaced: int = 0
    """Unverified (announced once) entries replaced by newcomers under the bounds."""
