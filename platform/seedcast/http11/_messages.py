"""Requests and responses as the server's handlers see them.

A :class:`Request` is built by the server for each request head; its body is
not read until the handler asks (``await request.body()`` or
``async for chunk in request.stream()``), so a handler can stream a large
upload or ignore it. A :class:`Response` names its body as bytes, a
:class:`FileBody` (streamed from disk in chunks, never loaded whole) or any
async iterable of bytes (sent chunked, or raw when the handler sets
Content-Length). The server adds Date, Server, Content-Length or
Transfer-Encoding and Connection; handlers never need to.
"""

from __future__ import annotations

import json as _json
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.units import KiB, MiB

from ._headers import Headers, as_headers

Address = tuple[str, int]
Throttle = Callable[[int], Awaitable[object]]

DEFAULT_MAX_BODY_SIZE = 16 * MiB


class _BodySource(Protocol):
    """Where a request's body comes from: the server connection, or bytes in tests."""

    max_body_size: int

    async def receive_body_chunk(self) -> bytes | None: ...


class _BytesSource:
    __slots__ = ("_data", "max_body_size")

    def __init__(self, data: bytes, max_body_size: int) -> None:
        self._data: bytes | None = data
        self.max_body_size = max_body_size

    async def receive_body_chunk(self) -> bytes | None:
        data, self._data = self._data, None
        return data or None


def split_target(target: str) -> tuple[str, str]:
    """``"/a/b?x=1"`` -> (``"/a/b"``, ``"x=1"``); absolute-form keeps only path and query."""
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if sep and scheme.isalpha():
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
            if slash < 0 and "?" in rest:
                target = "/?" + rest.partition("?")[2]
    raw_path, _, query = target.partition("?")
    return raw_path, query


