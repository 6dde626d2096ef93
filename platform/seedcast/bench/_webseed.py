"""An HTTP piece source for a swarm: what the swarm can't give, fetched from a CDN edge.

How it works. :func:`choose_piece` (pure) picks the next piece to fetch over
HTTP: among the pieces we lack and aren't already fetching, the one fewest
connected peers have (availability 0 first: nobody around us can send it),
ties broken by this source's own random order so that viewers behind one edge
inject different pieces into the swarm. :class:`WebSeed` is the trio shell:
one persistent connection to its edge, one piece at a time: a range request
for each file span of the piece (BEP 47 padding is zeros, never fetched),
every received chunk charged to the swarm's download bucket (the viewer's
ingress cap covers the CDN too), the whole piece verified against the
torrent's SHA-1 by :meth:`Swarm.add_verified_piece`, which stores it and
announces it (HAVE) to the swarm, so the viewers seed each other what came
from the edge. A piece the swarm finished first is counted as wasted bytes.
A piece that fails verification is counted and retried later; the edge
failing (refused, timeout, bad status) backs off and retries: the swarm
goes on meanwhile.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio
from seedcast.errors import ProtocolError, TransportError
from seedcast.http11 import HttpClient
from seedcast.ratelimit import consume_all

__all__ = ["WebSeed", "WebSeedStatistics", "choose_piece"]

log = logging.getLogger("seedcast.bench")

_RETRY_SECONDS = 0.5


def choose_piece(
    have: bytes,
    availability: Sequence[int],
    busy: set[int] | frozenset[int],
    order: Sequence[int],
) -> int | None:
    """The piece to fetch next, or None when nothing is missing and free.

    ``have[i]`` is 1 for pieces we have; ``order`` is this source's random
    permutation of the piece indices (the tie-break).
    """
    best: int | None = None
    best_availability = 1 << 30
    for index in order:
        if have[index] or index in busy:
            continue
        count = availability[index]
        if count < best_availability:
            best, best_availability = index, count
            if count == 0:
                break
    return best


@dataclass(frozen=True, slots=True)
class WebSeedStatistics:
    bytes_received: int
    pieces_added: int
    bytes_wasted: int
    """Received for pieces the swarm completed first."""
    hash_failures: int
    errors: int


class WebSeed:
    """Feeds ``swarm`` pieces fetched from ``base_url`` (an edge); see the module docstring."""

    def __init__(
        self,
        swarm: Any,
        base_url: str,
        *,
        rng: random.Random,
        local_address: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.swarm = swarm
        self.base_url = base_url.rstrip("/")
        self.local_address = local_address
        self.timeout = timeout
        metainfo = swarm.metainfo
        self._order = list(range(metainfo.piece_count))
        rng.shuffle(self._order)
        self._busy: set[int] = set()
        self.bytes_received = 0
        self.pieces_added = 0
        self.bytes_wasted = 0
        self.hash_failures = 0
        self.errors = 0

    def statistics(self) -> WebSeedStatistics:
        return WebSeedStatistics(
            self.bytes_received,
            self.pieces_added,
            self.bytes_wasted,
            self.hash_failures,
            self.errors,
        )

    def _url(self, path: tuple[str, ...]) -> str:
        from urllib.parse import quote

        metainfo = self.swarm.metainfo
        parts = (metainfo.name,) if metainfo.single_file else (metainfo.name, *path)
        return self.base_url + "/" + "/".join(quote(part) for part in parts)

    async def run(self) -> None:
        """Fetch pieces until the swarm is complete (or this task is cancelled)."""

        swarm = self.swarm
        picker = swarm.picker
        client = HttpClient(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            max_connections_per_host=1,
            local_address=self.local_address,
        )
        try:
            while not swarm.complete:
                availability = [picker.availability(i) for i in range(picker.num_pieces)]
                index = choose_piece(picker.have_flags(), availability, self._busy, self._order)
                if index is None:
                    return
                self._busy.add(index)
                try:
                    data = await self._fetch_piece(client, index)
                except (TransportError, ProtocolError, OSError) as error:
                    self.errors += 1
                    log.debug("web seed: piece %d from %s failed: %s", index, self.base_url, error)
                    await trio.sleep(_RETRY_SECONDS)
                    continue
                finally:
                    self._busy.discard(index)
                if picker.has(index):
                    self.bytes_wasted += len(data)
                elif swarm.add_verified_piece(index, data, source="edge"):
                    self.pieces_added += 1
                else:
                    self.hash_failures += 1
                    await trio.sleep(_RETRY_SECONDS)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _fetch_piece(self, client: Any, index: int) -> bytes:
        swarm = self.swarm
        piece = bytearray()
        for entry, offset, length in swarm.metainfo.piece_spans(index):
            if entry.padding:
                piece += bytes(length)
                continue
            end = offset + length - 1
            async with client.stream(
                "GET", self._url(entry.path), headers=[("Range", f"bytes={offset}-{end}")]
            ) as response:
                if response.status != 206:
                    raise TransportError(f"edge answered {response.status} to a range request")
                received = 0
                async for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > length:
                        raise TransportError("edge sent more than the range asked for")
                    self.bytes_received += len(chunk)
                    if swarm.download_bucket is not None:
                        await consume_all((swarm.download_bucket,), len(chunk))
                    piece += chunk
                if received != length:
                    raise TransportError("edge sent less than the range asked for")
        return bytes(piece)
