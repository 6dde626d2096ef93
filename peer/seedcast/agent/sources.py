"""Where a viewer agent gets bytes besides peers: the CDN, reached through the Seedcast DNS.

:class:`PieceCutter` (sans-IO) turns the bytes of an HTTP response -- a range
of one file of the torrent -- into whole pieces: a piece is the file's bytes
from a piece boundary, and the file's last piece is padded with zeros up to
the piece size (BEP 47 padding files read as zeros), so each cut piece can be
checked against the torrent's SHA-1 as it completes.

:class:`CdnClient` (trio shell) sends requests to the CDN base URL
(``http://video.netcinema.test:8080`` by default): it resolves the host with
the stub resolver on every request (the resolver caches for the record's
TTL), connects from the viewer's address (the DNS steers by source address),
and keeps the original ``Host``. :meth:`CdnClient.forget` drops what the
resolver learnt, so after a failure the next request asks the DNS again and
its health checks can name another edge. Responses with ``X-Cache`` came
from an edge, others from the origin (the DNS answers with the origin when
every edge is down).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from seedcast.errors import RemoteProtocolError, SeedcastError, TransportError
from seedcast.http11 import ClientResponse, HttpClient
from seedcast.provenance import SERVED_BY, cdn_source

__all__ = [
    "CDN_ERRORS",
    "CdnClient",
    "CdnStatistics",
    "CdnUnavailable",
    "PieceCutter",
    "PieceSlot",
    "source_of",
]

log = logging.getLogger("seedcast.agent.server")


class CdnUnavailable(SeedcastError):
    """The CDN could not be asked (DNS failed, nothing answered, or it answered 5xx)."""

    def __init__(self, message: str, *, reason: str = "unreachable") -> None:
        super().__init__(message)
        self.reason = reason


CDN_ERRORS: tuple[type[BaseException], ...] = (
    TransportError,
    RemoteProtocolError,
    CdnUnavailable,
    OSError,
)
"""What a CDN exchange may raise (besides cancellation)."""


@dataclass(frozen=True, slots=True)
class PieceSlot:
    index: int
    file_bytes: int
    """Bytes of the file in this piece; the rest of the piece is zero padding."""
    size: int
    """Piece size (file bytes + padding)."""


class PieceCutter:
    """Cuts consecutive file bytes into the pieces ``slots`` (in order); see the module doc.

    ``skip`` bytes at the start of the stream are dropped first (a server that
    ignored our Range and sent the whole file). Bytes after the last slot are
    ignored; :attr:`done` says when every slot is cut.
    """

    def __init__(self, slots: Sequence[PieceSlot], *, skip: int = 0) -> None:
        if skip < 0:
            raise ValueError("skip must be >= 0")
        for slot in slots:
            if not 0 <= slot.file_bytes <= slot.size:
                raise ValueError(f"piece {slot.index}: {slot.file_bytes} file bytes > {slot.size}")
        self._slots = list(slots)
        self._position = 0
        self._skip = skip
        self._buffer = bytearray()
        self.received = 0

    @property
    def done(self) -> bool:
        return self._position >= len(self._slots)

    @property
    def pending(self) -> list[int]:
        return [slot.index for slot in self._slots[self._position :]]

    @property
    def expected_bytes(self) -> int:
        """File bytes still expected (after any skip)."""
        return sum(slot.file_bytes for slot in self._slots[self._position :]) - len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Take more response bytes; returns the pieces completed, ``(index, piece bytes)``."""
        view = memoryview(data)
        if self._skip:
            dropped = min(self._skip, len(view))
            self._skip -= dropped
            view = view[dropped:]
        self.received += len(view)
        completed: list[tuple[int, bytes]] = []
        while view and not self.done:
            slot = self._slots[self._position]
            take = min(len(view), slot.file_bytes - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == slot.file_bytes:
                completed.append(self._cut(slot))
        # A slot of zero file bytes (can't happen for real files) completes at once.
        while not self.done and self._slots[self._position].file_bytes == 0:
            completed.append(self._cut(self._slots[self._position]))
        return completed

    def _cut(self, slot: PieceSlot) -> tuple[int, bytes]:
        padding = slot.size - slot.file_bytes
        piece = bytes(self._buffer) + bytes(padding) if padding else bytes(self._buffer)
        self._buffer.clear()
        self._position += 1
        return slot.index, piece


def source_of(response: ClientResponse) -> str:
    """Which CDN tier answered: ``edge`` (it sets X-Cache) or ``origin``."""
    return cdn_source(response.headers).value


@dataclass(frozen=True, slots=True)
class CdnStatistics:
    requests: int
    failures: int
    resolutions: int
    last_address: str
    last_served_by: str


class AddressResolver(Protocol):
    """What the client needs of :class:`seedcast.resolver.StubResolver`."""

    async def resolve_address(self, host: str) -> str: ...

    async def resolve_endpoint(self, host: str, port: int | None) -> tuple[str, int]: ...


class CdnClient:
    """Requests to the CDN base URL; see the module docstring.

    ``resolver`` needs ``resolve_address(host)`` and, optionally, a ``cache``
    with ``clear()`` (the stub resolver). Errors: :class:`CdnUnavailable`
    (DNS), and what :class:`HttpClient` raises (TransportError,
    RemoteProtocolError).
    """

    def __init__(
        self,
        base_url: str,
        *,
        http: HttpClient,
        resolver: AddressResolver | None = None,
        local_address: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"CDN URL must be http://HOST[:PORT], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._port_given = parts.port is not None
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.http = http
        self.resolver = resolver
        self.local_address = local_address
        self._literal = _is_address(self.host)
        self.requests = 0
        self.failures = 0
        self.resolutions = 0
        self.last_address = self.host if self._literal else ""
        self.last_served_by = ""

    async def _url(self, path: str) -> str:
        address, port = self.host, self.port
        if not self._literal:
            if self.resolver is None:
                raise CdnUnavailable(f"no resolver for {self.host}", reason="dns")
            self.resolutions += 1
            try:
                # Without a port in the URL, the name's HTTPS record says where the edge is.
                given = self.port if self._port_given else None
                address, port = await self.resolver.resolve_endpoint(self.host, given)
            except SeedcastError as error:
                raise CdnUnavailable(f"DNS: {error}", reason="dns") from None
            except OSError as error:
                raise CdnUnavailable(f"DNS: {error}", reason="dns") from None
            self.last_address = address
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port}{self.prefix}{path}"

    def forget(self) -> None:
        """Forget resolved addresses: the next request asks the DNS again."""
        cache = getattr(self.resolver, "cache", None)
        if cache is not None and hasattr(cache, "clear"):
            cache.clear()

    def _headers(self, extra: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [("Host", self.netloc), *extra]

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        read_timeout: float | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """``GET path`` (``/<id>/<name>``) from the CDN; one attempt, body streamed."""
        self.requests += 1
        try:
            url = await self._url(path)
            async with self.http.stream(
                "GET",
                url,
                headers=self._headers(headers),
                local_address=self.local_address,
                read_timeout=read_timeout,
            ) as response:
                self.last_served_by = response.headers.get(SERVED_BY) or ""
                yield response
        except CDN_ERRORS:
            self.failures += 1
            raise

    async def get(
        self,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        read_timeout: float | None = None,
        max_body_size: int | None = None,
    ) -> ClientResponse:
        """``GET path``, whole body read; one attempt."""
        self.requests += 1
        try:
            url = await self._url(path)
            response = await self.http.request(
                "GET",
                url,
                headers=self._headers(headers),
                local_address=self.local_address,
                read_timeout=read_timeout,
                max_body_size=max_body_size,
            )
        except CDN_ERRORS:
            self.failures += 1
            raise
        self.last_served_by = response.headers.get(SERVED_BY) or ""
        return response

    def statistics(self) -> CdnStatistics:
        return CdnStatistics(
            requests=self.requests,
            failures=self.failures,
            resolutions=self.resolutions,
            last_address=self.last_address,
            last_served_by=self.last_served_by,
        )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
