"""What the HTTP server's listener, connections and send paths share.

Limits (:class:`ServerLimits`), counters and their snapshot
(:class:`ServerStatistics`), a connection's phases, the internal errors, and
small helpers. Split out of ``_server.py`` so that the listener
(``_server.py``), the request loop (``_connection.py``) and the send paths
(``_sending.py``) each live in a file of their own.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from seedcast.units import KiB, MiB

from ._headers import Headers
from ._messages import Request, Response

log = logging.getLogger("seedcast.http11")

new_headers = Headers.__new__  # the hot path skips validation: the parser already checked
new_request = Request.__new__

RECEIVE_SIZE = 64 * KiB
YIELD_EVERY = 16  # requests handled back to back before a forced checkpoint
DRAIN_LIMIT = 1 * MiB  # unread request body we discard to keep a connection
COALESCE_LIMIT = 16 * KiB  # bodies up to this size are copied into one send with the head
SMALL_FILE = 64 * KiB  # files up to this size are read and sent with the head
LIMITED_CHUNK = 64 * KiB  # with an upload_limit, bodies go out in chunks of at most this
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
SOFT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def default_server_name() -> str:
    try:
        from seedcast.version import version

        return f"seedcast/{version()}"
    except ImportError:  # pragma: no cover - version module is part of the platform
        return "seedcast"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits and timeouts (seconds, bytes) of an :class:`HttpServer`.

    - ``max_head_size``: request line + headers; more -> 431.
    - ``head_timeout``: a started request head must be complete within this
      (slow-loris guard) -> 408 and close. Also the time a new connection has
      to send its first byte (then closed silently).
    - ``keep_alive_timeout``: an idle connection between requests is closed.
    - ``body_timeout``: longest wait for the next bytes of a request body.
    - ``send_timeout``: longest wait for the client to accept more response bytes.
    - ``max_body_size``: default bound of ``await request.body()`` (-> 413).
    - ``max_connections``: concurrent connections. When full, a new connection
      evicts the least useful one (idle or still sending its head, the one
      closest to its deadline first); only when every connection is busy does
      the server stop accepting (clients wait in the listen backlog).
    - ``max_connections_per_source``: concurrent connections from one client
      address; beyond it the same eviction runs among that address's own
      connections, else the new one is closed at once. One client re-opening
      sockets can then hold at most this many slots.
    - ``shutdown_grace``: default deadline of :meth:`HttpServer.shutdown`.
    - ``linger_timeout``: after an error response, how long to read and discard
      what the client still sends before closing (so it gets the response, not a reset).
    """

    max_head_size: int = 16 * KiB
    head_timeout: float = 5.0
    keep_alive_timeout: float = 30.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0
    max_body_size: int = 16 * MiB
    max_connections: int = 1024
    max_connections_per_source: int = 64
    shutdown_grace: float = 10.0
    linger_timeout: float = 2.0
    backlog: int = 1024

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ServerLimits:
        """Limits from a config section (``config.http``): its fields named like ours."""
        values = {
            name: getattr(settings, name)
            for name in cls.__dataclass_fields__
            if hasattr(settings, name)
        }
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        for name in (
            "head_timeout",
            "keep_alive_timeout",
            "body_timeout",
            "send_timeout",
            "shutdown_grace",
            "linger_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerLimits.{name} must be > 0")
        if self.max_connections < 1 or self.max_connections_per_source < 1:
            raise ValueError("ServerLimits: max_connections and max_connections_per_source >= 1")
        if self.max_head_size < 256:
            raise ValueError("ServerLimits: max_head_size >= 256")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of an :class:`HttpServer`'s counters (see :meth:`HttpServer.statistics`)."""

    open_connections: int
    connections_total: int
    requests_total: int
    requests: dict[tuple[str, int], int]  # (method, status) -> count
    bad_requests: dict[str, int]  # reason -> count
    aborted_responses: int  # client vanished or timed out while we were sending
    evicted_connections: dict[str, int]  # why ("full", "per_source") -> count
    refused_connections: int  # closed at accept: the source had its cap of busy connections
    response_body_bytes: int
    duration_buckets: tuple[float, ...]
    duration_counts: tuple[int, ...]  # per bucket, not cumulative; last = +Inf
    duration_sum: float


class Phase(enum.IntEnum):
    IDLE = 0  # waiting for the first byte of a request
    HEAD = 1  # a request head has started
    HANDLER = 2  # the handler runs (no deadline: the handler owns its time)
    BODY = 3  # the handler waits for request body bytes
    SEND = 4  # waiting for the client to take response bytes
    LINGER = 5  # error sent; discarding input before close


class ClientGone(Exception):
    """The peer closed or reset the connection while we were writing."""


class BadResponse(Exception):
    """The handler's response cannot be framed (e.g. a wrong Content-Length)."""


@dataclass(slots=True)
class Counters:
    connections_total: int = 0
    requests_total: int = 0
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    bad_requests: dict[str, int] = field(default_factory=dict)
    aborted_responses: int = 0
    evicted_connections: dict[str, int] = field(default_factory=dict)
    refused_connections: int = 0
    response_body_bytes: int = 0
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0


def socket_address(sockname: Any) -> tuple[str, int]:
    return (str(sockname[0]), int(sockname[1]))


def error_response(status: int, message: str) -> Response:
    return Response.text(status, message.rstrip() + "\n")


async def close_body(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the handler's generator failing on close is not our problem
            log.debug("closing a response body failed", exc_info=True)
