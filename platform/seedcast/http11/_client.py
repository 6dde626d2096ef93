"""The trio HTTP/1.1 client: a connection pool over h11.

How it works. Connections are pooled per (host, port, local address): a
viewer bound to its region's address never shares a connection with another
region's traffic. Each pool allows ``max_connections_per_host`` connections at
once (waiting longer than ``pool_timeout`` raises PoolTimeout); a response
hands its connection back to the pool when its body has been read to the end
(h11 says both sides are done and nobody asked to close), and closes it when
the caller stops early. An idle pooled connection is dropped once older than
``keep_alive_timeout`` or when the server has closed it (it is readable
while idle). A request on a reused connection that dies before any response
byte (the server closed it as we picked it up) is retried once on a fresh
connection when it is idempotent and its body is bytes.

Errors: ConnectError (refused, unreachable, timed out connecting),
ReadTimeout / WriteTimeout (no progress within the timeout), PoolTimeout,
RemoteProtocolError (malformed response, connection lost mid-response), and
LocalProtocolError for a URL this client cannot serve (only ``http://``).
"""

from __future__ import annotations

import ipaddress
import json as _json
import logging
import os
import select
import socket
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
import trio
from seedcast.errors import (
    ConnectError,
    LocalProtocolError,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
)
from seedcast.units import KiB, MiB

from ._headers import Headers

if TYPE_CHECKING:
    from seedcast.ratelimit import TokenBucket

log = logging.getLogger("seedcast.http11.client")

_RECEIVE_SIZE = 256 * KiB
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

PoolKey = tuple[str, int, str | None]
HeadersInput = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None


def _user_agent() -> str:
    try:
        from seedcast.version import version

        return f"seedcast/{version()}"
    except ImportError:  # pragma: no cover
        return "seedcast"


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    connections_opened: int
    connections_reused: int
    requests: int
    open_connections: int
    idle_connections: int


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    target: str
    host_header: str


def _parse_url(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise LocalProtocolError(f"bad URL {url!r}: {error}") from None
    if parts.scheme.lower() != "http":
        raise LocalProtocolError(f"unsupported URL {url!r}: only http:// URLs are supported")
    host = parts.hostname
    if not host:
        raise LocalProtocolError(f"bad URL {url!r}: no host")
    port = 80 if port is None else port
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == 80 else f"{shown}:{port}"
    return _Target(host, port, target, host_header)


class _Connection:
    """One pooled TCP connection and its h11 state machine."""

    __slots__ = ("h11", "idle_since", "key", "received", "reused", "stream")

    def __init__(self, stream: trio.SocketStream, key: PoolKey, max_head_size: int) -> None:
        self.stream = stream
        self.key = key
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_size)
        self.idle_since = 0.0
        self.reused = False
        self.received = 0  # bytes received for the current response

    def looks_alive(self) -> bool:
        """False when the server closed (or wrote garbage on) the idle connection."""
        try:
            fd = self.stream.socket.fileno()
            if fd < 0:
                return False
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass


class _Pool:
    __slots__ = ("idle", "slots")

    def __init__(self, size: int) -> None:
        self.idle: list[_Connection] = []
        self.slots = trio.Semaphore(size)


