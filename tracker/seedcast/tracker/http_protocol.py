"""HTTP tracker protocol (BEP 3, BEP 23, BEP 7, BEP 48): raw query in, bencoded body out.

``info_hash`` and ``peer_id`` are raw 20-byte values percent-encoded in the query string, so the
query is split and decoded with ``urllib.parse.unquote_to_bytes`` (never as text). Every
problem becomes a bencoded ``failure reason`` answered with HTTP 200 (what clients expect),
counted by reason. :func:`handle_announce` / :func:`handle_scrape` are the whole protocol: the
trio shell only passes the raw query, the client's address, ``now`` and a ``random.Random``.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import fastbencode

from ._events import (
    INFO_HASH_LENGTH,
    PEER_ID_LENGTH,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResult,
    Rejected,
    ScrapeEntry,
)
from .swarms import Tracker

MAX_QUERY_LENGTH = 8192
MAX_PARAMETERS = 64
MAX_SCRAPE_HASHES = 200
MAX_NUMBER = 2**63 - 1
_EVENTS = {
    b"": AnnounceEvent.NONE,
    b"started": AnnounceEvent.STARTED,
    b"completed": AnnounceEvent.COMPLETED,
    b"stopped": AnnounceEvent.STOPPED,
    b"paused": AnnounceEvent.NONE,  # BEP 21 partial seeds announce like anyone else
    b"empty": AnnounceEvent.NONE,
}


def _bencode(value: Any) -> bytes:
    return bytes(fastbencode.bencode(value))  # type: ignore[attr-defined]


def parse_query(query: str | bytes, *, limit: int = MAX_PARAMETERS) -> list[tuple[bytes, bytes]]:
    """``a=1&info_hash=%12...`` -> [(b"a", b"1"), (b"info_hash", b"\\x12...")], raw bytes.

    ``+`` means a space (form encoding). Raises Rejected when the query is too long or has
    too many parameters.
    """
    raw = query.encode("latin-1", "replace") if isinstance(query, str) else query
    if len(raw) > MAX_QUERY_LENGTH:
        raise Rejected(f"query longer than {MAX_QUERY_LENGTH} bytes", reason="bad_query")
    pairs: list[tuple[bytes, bytes]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        if len(pairs) >= limit:
            raise Rejected(f"more than {limit} query parameters", reason="bad_query")
        key, _, value = part.partition(b"=")
        pairs.append((_unquote(key), _unquote(value)))
    return pairs


def _unquote(raw: bytes) -> bytes:
    if b"%" not in raw and b"+" not in raw:
        return raw
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _first_values(pairs: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Each parameter's first value (later repeats are ignored, as most trackers do)."""
    values: dict[bytes, bytes] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


def _number(values: dict[bytes, bytes], name: bytes, *, default: int | None) -> int | None:
    raw = values.get(name)
    if raw is None or raw == b"":
        return default
    text = raw.decode("ascii", "replace")
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_NUMBER:
        raise Rejected(
            f"{name.decode()} must be a non-negative integer", reason=f"bad_{name.decode()}"
        )
    return int(text)


def parse_announce(
    query: str | bytes | list[tuple[bytes, bytes]],
    client: tuple[str, int],
    *,
    trust_ip_param: bool = False,
) -> AnnounceRequest:
    """Validate an announce query (raw, or already split by :func:`parse_query`).

    Raises Rejected with the failure reason.
    """
    pairs = query if isinstance(query, list) else parse_query(query)
    values = _first_values(pairs)
    info_hash = values.get(b"info_hash")
    if info_hash is None:
        raise Rejected("missing info_hash", reason="missing_info_hash")
    if len(info_hash) != INFO_HASH_LENGTH:
        raise Rejected(f"info_hash must be 20 bytes, got {len(info_hash)}", reason="bad_info_hash")
    peer_id = values.get(b"peer_id")
    if peer_id is None:
        raise Rejected("missing peer_id", reason="missing_peer_id")
    if len(peer_id) != PEER_ID_LENGTH:
        raise Rejected(f"peer_id must be 20 bytes, got {len(peer_id)}", reason="bad_peer_id")
    port_text = values.get(b"port")
    if port_text is None:
        raise Rejected("missing port", reason="bad_port")
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise Rejected("port must be an integer in 1..65535", reason="bad_port")
    event_text = values.get(b"event") or b""
    event = _EVENTS.get(event_text)
    if event is None:
        raise Rejected("event must be started, completed, stopped or empty", reason="bad_event")
    uploaded = _number(values, b"uploaded", default=0)
    downloaded = _number(values, b"downloaded", default=0)
    left = _number(values, b"left", default=None)
    numwant_raw = values.get(b"numwant")
    numwant: int | None = None
    if numwant_raw:
        try:
            numwant = max(0, int(numwant_raw.decode("ascii")[:12]))
        except (UnicodeDecodeError, ValueError):
            numwant = None  # a strange numwant is not worth refusing the announce for
    key = (values.get(b"key") or b"")[:64]
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        ip=choose_ip(values.get(b"ip"), client[0], trust_ip_param=trust_ip_param),
        port=int(port_text),
        uploaded=uploaded or 0,
        downloaded=downloaded or 0,
        left=left,
        event=event,
        numwant=numwant,
        key=key,
    )


