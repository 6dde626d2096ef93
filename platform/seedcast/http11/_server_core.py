"""Sans-IO core of the HTTP/1.1 server: request parsing and response framing.

How it works. :class:`RequestParser` wraps httptools' ``HttpRequestParser``
(llhttp, strict mode). ``receive_data(bytes)`` feeds it; llhttp's callbacks
append events to a queue, which ``next_event()`` pops: a :class:`RequestHead`,
then :class:`Data` chunks of the body (already de-chunked), then
:data:`END_OF_MESSAGE`; :data:`CONNECTION_CLOSED` after a clean EOF; and
:data:`NEED_DATA` when the queue is empty. Pipelined requests simply queue up
behind each other (bounded by what one ``receive_data`` call carries, since the
shell feeds more only when the queue is empty). Whatever the peer sends, the
parser either yields events or raises :class:`RemoteProtocolError` whose
``status_hint``/``reason`` say how to answer (400 malformed, 414 target too long,
431 head too large, 501 unknown method, 505 bad version), after every event that came before the
fault. It never touches a socket or a clock: timeouts live in the shell.

:func:`frame_response` decides, as a pure function, how a response goes on
the wire (Content-Length, chunked, close-delimited, no body) and whether the
connection stays open, and builds the response head bytes.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple

import httptools
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.units import KiB

from ._headers import Headers

DEFAULT_MAX_HEAD_SIZE = 16 * KiB

# Methods we implement (RFC 9110 + PATCH). Anything else is 501, including
# CONNECT and TRACE (no proxy tunnels, no echo) and the WebDAV family llhttp knows.
# PURGE is the de-facto cache invalidation method (Varnish, nginx, Fastly); the edge takes it.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE"})
_METHOD_NAMES = {method.encode("ascii"): method for method in KNOWN_METHODS}


# Events are immutable NamedTuples rather than frozen dataclasses: one is built
# per request, and a frozen dataclass costs 1.4 us to construct against 0.3 us.
class RequestHead(NamedTuple):
    """A request line and its header fields (names and values decoded as ISO-8859-1)."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    expect_continue: bool


class Data(NamedTuple):
    """A piece of the request body, de-chunked."""

    data: bytes


class _Marker(enum.Enum):
    NEED_DATA = "need data"
    END_OF_MESSAGE = "end of message"
    CONNECTION_CLOSED = "connection closed"


NEED_DATA = _Marker.NEED_DATA
END_OF_MESSAGE = _Marker.END_OF_MESSAGE
CONNECTION_CLOSED = _Marker.CONNECTION_CLOSED

Event = RequestHead | Data | _Marker

_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +[^ \r\n]+ +HTTP/[0-9]+\.[0-9]+\r?\n")
# What an unfinished request line of an unknown method can look like so far; anything
# else (a TLS hello, binary junk) is a 400 at once instead of waiting for a line end.
_METHOD_SO_FAR = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]*(?: [^\r\n]*)?")
_REQUEST_LINE_ANYWHERE = re.compile(
    rb"(?:^|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]+) +[^ \r\n]+ +HTTP/[0-9]+\.[0-9]+\r?\n"
)


class _Abort(Exception):
    """Raised inside an llhttp callback to stop parsing; carries our error."""

    def __init__(self, error: RemoteProtocolError) -> None:
        super().__init__(str(error))
        self.error = error


def _transfer_coding_fault(value: bytes) -> RemoteProtocolError | None:
    """RFC 9112 6.3: a request whose final coding isn't chunked is 400; other codings 501."""
    codings = [coding.strip().lower() for coding in value.split(b",")]
    if codings[-1] != b"chunked":
        return _bad("Transfer-Encoding must end with chunked", 400, "bad_framing")
    if len(codings) > 1:
        return _bad("only the chunked transfer coding is implemented", 501, "transfer_coding")
    return None


def _bad(message: str, status: int = 400, reason: str = "malformed") -> RemoteProtocolError:
    return RemoteProtocolError(message, status_hint=status, reason=reason)