class ClientResponse:
    """A response whose body may still be on the wire.

    ``status``, ``reason``, ``http_version`` ("1.1"), ``headers``;
    ``async for chunk in response.iter_bytes()`` streams the body once;
    ``await response.read()`` collects it into ``response.content``.
    """

    def __init__(
        self,
        client: HttpClient,
        connection: _Connection,
        pool: _Pool,
        event: h11.Response,
        url: str,
        read_timeout: float,
    ) -> None:
        self.status: int = event.status_code
        self.reason: str = event.reason.decode("latin-1", "replace")
        self.http_version: str = event.http_version.decode("ascii", "replace")
        self.headers = Headers._trusted(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in event.headers.raw_items()
            ]
        )
        self.url = url
        self._client = client
        self._connection: _Connection | None = connection
        self._pool = pool
        self._read_timeout = read_timeout
        self._content: bytes | None = None
        self._consumed = False

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.url}>"

    @property
    def content(self) -> bytes:
        """The body, after :meth:`read` (or ``client.request``)."""
        if self._content is None:
            raise LocalProtocolError("response body not read yet: await response.read() first")
        return self._content

    @property
    def is_closed(self) -> bool:
        return self._connection is None

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive. Raises ReadTimeout / RemoteProtocolError.

        Stopping early is fine: leaving ``client.stream()`` closes the connection.
        """
        return _ResponseBody(self)

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body, None at its end (the connection then goes back)."""
        connection = self._connection
        if connection is None:
            if self._consumed:
                return None
            raise LocalProtocolError("response already closed")
        try:
            while True:
                try:
                    event = await self._client._next_event(connection, self._read_timeout)
                except _Broken as broken:
                    raise RemoteProtocolError(
                        f"connection lost in the middle of the body from {self.url}: {broken}",
                        reason="incomplete",
                    ) from None
                if type(event) is h11.Data:
                    data = event.data
                    if data:
                        return data if type(data) is bytes else bytes(data)
                elif type(event) is h11.EndOfMessage:
                    self._consumed = True
                    self._release(reusable=True)
                    return None
                else:  # pragma: no cover - h11 only gives Data then EndOfMessage here
                    raise RemoteProtocolError(f"unexpected {type(event).__name__} in a body")
        except BaseException:
            self._consumed = True
            await self.aclose()
            raise

    async def read(self, max_size: int | None = None) -> bytes:
        """The whole body; RemoteProtocolError when it exceeds ``max_size`` bytes."""
        if self._content is not None:
            return self._content
        limit = self._client.max_body_size if max_size is None else max_size
        if self._consumed:
            raise LocalProtocolError("response body already streamed; it cannot be read again")
        parts: list[bytes] = []
        size = 0
        while (chunk := await self._next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                await self.aclose()
                raise RemoteProtocolError(
                    f"response body from {self.url} exceeds {limit} bytes", reason="body_too_large"
                )
            parts.append(chunk)
        self._content = b"".join(parts)
        return self._content

    def json(self) -> Any:
        return _json.loads(self.content)

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    async def aclose(self) -> None:
        """Give up the rest of the body (the connection is closed unless the body was done)."""
        connection = self._connection
        if connection is None:
            return
        if self._body_already_here(connection):
            self._release(reusable=True)
            return
        self._connection = None
        await connection.aclose()
        self._client._forget(connection, self._pool)

    def _body_already_here(self, connection: _Connection) -> bool:
        """True when the (rest of the) body is already buffered: a HEAD, 204, 304, small body."""
        state = connection.h11
        try:
            while True:
                event = state.next_event()
                if type(event) is h11.EndOfMessage:
                    return True
                if type(event) is not h11.Data:
                    return False
        except h11.RemoteProtocolError:
            return False

    def _release(self, *, reusable: bool) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        self._client._give_back(connection, self._pool, reusable=reusable)


class _ResponseBody:
    """Async iterator over a response body (a class: abandoning it needs no cleanup)."""

    __slots__ = ("_response",)

    def __init__(self, response: ClientResponse) -> None:
        self._response = response

    def __aiter__(self) -> _ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._response._next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


class HttpClient:
    """HTTP/1.1 client with a connection pool per (host, port, local address).

    ``local_address`` (an IP, or (IP, port)) binds every connection's source
    address unless a request names its own. Timeouts are in seconds:
    ``connect_timeout`` to open a connection, ``read_timeout`` for each wait
    for response bytes, ``write_timeout`` for each wait to send,
    ``pool_timeout`` for a free connection slot. Use as ``async with
    HttpClient() as client`` or call :meth:`aclose`.

    ``download_limit`` (a :class:`~seedcast.ratelimit.TokenBucket`, shared by
    every request of this client) caps the ingress of response bodies: each
    chunk read is paid for before the next read, so the rest waits in the
    socket and TCP flow control slows the sender down, as a slower access
    link would. It mirrors the server's ``upload_limit``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        pool_timeout: float = 30.0,
        max_connections_per_host: int = 16,
        local_address: str | tuple[str, int] | None = None,
        keep_alive_timeout: float = 15.0,
        max_body_size: int = 64 * MiB,
        max_head_size: int = 64 * KiB,
        user_agent: str | None = None,
        download_limit: TokenBucket | None = None,
    ) -> None:
        if max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be >= 1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.pool_timeout = pool_timeout
        self.max_connections_per_host = max_connections_per_host
        self.local_address = local_address
        self.keep_alive_timeout = keep_alive_timeout
        self.max_body_size = max_body_size
        self.max_head_size = max_head_size
        self.user_agent = _user_agent() if user_agent is None else user_agent
        self.download_limit = download_limit
        self._pools: dict[PoolKey, _Pool] = {}
        self._active: set[_Connection] = set()
        self._closed = False
        self._opened = 0
        self._reused = 0
        self._requests = 0

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled and active connection."""
        self._closed = True
        connections = [c for pool in self._pools.values() for c in pool.idle] + list(self._active)
        for pool in self._pools.values():
            pool.idle.clear()
        self._active.clear()
        for connection in connections:
            await connection.aclose()

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            connections_opened=self._opened,
            connections_reused=self._reused,
            requests=self._requests,
            open_connections=len(self._active)
            + sum(len(pool.idle) for pool in self._pools.values()),
            idle_connections=sum(len(pool.idle) for pool in self._pools.values()),
        )

    # -- requests ------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersInput = None,
        body: bytes | AsyncIterable[bytes] = b"",
        local_address: str | tuple[str, int] | None = None,
        read_timeout: float | None = None,
        max_body_size: int | None = None,
    ) -> ClientResponse:
        """Send a request and read the whole response body into ``response.content``."""
        async with self.stream(
            method,
            url,
            headers=headers,
            body=body,
            local_address=local_address,
            read_timeout=read_timeout,
        ) as response:
            await response.read(max_body_size)
        return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersInput = None,
        body: bytes | AsyncIterable[bytes] = b"",
        local_address: str | tuple[str, int] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """``async with client.stream("GET", url) as response:`` then iterate its body.

        Leaving the block before the body's end closes the connection.
        """
        response = await self._send(
            method.upper(),
            url,
            headers,
            body,
            self.local_address if local_address is None else local_address,
            self.read_timeout if read_timeout is None else read_timeout,
        )
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        headers: HeadersInput,
        body: bytes | AsyncIterable[bytes],
        local_address: str | tuple[str, int] | None,
        read_timeout: float,
    ) -> ClientResponse:
        if self._closed:
            raise LocalProtocolError("this HttpClient is closed")
        target = _parse_url(url)
        bind = _bind_address(local_address)
        key: PoolKey = (target.host, target.port, None if bind is None else f"{bind[0]}:{bind[1]}")
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self.max_connections_per_host)
        request = self._build_request(method, target, headers, body)
        replayable = isinstance(body, bytes | bytearray | memoryview) and method in _IDEMPOTENT
        with trio.move_on_after(self.pool_timeout) as waited:
            await pool.slots.acquire()
        if waited.cancelled_caught:
            raise PoolTimeout(
                f"no free connection to {target.host}:{target.port} within {self.pool_timeout:g} s"
            )
        try:
            attempt = 0
            while True:
                attempt += 1
                connection = self._pooled(pool)
                if connection is None:
                    connection = await self._connect(target, key, bind)
                self._active.add(connection)
                try:
                    event = await self._exchange(connection, request, body, read_timeout)
                except _StaleConnection as stale:
                    self._active.discard(connection)
                    await connection.aclose()
                    if attempt == 1 and replayable:
                        log.debug("retrying %s %s on a fresh connection", method, url)
                        continue
                    raise RemoteProtocolError(
                        f"{target.host}:{target.port} closed the connection before responding",
                        reason="closed",
                    ) from stale.__cause__
                except BaseException:
                    self._active.discard(connection)
                    await connection.aclose()
                    raise
                self._requests += 1
                return ClientResponse(self, connection, pool, event, url, read_timeout)
        except BaseException:
            pool.slots.release()
            raise

    def _build_request(
        self,
        method: str,
        target: _Target,
        headers: HeadersInput,
        body: bytes | AsyncIterable[bytes],
    ) -> h11.Request:
        fields = Headers(headers)
        if "host" not in fields:
            fields.add("Host", target.host_header)
        if self.user_agent and "user-agent" not in fields:
            fields.add("User-Agent", self.user_agent)
        if isinstance(body, bytes | bytearray | memoryview):
            if "content-length" not in fields and (
                body or method not in ("GET", "HEAD", "DELETE", "OPTIONS")
            ):
                fields.add("Content-Length", str(len(body)))
        elif "content-length" not in fields and "transfer-encoding" not in fields:
            fields.add("Transfer-Encoding", "chunked")
        try:
            return h11.Request(method=method, target=target.target, headers=fields.items())
        except h11.LocalProtocolError as error:
            raise LocalProtocolError(f"cannot send this request: {error}") from None

    def _pooled(self, pool: _Pool) -> _Connection | None:
        now = trio.current_time()
        while pool.idle:
            connection = pool.idle.pop()
            if now - connection.idle_since < self.keep_alive_timeout and connection.looks_alive():
                connection.reused = True
                self._reused += 1
                return connection
            self._drop_quietly(connection)
        return None

    def _drop_quietly(self, connection: _Connection) -> None:
        try:
            connection.stream.socket.close()
        except OSError:
            pass

    async def _connect(
        self, target: _Target, key: PoolKey, bind: tuple[str, int] | None
    ) -> _Connection:
        where = f"{target.host}:{target.port}"
        with trio.move_on_after(self.connect_timeout) as scope:
            try:
                addresses = await _resolve(target.host, target.port)
            except OSError as error:
                raise ConnectError(f"cannot resolve {target.host}: {error}") from None
            last_error: OSError | None = None
            for family, address in addresses:
                sock = trio.socket.socket(family, socket.SOCK_STREAM)
                try:
                    if bind is not None:
                        await sock.bind(bind)
                    await sock.connect(address)
                except OSError as error:
                    sock.close()
                    last_error = error
                    continue
                except BaseException:
                    sock.close()
                    raise
                stream = trio.SocketStream(sock)
                self._opened += 1
                return _Connection(stream, key, self.max_head_size)
            via = f" from {bind[0]}" if bind else ""
            reason = _reason(last_error)
            raise ConnectError(f"cannot connect to {where}{via}: {reason}")
        assert scope.cancelled_caught
        raise ConnectError(f"connecting to {where} timed out after {self.connect_timeout:g} s")

    async def _exchange(
        self,
        connection: _Connection,
        request: h11.Request,
        body: bytes | AsyncIterable[bytes],
        read_timeout: float,
    ) -> h11.Response:
        """Send the request; return the response head. _StaleConnection if nothing came back."""
        state = connection.h11
        fresh = not connection.reused
        connection.received = 0
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                data = state.send(request)
                if body:
                    data += state.send(h11.Data(data=body))
                data += state.send(h11.EndOfMessage())
                await self._send_bytes(connection, data)
            else:
                await self._send_bytes(connection, state.send(request))
                async for chunk in body:
                    if chunk:
                        await self._send_bytes(connection, state.send(h11.Data(data=chunk)))
                await self._send_bytes(connection, state.send(h11.EndOfMessage()))
        except _Broken as broken:
            if fresh:
                raise RemoteProtocolError(f"connection lost while sending: {broken}") from None
            raise _StaleConnection from broken
        except h11.LocalProtocolError as error:
            raise LocalProtocolError(f"cannot send this request: {error}") from None
        while True:
            try:
                event = await self._next_event(connection, read_timeout)
            except _Broken as broken:
                if fresh or connection.received:
                    raise RemoteProtocolError(f"connection lost: {broken}") from None
                raise _StaleConnection from broken
            if type(event) is h11.Response:
                return event
            # 1xx informational responses (100 Continue): keep waiting for the real one.

    async def _send_bytes(self, connection: _Connection, data: bytes) -> None:
        with trio.move_on_after(self.write_timeout) as scope:
            try:
                await connection.stream.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise _Broken(str(error) or type(error).__name__) from error
        if scope.cancelled_caught:
            raise WriteTimeout(f"could not send within {self.write_timeout:g} s")

    async def _next_event(self, connection: _Connection, read_timeout: float) -> Any:
        state = connection.h11
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as error:
                raise RemoteProtocolError(f"bad response: {error}") from None
            if event is not h11.NEED_DATA:
                if type(event) is h11.ConnectionClosed:
                    raise _Broken("connection closed by the server")
                if type(event) is h11.Data and self.download_limit is not None:
                    await self.download_limit.consume(len(event.data))
                return event
            with trio.move_on_after(read_timeout) as scope:
                try:
                    data = await connection.stream.receive_some(_RECEIVE_SIZE)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                    raise _Broken(str(error) or type(error).__name__) from error
            if scope.cancelled_caught:
                raise ReadTimeout(f"no response bytes within {read_timeout:g} s")
            if not data and state.their_state is h11.SEND_RESPONSE and not connection.received:
                raise _Broken("connection closed by the server")
            connection.received += len(data)
            try:
                state.receive_data(data)
            except h11.RemoteProtocolError as error:
                raise RemoteProtocolError(f"bad response: {error}") from None

    # -- pool bookkeeping -----------------------------------------------------------
    def _give_back(self, connection: _Connection, pool: _Pool, *, reusable: bool) -> None:
        self._active.discard(connection)
        state = connection.h11
        if (
            reusable
            and not self._closed
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
        ):
            state.start_next_cycle()
            connection.idle_since = trio.current_time()
            pool.idle.append(connection)
        else:
            self._drop_quietly(connection)
        pool.slots.release()

    def _forget(self, connection: _Connection, pool: _Pool) -> None:
        self._active.discard(connection)
        pool.slots.release()


class _Broken(Exception):
    """The socket failed or closed (translated at the edge of each request)."""


class _StaleConnection(Exception):
    """A reused connection died before any response byte: safe to retry."""


def _bind_address(local_address: str | tuple[str, int] | None) -> tuple[str, int] | None:
    if local_address is None:
        return None
    if isinstance(local_address, tuple):
        return (local_address[0], int(local_address[1]))
    return (local_address, 0)


async def _resolve(host: str, port: int) -> list[tuple[int, Any]]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(info[0], info[4]) for info in infos]
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return [(family, (host, port))]


def _reason(error: OSError | None) -> str:
    """``connection refused`` rather than trio's ``Error connecting to (...): ...``."""
    if error is None:
        return "no address to connect to"
    return os.strerror(error.errno).lower() if error.errno else str(error)
