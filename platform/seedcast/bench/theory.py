"""The file-distribution bounds that load tests are measured against.

For a file of F bytes, N clients, server upload u_s, client uploads u_i and
the slowest client download d_min (all bytes per second):

    client-server:  D_cs  >= max(N*F/u_s, F/d_min)
    peer-to-peer:   D_p2p >= max(F/u_s, F/d_min, N*F/(u_s + sum(u_i)))

A CDN is client-server with the edges' combined upload as the server's (the
origin feeds each edge once, which adds F/u_origin when edges start cold). A
hybrid swarm is peer-to-peer where the edges add their upload to the
server's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES = ("client-server", "cdn", "p2p", "hybrid")


@dataclass(frozen=True, slots=True)
class Scenario:
    file_size: int
    clients: int
    server_up: float
    peer_up: float
    peer_down: float
    edges: int = 0
    edge_up: float = 0.0
    """Upload of each edge; 0 = the same as the server's."""

    @property
    def edge_total_up(self) -> float:
        return self.edges * (self.edge_up or self.server_up)


def client_server_bound(
    file_size: int, clients: int, server_up: float, downloads: Sequence[float]
) -> float:
    return max(clients * file_size / server_up, file_size / min(downloads))


def p2p_bound(
    file_size: int, server_up: float, uploads: Sequence[float], downloads: Sequence[float]
) -> float:
    clients = len(uploads)
    return max(
        file_size / server_up,
        file_size / min(downloads),
        clients * file_size / (server_up + sum(uploads)),
    )


def bound(strategy: str, scenario: Scenario) -> float:
    """The lower bound on distribution time (seconds) for ``strategy``."""
    downloads = [scenario.peer_down] * scenario.clients
    uploads = [scenario.peer_up] * scenario.clients
    if strategy == "client-server":
        return client_server_bound(
            scenario.file_size, scenario.clients, scenario.server_up, downloads
        )
    if strategy == "cdn":
        if scenario.edges < 1:
            raise ValueError("the cdn strategy needs at least one edge")
        return client_server_bound(
            scenario.file_size, scenario.clients, scenario.edge_total_up, downloads
        )
    if strategy == "p2p":
        return p2p_bound(scenario.file_size, scenario.server_up, uploads, downloads)
    if strategy == "hybrid":
        return p2p_bound(
            scenario.file_size, scenario.server_up + scenario.edge_total_up, uploads, downloads
        )
    raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