class RequestParser:
    """Feed bytes, pop events; see the module docstring.

    ``in_head`` is True while a request head has started but not ended (a
    timeout then deserves a 408); ``reusable`` turns False after an Upgrade
    request, an error or EOF (the connection must close after the response).
    """

    __slots__ = (
        "_bad_line",
        "_error",
        "_events",
        "_expect",
        "_fed_in_head",
        "_framing_fault",
        "_head_size",
        "_headers",
        "_heads_done",
        "_in_body",
        "_methods",
        "_parser",
        "_url",
        "in_head",
        "max_head_size",
        "reusable",
    )

    def __init__(
        self,
        *,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
        methods: frozenset[str] = KNOWN_METHODS,
    ) -> None:
        self.max_head_size = max_head_size
        self._methods = methods
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._bad_line: bytearray | None = None
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._fed_in_head = 0
        self._heads_done = 0
        self._expect = False
        self._framing_fault: RemoteProtocolError | None = None
        self._in_body = False
        self.in_head = False
        self.reusable = True

    # -- llhttp callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self._url = []
        self._headers = []
        self._head_size = 0
        self._expect = False
        self._framing_fault = None

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)
        if self._head_size > self.max_head_size:
            raise _Abort(
                _bad(f"request target exceeds {self.max_head_size} bytes", 414, "target_too_long")
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer field after a chunked body: ignored
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_head_size:
            raise _Abort(self._too_large())
        if len(name) == 6 and name.lower() == b"expect":
            self._expect = value.strip().lower() == b"100-continue"
        elif not value.isascii() and self._framing_fault is None:
            # obs-text: legal once, but nothing we serve needs it and forwarding it
            # breaks upstream requests; refuse here rather than 502 later.
            self._framing_fault = _bad(
                f"non-ASCII byte in header field {name.decode('latin-1')!r}", 400, "bad_header"
            )
        elif (
            len(name) == 17 and name.lower() == b"transfer-encoding" and self._framing_fault is None
        ):
            self._framing_fault = _transfer_coding_fault(value)

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.in_head = False
        self._heads_done += 1
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Abort(self._version_error(version))
        raw_method = parser.get_method()
        method = _METHOD_NAMES.get(raw_method) or raw_method.decode("ascii", "replace")
        if method not in self._methods:
            raise _Abort(_bad(f"method {method} is not implemented", 501, "method"))
        if self._framing_fault is not None:
            raise _Abort(self._framing_fault)
        if version == "1.1":
            hosts = sum(
                1 for name, _ in self._headers if len(name) == 4 and name.lower() == b"host"
            )
            if hosts != 1:  # RFC 9112 3.2: exactly one Host in HTTP/1.1
                message = "HTTP/1.1 request without Host" if not hosts else "more than one Host"
                raise _Abort(_bad(message, 400, "bad_host"))
        url = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        self._events.append(
            RequestHead(
                method,
                url.decode("latin-1"),
                version,
                [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in self._headers
                ],
                parser.should_keep_alive(),
                self._expect and version == "1.1",
            )
        )
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        self._in_body = False
        self._events.append(END_OF_MESSAGE)

    # -- feeding ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._error is not None:
            if self._bad_line is not None:
                if data:
                    self._collect_bad_line(data)
                else:
                    self._bad_line = None  # EOF: the line will never end
            return
        if not data:
            self.reusable = False
            if self.in_head or self._in_body:
                self._fail(_bad("connection closed in the middle of a request", 400, "incomplete"))
            else:
                self._events.append(CONNECTION_CLOSED)
            return
        heads_before = self._heads_done
        was_in_body = self._in_body
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _Abort):
                self._fail(cause.error)
            else:  # our own callback broke: still the peer's request that we cannot take
                self._fail(_bad(f"unparsable request: {cause!r}"))
            return
        except httptools.HttpParserUpgrade:
            # An Upgrade request (or CONNECT, already refused by on_headers_complete):
            # we answer it as a plain request and then close.
            self.reusable = False
            return
        except httptools.HttpParserInvalidMethodError:
            self._invalid_method(data, fresh=heads_before == self._heads_done and not was_in_body)
            return
        except httptools.HttpParserInvalidURLError as error:
            self._fail(_bad(f"bad request target: {error}", 400, "bad_target"))
            return
        except httptools.HttpParserError as error:
            message = str(error)
            if message.startswith("Invalid HTTP version"):  # well-formed, just not 1.0/1.1
                self._fail(_bad(f"unsupported HTTP version: {message}", 505, "version"))
            else:
                self._fail(_bad(f"malformed request: {message}"))
            return
        # Bound what llhttp buffers for a head that never ends (a header line
        # of endless bytes is accumulated inside httptools before any callback).
        if self._heads_done != heads_before or was_in_body or self._in_body:
            self._fed_in_head = 0
        else:  # still in a head (or in stray CRLFs before one)
            self._fed_in_head += len(data)
        if self._fed_in_head > self.max_head_size + 4 * KiB:
            self._fail(self._too_large())

    def next_event(self) -> Event:
        """The next event, or NEED_DATA; raises RemoteProtocolError once queued events run out."""
        if self._events:
            return self._events.popleft()
        if self._error is not None and self._bad_line is None:
            raise self._error
        return NEED_DATA

    @property
    def failed(self) -> bool:
        """True once the input is known bad (next_event will raise after queued events)."""
        return self._error is not None

    def pop_end_of_message(self) -> bool:
        """Take END_OF_MESSAGE if it is the next event (a request without body)."""
        events = self._events
        if events and events[0] is END_OF_MESSAGE:
            events.popleft()
            return True
        return False

    @property
    def has_events(self) -> bool:
        """True when next_event() will return an event or raise without more data."""
        return bool(self._events) or (self._error is not None and self._bad_line is None)

    # -- errors ----------------------------------------------------------------
    def _fail(self, error: RemoteProtocolError) -> None:
        if self._error is None:
            self._error = error
        self.reusable = False

    def _too_large(self) -> RemoteProtocolError:
        return _bad(f"request head exceeds {self.max_head_size} bytes", 431, "head_too_large")

    def _version_error(self, version: str) -> RemoteProtocolError:
        if version == "0.9":  # llhttp's answer to a request line without a version
            return _bad("request line has no HTTP version", 400, "bad_request_line")
        return _bad(f"HTTP/{version} is not supported (1.0 and 1.1 are)", 505, "version")

    def _invalid_method(self, data: bytes, fresh: bool) -> None:
        # 501 for a well-formed request line with a method we don't know; 400
        # for anything else. When the bad request starts this feed, its line may
        # be incomplete: keep collecting (up to the head limit) until it ends.
        self._fail(_bad("malformed request line", 400, "bad_request_line"))
        if fresh:
            self._bad_line = bytearray()
            self._collect_bad_line(data.lstrip(b"\r\n"))
            return
        # Behind other requests in the same feed: judge from what is here.
        for match in _REQUEST_LINE_ANYWHERE.finditer(data):
            method = match.group(1).decode("ascii")
            if method not in self._methods:
                self._error = _bad(f"method {method} is not implemented", 501, "method")
                return

    def _collect_bad_line(self, data: bytes) -> None:
        assert self._bad_line is not None
        self._bad_line += data[: self.max_head_size + 1]
        line_end = self._bad_line.find(b"\n")
        if (
            line_end < 0
            and len(self._bad_line) <= self.max_head_size
            and _METHOD_SO_FAR.fullmatch(self._bad_line)
        ):
            return  # it may still be a well-formed line of an unknown method: wait for its end
        match = _REQUEST_LINE.match(bytes(self._bad_line[: line_end + 1]))
        if match and line_end >= 0:
            method = match.group(1).decode("ascii")
            self._error = _bad(f"method {method} is not implemented", 501, "method")
        self._bad_line = None