class Request:
    """One HTTP request as a handler receives it.

    ``target`` is the raw request-target; ``raw_path`` its path part as sent;
    ``path`` the same percent-decoded (as UTF-8); ``query`` the raw text after
    ``?``. ``path_params`` is filled by the :class:`Router`. ``client`` and
    ``server`` are the socket's peer and local (host, port).

    Build one by hand in tests: ``Request("GET", "/x?y=1", headers=..., body=b"...")``.
    """

    __slots__ = (
        "_body",
        "_source",
        "client",
        "headers",
        "method",
        "path",
        "path_params",
        "query",
        "raw_path",
        "server",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        *,
        version: str = "1.1",
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        client: Address = ("127.0.0.1", 0),
        server: Address = ("127.0.0.1", 0),
        body: bytes = b"",
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self._init(
            method,
            target,
            version,
            as_headers(headers),
            client,
            server,
            _BytesSource(body, max_body_size),
        )

    def _init(
        self,
        method: str,
        target: str,
        version: str,
        headers: Headers,
        client: Address,
        server: Address,
        source: _BodySource,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.client = client
        self.server = server
        self.path_params: dict[str, str] = {}
        self._source = source
        self._body: bytes | None = None
        if target.startswith("/"):
            raw_path, _, self.query = target.partition("?")
        else:
            raw_path, self.query = split_target(target)
        self.raw_path = raw_path
        self.path = unquote(raw_path, errors="replace") if "%" in raw_path else raw_path

    @classmethod
    def _from_server(
        cls,
        method: str,
        target: str,
        version: str,
        headers: Headers,
        client: Address,
        server: Address,
        source: _BodySource,
    ) -> Request:
        request = cls.__new__(cls)
        request._init(method, target, version, headers, client, server, source)
        return request

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} HTTP/{self.version} from {self.client}>"

    async def body(self, max_size: int | None = None) -> bytes:
        """The whole body (read once, then cached).

        Raises RemoteProtocolError with status_hint 413 when it exceeds
        ``max_size`` (default: the server's ``ServerLimits.max_body_size``),
        or 400 when the client breaks off or sends a malformed body.
        """
        if self._body is not None:
            return self._body
        limit = self._source.max_body_size if max_size is None else max_size
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RemoteProtocolError(
                f"request body of {declared} bytes exceeds {limit}",
                status_hint=413,
                reason="body_too_large",
            )
        parts: list[bytes] = []
        size = 0
        while (chunk := await self._source.receive_body_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise RemoteProtocolError(
                    f"request body exceeds {limit} bytes", status_hint=413, reason="body_too_large"
                )
            parts.append(chunk)
        self._body = b"".join(parts)
        return self._body

    def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk as it arrives (no size limit: the handler decides).

        Raises RemoteProtocolError (status_hint 400) if the client breaks off
        or sends a malformed body. Stopping early is fine.
        """
        return _BodyStream(self)


class _BodyStream:
    """Async iterator over a request body (a class, so abandoning it needs no cleanup)."""

    __slots__ = ("_replayed", "_request")

    def __init__(self, request: Request) -> None:
        self._request = request
        self._replayed = False

    def __aiter__(self) -> _BodyStream:
        return self

    async def __anext__(self) -> bytes:
        request = self._request
        if request._body is not None:  # already read by body(): replay it once
            if self._replayed or not request._body:
                raise StopAsyncIteration
            self._replayed = True
            return request._body
        chunk = await request._source.receive_body_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


class FileBody:
    """A response body streamed from a file, ``length`` bytes from ``offset``.

    When ``length`` is None the file is stat'ed now (so a missing file raises
    OSError in the handler, where it can still become a 404); the server opens
    the file only when it sends. ``throttle(nbytes)``, when given, is awaited
    before each chunk of at most ``chunk_size`` bytes (e.g. a TokenBucket's
    ``consume``). If the file turns out shorter than promised, the server
    aborts the connection (the client sees a truncated body, never wrong bytes).
    """

    __slots__ = ("chunk_size", "length", "offset", "path", "throttle")

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        length: int | None = None,
        *,
        throttle: Throttle | None = None,
        chunk_size: int = 256 * KiB,
    ) -> None:
        self.path: str = os.fspath(path)  # a str: opened per response, Path costs 2 us each time
        if offset < 0:
            raise ValueError(f"negative offset {offset} for {self.path}")
        if length is None:
            size = os.stat(self.path).st_size
            if offset > size:
                raise ValueError(f"offset {offset} is past the end of {self.path} ({size} bytes)")
            length = size - offset
        elif length < 0:
            raise ValueError(f"negative length {length} for {self.path}")
        self.offset = offset
        self.length = length
        self.throttle = throttle
        self.chunk_size = max(1, chunk_size)

    def __repr__(self) -> str:
        return f"FileBody({self.path!r}, offset={self.offset}, length={self.length})"


Body = bytes | bytearray | memoryview | FileBody | AsyncIterable[bytes]


class Response:
    """What a handler returns: ``Response(200, [("Content-Type", "video/mp4")], body)``.

    ``headers`` may be a :class:`Headers` (used as is, and its wire form is
    cached, so a module-level Headers constant costs nothing per response) or
    anything Headers() accepts. Set Content-Length yourself only for an async
    iterable body of known size (it is then sent raw, not chunked) or for a
    HEAD-only handler; the server fills it in otherwise.
    """

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: Body = b"",
        *,
        reason: str | None = None,
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid HTTP status {status!r}")
        if isinstance(body, str):
            raise LocalProtocolError("a response body is bytes, not str (use Response.text)")
        self.status = status
        self.headers = as_headers(headers)
        self.body = body
        self.reason = reason

    def __repr__(self) -> str:
        kind = type(self.body).__name__
        return f"<Response {self.status} body={kind}>"

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        all_headers = Headers(headers)
        all_headers.setdefault("Content-Type", content_type)
        return cls(status, all_headers, text.encode("utf-8"))

    @classmethod
    def json(
        cls,
        status: int,
        obj: Any,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        all_headers = Headers(headers)
        all_headers.setdefault("Content-Type", "application/json")
        body = _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(status, all_headers, body)


Handler = Callable[[Request], Awaitable[Response]]
