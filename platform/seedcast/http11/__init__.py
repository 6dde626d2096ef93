"""Seedcast's HTTP/1.1 core: a trio server and client shared by every role.

Server: :class:`HttpServer` runs an ``async def handler(request) -> Response``
(usually a :class:`Router`) with keep-alive, pipelining, HEAD, chunked and
Content-Length bodies both ways, files streamed with sendfile, limits
(:class:`ServerLimits`) and ``/metrics``. Parsing: httptools (llhttp).

Client: :class:`HttpClient` keeps a connection pool per (host, port, local
address), binds to a local address when asked, applies connect/read
timeouts and streams response bodies. Parsing: h11.

Errors: :class:`seedcast.errors.ConnectError`, :class:`~seedcast.errors.ReadTimeout`,
:class:`~seedcast.errors.WriteTimeout`, :class:`~seedcast.errors.PoolTimeout`,
:class:`~seedcast.errors.RemoteProtocolError` (re-exported here).
"""

from seedcast.errors import (
    ConnectError,
    LocalProtocolError,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
    WriteTimeout,
)

from ._client import ClientResponse, ClientStatistics, HttpClient
from ._headers import Headers
from ._messages import Body, FileBody, Handler, Request, Response
from ._router import Router
from ._server import HttpServer
from ._server_state import ServerLimits, ServerStatistics

__all__ = [
    "Body",
    "ClientResponse",
    "ClientStatistics",
    "ConnectError",
    "FileBody",
    "Handler",
    "Headers",
    "HttpClient",
    "HttpServer",
    "LocalProtocolError",
    "PoolTimeout",
    "ReadTimeout",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Router",
    "ServerLimits",
    "ServerStatistics",
    "TransportError",
    "WriteTimeout",
]