# -- responses ------------------------------------------------------------------


class Framing(enum.IntEnum):
    """How a response body is delimited on the wire."""

    NONE = 0  # no body (HEAD, 1xx, 204, 304)
    LENGTH = 1  # Content-Length
    CHUNKED = 2  # Transfer-Encoding: chunked
    CLOSE = 3  # until the connection closes (HTTP/1.0 client, unknown length)


class ResponseFrame(NamedTuple):  # one per response: a NamedTuple is 4x cheaper to build
    head: bytes
    framing: Framing
    length: int | None  # bytes of body to send for LENGTH
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class _HeaderBlock:
    wire: bytes
    content_length: int | None
    has_transfer_encoding: bool
    wants_close: bool
    has_date: bool
    has_server: bool


def _header_block(headers: Headers) -> _HeaderBlock:
    """The wire form of user headers plus what framing needs from them (cached)."""
    cached = headers._wire
    if type(cached) is _HeaderBlock:
        return cached
    content_length: int | None = None
    transfer_encoding = wants_close = has_date = has_server = False
    parts = []
    for name, value in headers._items:
        lowered = name.lower()
        if lowered == "content-length":
            if not value.strip().isdigit():
                raise LocalProtocolError(f"invalid Content-Length {value!r}")
            content_length = int(value)
            continue  # the server writes it
        if lowered == "transfer-encoding":
            transfer_encoding = True
            continue
        if lowered == "connection":
            wants_close = "close" in value.lower()
            continue
        if lowered == "date":
            has_date = True
        elif lowered == "server":
            has_server = True
        parts.append(f"{name}: {value}\r\n")
    block = _HeaderBlock(
        "".join(parts).encode("latin-1", "replace"),
        content_length,
        transfer_encoding,
        wants_close,
        has_date,
        has_server,
    )
    headers._wire = block
    return block


_STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("ascii")
    for status in HTTPStatus
}


def status_line(status: int, reason: str | None = None) -> bytes:
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
        reason = ""
    reason = reason.replace("\r", " ").replace("\n", " ")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1", "replace")


def date_line(now: float) -> bytes:
    """``Date: <IMF-fixdate>\\r\\n`` for a wall-clock time."""
    return b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"


def server_line(server: str) -> bytes:
    return f"Server: {server}\r\n".encode("latin-1", "replace") if server else b""


_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


def frame_response(
    method: str,
    version: str,
    keep_alive: bool,
    status: int,
    headers: Headers,
    body_length: int | None,
    reason: str | None = None,
    date: bytes = b"",
    server: bytes = b"",
) -> ResponseFrame:
    """Decide framing and keep-alive for a response; build its head.

    ``body_length`` is the body's size when known (bytes, files) or None for
    a stream. ``keep_alive`` is what the client and server want so far; it
    turns False for a close-delimited body or a handler's ``Connection: close``.
    Raises LocalProtocolError for a handler's inconsistent headers (a
    Content-Length that disagrees with the body, a Transfer-Encoding).
    """
    block = _header_block(headers)
    if block.has_transfer_encoding:
        raise LocalProtocolError(
            "handlers must not set Transfer-Encoding; the server frames bodies"
        )
    if block.wants_close:
        keep_alive = False
    declared = block.content_length
    length_line = b""
    length: int | None = None
    if status < 200 or status == 204 or status == 304:
        framing = Framing.NONE
        if status == 304 and declared is not None:
            length_line = b"Content-Length: %d\r\n" % declared
    else:
        if body_length is not None:
            length = body_length
            if declared is not None and declared != body_length:
                if method != "HEAD" or body_length != 0:
                    raise LocalProtocolError(
                        f"Content-Length {declared} disagrees with a body of {body_length} bytes"
                    )
                length = declared  # a HEAD handler announcing the size it would send
            framing = Framing.LENGTH
        elif declared is not None:
            length = declared
            framing = Framing.LENGTH
        elif version == "1.1":
            framing = Framing.CHUNKED
        else:
            framing = Framing.CLOSE
            keep_alive = False
        if length is not None:
            length_line = b"Content-Length: %d\r\n" % length
        elif framing is Framing.CHUNKED:
            length_line = _CHUNKED
        if method == "HEAD":
            framing = Framing.NONE
    if not keep_alive:
        connection = _CLOSE
    elif version == "1.0":
        connection = _KEEP_ALIVE
    else:
        connection = b""
    head = b"".join(
        (
            status_line(status, reason),
            b"" if block.has_date else date,
            b"" if block.has_server else server,
            block.wire,
            length_line,
            connection,
            b"\r\n",
        )
    )
    return ResponseFrame(head, framing, length, keep_alive)


def chunk_header(size: int) -> bytes:
    return b"%x\r\n" % size


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
