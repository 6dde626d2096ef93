"""Tracker announces from the peer's side (BEP 3, BEP 23 compact peers): sans-IO.

How it works: :class:`AnnounceRequest` builds the announce URL (binary
``info_hash`` and ``peer_id`` percent-encoded byte by byte, ``compact=1``);
:func:`parse_announce_response` reads the tracker's bencoded answer, with
either the compact peer string (6 bytes per IPv4 peer, 18 per IPv6 peer in
``peers6``) or the dictionary list, and returns an :class:`AnnounceResponse`.
A ``failure reason`` becomes :class:`TrackerFailure`; anything malformed,
oversized or too deeply nested is a :class:`RemoteProtocolError`, never a
crash. The trio side (HTTP, timers) lives in ``seedcast.peer.swarm``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_from_bytes, urlencode, urlsplit

import fastbencode
from seedcast.errors import RemoteProtocolError

__all__ = [
    "AnnounceEvent",
    "AnnounceRequest",
    "AnnounceResponse",
    "PeerAddress",
    "TrackerFailure",
    "parse_announce_response",
]

MAX_RESPONSE_SIZE = 1024 * 1024
MAX_PEERS = 2000
DEFAULT_INTERVAL = 1800.0
MIN_INTERVAL_FLOOR = 1.0


class AnnounceEvent(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PeerAddress:
    host: str
    port: int
    peer_id: bytes | None = None

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: AnnounceEvent | None = None
    numwant: int = 50
    compact: bool = True
    key: str | None = None

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20:
            raise ValueError("info_hash and peer_id must be 20 bytes")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"bad port {self.port}")

    def url(self, announce_url: str) -> str:
        """The GET URL for this announce on ``announce_url``."""
        parts = urlsplit(announce_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an HTTP tracker URL: {announce_url!r}")
        fields: list[tuple[str, str | int]] = [
            ("port", self.port),
            ("uploaded", self.uploaded),
            ("downloaded", self.downloaded),
            ("left", self.left),
            ("compact", 1 if self.compact else 0),
            ("numwant", self.numwant),
        ]
        if self.event is not None:
            fields.append(("event", self.event.value))
        if self.key:
            fields.append(("key", self.key))
        query = (
            f"info_hash={quote_from_bytes(self.info_hash, safe='')}"
            f"&peer_id={quote_from_bytes(self.peer_id, safe='')}&{urlencode(fields)}"
        )
        separator = "&" if "?" in announce_url else "?"
        return f"{announce_url}{separator}{query}"


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    interval: float
    min_interval: float | None
    peers: tuple[PeerAddress, ...]
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None


class TrackerFailure(RemoteProtocolError):
    """The tracker answered with a ``failure reason``."""

    def __init__(self, message: str) -> None:
        super().__init__(f"tracker refused: {message}", reason="tracker-failure")


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad tracker response: {message}", reason="tracker-response")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:500]
    return str(value)[:500]


def _number(value: object, key: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"{key!r} is not a non-negative integer")
    return value


def parse_announce_response(body: bytes) -> AnnounceResponse:
    """Parse an announce answer; raises TrackerFailure or RemoteProtocolError."""
    if len(body) > MAX_RESPONSE_SIZE:
        raise _bad(f"{len(body)} bytes (limit {MAX_RESPONSE_SIZE})")
    try:
        root: Any = fastbencode.bdecode(body)  # type: ignore[attr-defined]
    except (ValueError, TypeError, RecursionError, KeyError, IndexError) as error:
        raise _bad(f"not bencode ({error})") from None
    except Exception as error:  # the library's error types vary; all mean bad input
        raise _bad(f"not bencode ({type(error).__name__})") from None
    if not isinstance(root, dict):
        raise _bad("not a dictionary")
    if b"failure reason" in root:
        raise TrackerFailure(_text(root[b"failure reason"]))
    interval = _number(root.get(b"interval"), "interval")
    min_interval = _number(root.get(b"min interval"), "min interval")
    peers: list[PeerAddress] = []
    raw = root.get(b"peers", b"")
    if isinstance(raw, bytes):
        if len(raw) % 6:
            raise _bad("compact peers length is not a multiple of 6")
        for start in range(0, min(len(raw), 6 * MAX_PEERS), 6):
            host = str(ipaddress.IPv4Address(raw[start : start + 4]))
            port = int.from_bytes(raw[start + 4 : start + 6], "big")
            if port:
                peers.append(PeerAddress(host, port))
    elif isinstance(raw, list):
        for item in raw[:MAX_PEERS]:
            if not isinstance(item, dict):
                raise _bad("peer entry is not a dictionary")
            peers.append(_dict_peer(item))
    else:
        raise _bad("'peers' is neither a string nor a list")
    raw6 = root.get(b"peers6", b"")
    if isinstance(raw6, bytes) and raw6:
        if len(raw6) % 18:
            raise _bad("peers6 length is not a multiple of 18")
        for start in range(0, min(len(raw6), 18 * MAX_PEERS), 18):
            host = str(ipaddress.IPv6Address(raw6[start : start + 16]))
            port = int.from_bytes(raw6[start + 16 : start + 18], "big")
            if port:
                peers.append(PeerAddress(host, port))
    warning = root.get(b"warning message")
    return AnnounceResponse(
        interval=float(interval) if interval else DEFAULT_INTERVAL,
        min_interval=float(max(min_interval, MIN_INTERVAL_FLOOR)) if min_interval else None,
        peers=tuple(peers),
        complete=_number(root.get(b"complete"), "complete"),
        incomplete=_number(root.get(b"incomplete"), "incomplete"),
        warning=_text(warning) if warning is not None else None,
    )


def _dict_peer(item: dict[bytes, Any]) -> PeerAddress:
    ip = item.get(b"ip")
    port = item.get(b"port")
    if not isinstance(ip, bytes) or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise _bad("peer entry needs 'ip' and a valid 'port'")
    try:
        host = str(ipaddress.ip_address(ip.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise _bad("peer 'ip' is not an IP address") from None
    peer_id = item.get(b"peer id")
    if peer_id is not None and (not isinstance(peer_id, bytes) or len(peer_id) != 20):
        peer_id = None
    return PeerAddress(host, port, peer_id)