def choose_ip(claimed: bytes | None, source: str, *, trust_ip_param: bool) -> str:
    """The address to list a peer under: the connection's, or its ``ip`` parameter when trusted.

    The parameter is honoured only when the config trusts it (``tracker.trust_ip_param``, for
    a tracker behind a known proxy) and it is an IP literal of the same family. A name,
    garbage, or an untrusted claim is ignored, so nobody can list, move or stop an entry under
    someone else's address (loopback sources get no exception: on one host every user can
    reach loopback).
    """
    source_address = _source_address(source)
    if source_address is None:
        raise Rejected("cannot tell your address", reason="bad_address")
    if claimed:
        try:
            address = ipaddress.ip_address(claimed.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return source_address.compressed
        if trust_ip_param and address.version == source_address.version:
            return address.compressed
    return source_address.compressed


@functools.lru_cache(maxsize=4096)
def _source_address(source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def encode_announce(
    result: AnnounceResult, *, compact: bool = True, no_peer_id: bool = False
) -> bytes:
    body: dict[bytes, Any] = {
        b"interval": result.interval,
        b"min interval": result.min_interval,
        b"complete": result.complete,
        b"incomplete": result.incomplete,
    }
    if compact:
        body[b"peers"] = b"".join(peer.packed for peer in result.peers if not peer.is_ipv6)
        ipv6 = b"".join(peer.packed for peer in result.peers if peer.is_ipv6)
        if ipv6:
            body[b"peers6"] = ipv6
    else:
        listed: list[dict[bytes, Any]] = []
        for peer in result.peers:
            entry: dict[bytes, Any] = {b"ip": peer.ip.encode(), b"port": peer.port}
            if not no_peer_id:
                entry[b"peer id"] = peer.peer_id
            listed.append(entry)
        body[b"peers"] = listed
    if result.warning:
        body[b"warning message"] = result.warning.encode()
    return _bencode(body)


def encode_failure(reason: str, *, retry_never: bool = False) -> bytes:
    body: dict[bytes, Any] = {b"failure reason": reason.encode()}
    if retry_never:
        body[b"retry in"] = b"never"  # BEP 31: don't keep asking about an unregistered torrent
    return _bencode(body)


def encode_scrape(entries: Iterable[ScrapeEntry], *, min_interval: int) -> bytes:
    files = {
        entry.info_hash: {
            b"complete": entry.complete,
            b"downloaded": entry.downloaded,
            b"incomplete": entry.incomplete,
        }
        for entry in entries
    }
    return _bencode({b"files": files, b"flags": {b"min_request_interval": min_interval}})


def _flag(pairs: list[tuple[bytes, bytes]], name: bytes, default: bool) -> bool:
    value = next((value for key, value in pairs if key == name), None)
    if value is None or value == b"":
        return default
    return value not in (b"0", b"false", b"no")


def handle_announce(
    tracker: Tracker,
    query: str | bytes,
    client: tuple[str, int],
    now: float,
    rng: random.Random,
) -> bytes:
    """The bencoded answer to ``GET /announce?<query>`` from ``client``. Never raises on input."""
    try:
        pairs = parse_query(query)
        request = parse_announce(pairs, client, trust_ip_param=tracker.config.trust_ip_param)
        result = tracker.announce(request, now, rng)
    except Rejected as rejection:
        if rejection.reason not in _COUNTED_BY_CORE:
            tracker.note_error(rejection.reason)
        return encode_failure(str(rejection), retry_never=rejection.reason == "not_allowed")
    return encode_announce(
        result,
        compact=_flag(pairs, b"compact", True),
        no_peer_id=_flag(pairs, b"no_peer_id", False),
    )


def handle_scrape(tracker: Tracker, query: str | bytes, now: float) -> bytes:
    """The bencoded answer to ``GET /scrape?info_hash=...&info_hash=...``. Never raises on input."""
    try:
        pairs = parse_query(query, limit=MAX_SCRAPE_HASHES)
        hashes = [value for key, value in pairs if key == b"info_hash"]
        for value in hashes:
            if len(value) != INFO_HASH_LENGTH:
                raise Rejected(
                    f"info_hash must be 20 bytes, got {len(value)}", reason="bad_info_hash"
                )
    except Rejected as rejection:
        tracker.note_error(rejection.reason)
        return encode_failure(str(rejection))
    entries = tracker.scrape(hashes, now)
    return encode_scrape(entries, min_interval=max(1, round(tracker.config.min_interval)))


# Reasons the core counts itself when it raises them.
_COUNTED_BY_CORE = frozenset({"not_allowed", "tracker_full", "peer_id_conflict"})
