"""UDP tracker protocol (BEP 15): one datagram in, at most one datagram out.

A client first ``connect``s and gets a connection id, then announces or scrapes with it. The id
is not stored anywhere: it is the first 8 bytes of HMAC-SHA256(secret, client ip, minute), so
it can't be forged without the process's random secret, costs no memory per client, and is
accepted for the minute it was made in and the two after (BEP 15 asks for two minutes). A
spoofed source address never learns a valid id, so it can't make the tracker send peer lists
to someone else. The id is bound to the address, not the port: proving one can receive at an
address is the point, and libtorrent shares one cached id among all sessions of a process.

Datagrams too short to carry a transaction id, or a connect without the protocol's magic
number, are dropped silently; every other problem is answered with an ``error`` action, which
is never larger than the request (no amplification). Announces and scrapes go through the same
:class:`~seedcast.tracker.swarms.Tracker` core as HTTP. Optional BEP 41 extensions after an
announce are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import struct
from enum import IntEnum

from ._events import AnnounceEvent, AnnounceRequest, Rejected
from .http_protocol import choose_ip
from .swarms import Tracker

PROTOCOL_ID = 0x41727101980
CONNECTION_ID_LIFETIME_WINDOWS = 3
WINDOW_SECONDS = 60.0
MAX_SCRAPE_HASHES = 74
MAX_ERROR_MESSAGE = 80

_HEADER = struct.Struct(">QII")  # connection id (or magic), action, transaction id
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_CONNECT_REPLY = struct.Struct(">IIQ")
_SCRAPE_ENTRY = struct.Struct(">III")
_ACTION_TID = struct.Struct(">II")


class Action(IntEnum):
    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


class UdpTracker:
    """BEP 15 on top of a :class:`Tracker`. ``secret`` should be 32 random bytes per process."""

    def __init__(self, tracker: Tracker, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the connection id secret needs at least 16 bytes")
        self.tracker = tracker
        self._secret = secret

    def connection_id(self, client: tuple[str, int], now: float) -> int:
        return self._connection_id(client, int(now // WINDOW_SECONDS))

    def _connection_id(self, client: tuple[str, int], window: int) -> int:
        message = f"{client[0]}|{window}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def _valid(self, connection_id: int, client: tuple[str, int], now: float) -> bool:
        window = int(now // WINDOW_SECONDS)
        return any(
            hmac.compare_digest(
                connection_id.to_bytes(8, "big"),
                self._connection_id(client, window - age).to_bytes(8, "big"),
            )
            for age in range(CONNECTION_ID_LIFETIME_WINDOWS)
        )

    def handle_datagram(
        self, data: bytes, client: tuple[str, int], now: float, rng: random.Random
    ) -> bytes | None:
        """The reply to one datagram from ``client``, or None to stay silent. Never raises."""
        if len(data) < _HEADER.size:
            self.tracker.note_error("udp_short_packet")
            return None
        connection_id, action, transaction_id = _HEADER.unpack_from(data)
        if action == Action.CONNECT:
            if connection_id != PROTOCOL_ID:
                self.tracker.note_error("udp_bad_protocol_id")
                return None
            return _CONNECT_REPLY.pack(
                Action.CONNECT, transaction_id, self.connection_id(client, now)
            )
        if action not in (Action.ANNOUNCE, Action.SCRAPE):
            return self._error(data, transaction_id, "unknown action", "udp_bad_action")
        if not self._valid(connection_id, client, now):
            return self._error(
                data, transaction_id, "connection id expired or invalid", "udp_bad_connection_id"
            )
        try:
            if action == Action.ANNOUNCE:
                return self._announce(data, client, transaction_id, now, rng)
            return self._scrape(data, transaction_id, now)
        except Rejected as rejection:
            if rejection.reason not in ("not_allowed", "tracker_full", "peer_id_conflict"):
                self.tracker.note_error(rejection.reason)
            return _error_packet(transaction_id, str(rejection), len(data))

    def _announce(
        self,
        data: bytes,
        client: tuple[str, int],
        transaction_id: int,
        now: float,
        rng: random.Random,
    ) -> bytes:
        if len(data) < _ANNOUNCE.size:
            raise Rejected("announce packet too short", reason="udp_short_packet")
        (
            _,
            _,
            _,
            info_hash,
            peer_id,
            downloaded,
            left,
            uploaded,
            event,
            ip_number,
            key,
            numwant,
            port,
        ) = _ANNOUNCE.unpack_from(data)
        if port == 0:
            raise Rejected("port must be in 1..65535", reason="bad_port")
        claimed = str(ipaddress.IPv4Address(ip_number)).encode() if ip_number else None
        ip = choose_ip(claimed, client[0], trust_ip_param=self.tracker.config.trust_ip_param)
        request = AnnounceRequest(
            info_hash=info_hash,
            peer_id=peer_id,
            ip=ip,
            port=port,
            uploaded=uploaded,
            downloaded=downloaded,
            left=left,
            event=AnnounceEvent(event),
            numwant=None if numwant < 0 else numwant,
            key=key.to_bytes(4, "big"),
        )
        result = self.tracker.announce(request, now, rng)
        # The transport's family decides which peers a client can use.
        ipv6 = ":" in ip
        peers = b"".join(peer.packed for peer in result.peers if peer.is_ipv6 == ipv6)
        head = _ANNOUNCE_REPLY.pack(
            Action.ANNOUNCE, transaction_id, result.interval, result.incomplete, result.complete
        )
        return head + peers

    def _scrape(self, data: bytes, transaction_id: int, now: float) -> bytes:
        body = data[_HEADER.size :]
        if not body or len(body) % 20 or len(body) // 20 > MAX_SCRAPE_HASHES:
            raise Rejected(
                f"scrape needs 1..{MAX_SCRAPE_HASHES} info hashes of 20 bytes",
                reason="bad_info_hash",
            )
        hashes = [body[offset : offset + 20] for offset in range(0, len(body), 20)]
        counts = {entry.info_hash: entry for entry in self.tracker.scrape(hashes, now)}
        parts = [_ACTION_TID.pack(Action.SCRAPE, transaction_id)]
        for info_hash in hashes:
            entry = counts.get(info_hash)
            if entry is None:  # outside the allowlist: zeros, in the asked order
                parts.append(_SCRAPE_ENTRY.pack(0, 0, 0))
            else:
                parts.append(_SCRAPE_ENTRY.pack(entry.complete, entry.downloaded, entry.incomplete))
        return b"".join(parts)

    def _error(self, data: bytes, transaction_id: int, message: str, reason: str) -> bytes:
        self.tracker.note_error(reason)
        return _error_packet(transaction_id, message, len(data))


def _error_packet(transaction_id: int, message: str, request_size: int) -> bytes:
    """An error reply, its message cut so the reply is never larger than the request."""
    room = max(0, min(MAX_ERROR_MESSAGE, request_size - _ACTION_TID.size))
    return _ACTION_TID.pack(Action.ERROR, transaction_id) + message.encode()[:room]
