"""The settings, statistics and events of a :class:`~seedcast.peer.swarm.Swarm`."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

__all__ = ["PEER_ID_PREFIX", "PieceCompleted", "SwarmSettings", "SwarmStatistics", "new_peer_id"]

PEER_ID_PREFIX = b"-SC0100-"


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
    max_connections_per_host: int = 8
    """Connections from one IP address at most (0 = no cap)."""
    eviction_grace: float = 10.0
    """When full, a connection younger than this is never evicted for a newcomer."""
    stall_seconds: float = 5.0
    """A write blocked this long means the peer doesn't read: it loses its unchoke slot."""
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
    seed_policy: str = "round-robin"
    """Whom a seed unchokes: "round-robin" (least served first) or "fastest-upload"."""
    unchoke_credit: int | None = 32 * 1024
    """Bytes a peer that gives nothing back may get from our regular slots while we
    download (None: no limit); past it, only optimistic unchokes serve it."""
    seed_quota: int = 256 * 1024
    """Round-robin seeding: bytes a peer gets beyond the least served waiting one
    before its slot rotates to that one."""
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
    extension_protocol: bool = True
    """BEP 10, for BEP 11 peer exchange (ut_pex)."""
    pex_interval: float = 60.0
    """Seconds between ut_pex messages to a peer (BEP 11: at most one a minute)."""
    max_known_peers: int = 2000
    """Addresses remembered to connect to (from trackers and PEX); more are ignored."""


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
    refusals: dict[str, int] = field(default_factory=dict)
    """Incoming connections refused, by reason (banned, per_host, full)."""
    evictions: int = 0
    """Connections dropped to make room for a newcomer."""
    pex_learned: int = 0
    """Peer addresses first learned through PEX (BEP 11)."""
    unfinished_handshakes: int = 0
    """Connections that ended before both handshakes were done (churn, scans)."""
    seconds_to_complete: float | None = None
    complete: bool = False


@dataclass(frozen=True, slots=True)
class PieceCompleted:
    index: int
    source: str
    """"peer" (downloaded here), "disk" (found at start) or what add_verified_piece said."""
