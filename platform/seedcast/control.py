"""The control channel between the launcher and its children (and the CLI).

Wire format: each message is a 4-byte big-endian length followed by that many
bytes of msgpack encoding one map::

    {"v": 1, "type": "ready", "id": 7, "reply_to": None, "role": "edge", ...}

``v`` is the schema version, ``type`` says which message it is, ``id``
numbers messages per sender and ``reply_to`` names the request a reply
answers. :data:`SCHEMA` lists every known type and its fields in one place.
Unknown extra fields are kept (a newer peer may send them); a known field with
the wrong type, a missing field, a wrong version or undecodable msgpack turns
into a :class:`MalformedMessage` event that the shell answers with an
``error`` reply; the connection goes on. Only a frame longer than
``max_frame`` (the length prefix cannot be trusted any more) or EOF in the
middle of a frame is fatal: :class:`ControlCodec` raises RemoteProtocolError
and the shell closes the connection after a last error reply.

Types: ``hello``/``ready`` (child -> launcher, notifications), ``status`` ->
``status-reply``, ``cluster-status`` -> ``cluster-status-reply`` and
``wait-ready`` (a process is ready again, with a pid other than
``after_pid``) -> ``ok`` (CLI -> launcher), ``drain``, ``shutdown``,
``purge`` (edges), ``set-rate`` (peers) -> ``ok``; any request -> ``error``.
A role may answer further types of its own (its control handlers); other
unknown types are answered with an ``error`` of code ``unknown-type``.

:class:`ControlCodec` is sans-IO (bytes in, events out, bytes back);
:class:`ControlChannel` is its trio shell: request/reply matching by id, a
handler for incoming requests, one send lock.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import os
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import trio
from seedcast.errors import LocalProtocolError, RemoteProtocolError, SeedcastError

log = logging.getLogger("seedcast.control")

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = 1 << 20
"""Largest frame accepted (1 MiB): a cluster status of hundreds of processes fits."""
_HEADER = struct.Struct(">I")
REPLY_SEND_SECONDS: Final = 1.0


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` reply."""

    MALFORMED = "malformed"
    """Not msgpack, not a map, a field missing or of the wrong type."""
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_TYPE = "unknown-type"
    TOO_LARGE = "too-large"
    FAILED = "failed"
    """The handler raised: the message says why."""
    UNAVAILABLE = "unavailable"
    """The receiver cannot do this now (e.g. not ready, stopping)."""
    CLOSED = "closed"


# --- the schema ---------------------------------------------------------------

Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_optional_number(value: Any) -> bool:
    return value is None or _is_number(value)


def _is_optional_int(value: Any) -> bool:
    return value is None or _is_int(value)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _is_statistics(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and _is_scalar(item) for key, item in value.items()
    )


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(key, str) for key in value)


def _is_map_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_map(item) for item in value)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    check: Check
    required: bool = True
    describe: str = ""


_STR = FieldSpec(_is_str, describe="a string")
_INT = FieldSpec(_is_int, describe="an integer")
_NUMBER = FieldSpec(_is_number, describe="a finite number")
_OPT_NUMBER = FieldSpec(_is_optional_number, required=False, describe="a number or nil")
_OPT_STR = FieldSpec(_is_optional_str, required=False, describe="a string or nil")
_OPT_INT = FieldSpec(_is_optional_int, required=False, describe="an integer or nil")
_ADDRESSES = FieldSpec(_is_str_list, describe="a list of strings")
_STATISTICS = FieldSpec(_is_statistics, describe="a map of names to scalars")
_MAP = FieldSpec(_is_map, required=False, describe="a map with string keys")
_MAP_LIST = FieldSpec(_is_map_list, describe="a list of maps")


class Kind(enum.IntEnum):
    NOTIFICATION = 0
    """No reply expected."""
    REQUEST = 1
    """Answered by exactly one reply (or an error)."""
    REPLY = 2


# Everything that says which messages exist and what they carry lives here.
SCHEMA: Final[Mapping[str, tuple[Kind, Mapping[str, FieldSpec]]]] = {
    "hello": (Kind.NOTIFICATION, {"role": _STR, "name": _STR, "pid": _INT}),
    "ready": (
        Kind.NOTIFICATION,
        {"role": _STR, "name": _STR, "pid": _INT, "addresses": _ADDRESSES, "metrics": _OPT_STR},
    ),
    "status": (Kind.REQUEST, {}),
    "status-reply": (
        Kind.REPLY,
        {"statistics": _STATISTICS, "state": _STR, "uptime": _NUMBER},
    ),
    "cluster-status": (Kind.REQUEST, {}),
    "cluster-status-reply": (Kind.REPLY, {"processes": _MAP_LIST, "cluster": _MAP}),
    "wait-ready": (Kind.REQUEST, {"name": _STR, "after_pid": _OPT_INT}),
    "drain": (Kind.REQUEST, {}),
    "shutdown": (Kind.REQUEST, {"deadline": _OPT_NUMBER}),
    # Edges: a path prefix or a video id (the edge checks that one is given).
    "purge": (Kind.REQUEST, {"prefix": _OPT_STR, "video": _OPT_STR}),
    "set-rate": (Kind.REQUEST, {"upload": _OPT_NUMBER, "download": _OPT_NUMBER}),
    "ok": (Kind.REPLY, {"result": _MAP}),
    "error": (Kind.REPLY, {"code": _STR, "message": _STR}),
}
_ENVELOPE = frozenset({"v", "type", "id", "reply_to"})


def kind_of(message_type: str) -> Kind:
    """Known types by the schema; unknown (role-specific) types are requests."""
    entry = SCHEMA.get(message_type)
    return entry[0] if entry else Kind.REQUEST


# --- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A decoded, validated message. ``fields`` excludes the envelope keys."""

    type: str
    id: int
    reply_to: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return kind_of(self.type)

    @property
    def known(self) -> bool:
        return self.type in SCHEMA

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A whole frame that is not a valid message; answer with an error, carry on."""

    code: ErrorCode
    reason: str
    id: int | None = None
    """The sender's id, when it could be read, for ``reply_to``."""
    type: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The other side closed the connection between two frames."""


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA

Event = ControlMessage | MalformedMessage | ConnectionClosed


# --- encoding -----------------------------------------------------------------


def validate(message_type: str, fields: Mapping[str, Any]) -> str | None:
    """Why ``fields`` don't fit ``message_type``'s schema, or None when they do."""
    entry = SCHEMA.get(message_type)
    if entry is None:
        return None
    _, specs = entry
    for key, spec in specs.items():
        if key not in fields or (fields[key] is None and not spec.required):
            if spec.required:
                return f"{message_type}: missing field {key!r}"
            continue
        if not spec.check(fields[key]):
            return f"{message_type}: field {key!r} must be {spec.describe}"
    return None


def encode(
    message_type: str,
    fields: Mapping[str, Any] | None = None,
    *,
    id: int,
    reply_to: int | None = None,
) -> bytes:
    """One frame. Raises LocalProtocolError if the fields break the schema."""
    fields = dict(fields or {})
    if _ENVELOPE & fields.keys():
        raise LocalProtocolError(f"{message_type}: envelope keys are not fields")
    problem = validate(message_type, fields)
    if problem:
        raise LocalProtocolError(problem)
    if kind_of(message_type) is Kind.REPLY and reply_to is None and message_type != "error":
        raise LocalProtocolError(f"{message_type}: a reply needs reply_to")
    body = {"v": PROTOCOL_VERSION, "type": message_type, "id": id, "reply_to": reply_to, **fields}
    try:
        payload: bytes = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise LocalProtocolError(f"{message_type}: cannot encode: {error}") from None
    if len(payload) > MAX_FRAME:
        raise LocalProtocolError(f"{message_type}: {len(payload)} bytes is over the frame limit")
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> ControlMessage | MalformedMessage:
    """Turn one frame's payload into a message; never raises."""
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True, timestamp=0)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as error:
        return MalformedMessage(ErrorCode.MALFORMED, f"not msgpack: {type(error).__name__}")
    if not isinstance(body, dict):
        return MalformedMessage(ErrorCode.MALFORMED, "a message must be a map")
    raw_id = body.get("id")
    message_id = raw_id if isinstance(raw_id, int) and _is_int(raw_id) and raw_id >= 0 else None
    message_type = body.get("type")
    if not isinstance(message_type, str):
        return MalformedMessage(ErrorCode.MALFORMED, "missing type", message_id)
    if body.get("v") != PROTOCOL_VERSION:
        return MalformedMessage(
            ErrorCode.UNSUPPORTED_VERSION,
            f"schema version {body.get('v')!r} (this side speaks {PROTOCOL_VERSION})",
            message_id,
            message_type,
        )
    if message_id is None:
        return MalformedMessage(ErrorCode.MALFORMED, "id must be a non-negative integer")
    reply_to = body.get("reply_to")
    if reply_to is not None and not (_is_int(reply_to) and reply_to >= 0):
        return MalformedMessage(ErrorCode.MALFORMED, "bad reply_to", message_id, message_type)
    fields = {key: value for key, value in body.items() if key not in _ENVELOPE}
    problem = validate(message_type, fields)
    if problem:
        return MalformedMessage(ErrorCode.MALFORMED, problem, message_id, message_type)
    if kind_of(message_type) is Kind.REPLY and reply_to is None and message_type != "error":
        return MalformedMessage(ErrorCode.MALFORMED, "a reply needs reply_to", message_id)
    return ControlMessage(message_type, message_id, reply_to, fields)


class ControlCodec:
    """Sans-IO framer: ``receive_data(bytes)`` (``b""`` = EOF), ``next_event()``, ``send()``.

    ``next_event`` returns a :class:`ControlMessage`, a :class:`MalformedMessage`
    (answer it, carry on), :class:`ConnectionClosed`, or :data:`NEED_DATA`.
    It raises RemoteProtocolError only when the stream cannot be resynchronised
    (an oversized frame, EOF inside a frame); the buffer never holds more than
    one frame plus its header.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._eof = False
        self._broken: RemoteProtocolError | None = None
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def receive_data(self, data: bytes) -> None:
        if self._eof and data:
            raise LocalProtocolError("data after EOF")
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_event(self) -> Event | _NeedData:
        if self._broken is not None:
            raise self._broken
        if len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self.max_frame:
                self._broken = RemoteProtocolError(
                    f"frame of {length} bytes is over the {self.max_frame}-byte limit",
                    reason="too-large",
                )
                self._buffer.clear()
                raise self._broken
            end = _HEADER.size + length
            if len(self._buffer) >= end:
                payload = bytes(self._buffer[_HEADER.size : end])
                del self._buffer[:end]
                return decode_payload(payload)
        if self._eof:
            if self._buffer:
                self._broken = RemoteProtocolError("connection closed inside a frame")
                self._buffer.clear()
                raise self._broken
            return ConnectionClosed()
        return NEED_DATA

    def send(
        self,
        message_type: str,
        fields: Mapping[str, Any] | None = None,
        *,
        reply_to: int | None = None,
    ) -> tuple[int, bytes]:
        """Encode a message with the next id; returns (id, frame bytes)."""
        message_id = self.next_id()
        return message_id, encode(message_type, fields, id=message_id, reply_to=reply_to)


# --- the trio shell -----------------------------------------------------------


class ControlError(SeedcastError):
    """The other side answered with an error, or the channel closed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


Reply = tuple[str, Mapping[str, Any]]
"""(reply type, fields) returned by a request handler."""
Handler = Callable[[ControlMessage], Awaitable[Reply | None]]


async def _no_handler(message: ControlMessage) -> Reply | None:
    if message.kind is Kind.REQUEST:
        raise ControlError(ErrorCode.UNKNOWN_TYPE, f"{message.type!r} is not answered here")
    return None


class ControlChannel:
    """One control connection over a trio stream, either side.

    ``run(handler)`` reads until the connection closes: replies go to the
    matching ``request`` call; requests and notifications go to ``handler``
    (notifications in order, on the reading task, so their handling must be
    quick; each request in its own task, answered with what it returns, or
    with an ``error`` when it raises). Malformed input is answered with an ``error``;
    nothing the other side sends raises out of ``run``.
    """

    def __init__(self, stream: trio.abc.Stream, *, label: str = "control") -> None:
        self.stream = stream
        self.label = label
        self._codec = ControlCodec()
        self._send_lock = trio.Lock()
        self._pending: dict[int, trio.MemorySendChannel[ControlMessage]] = {}
        self._closed = trio.Event()
        self.malformed = 0
        """Malformed messages received (for tests and statistics)."""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def send(
        self,
        message_type: str,
        fields: Mapping[str, Any] | None = None,
        *,
        reply_to: int | None = None,
    ) -> int:
        """Send one message; returns its id. Raises ControlError when closed."""
        message_id, frame = self._codec.send(message_type, fields, reply_to=reply_to)
        async with self._send_lock:
            try:
                await self.stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                self._closed.set()
                raise ControlError(ErrorCode.CLOSED, f"{self.label}: {error}") from None
        return message_id

    async def request(
        self,
        message_type: str,
        fields: Mapping[str, Any] | None = None,
        *,
        timeout: float = 5.0,
    ) -> ControlMessage:
        """Send a request and wait for its reply (needs ``run`` going).

        Raises ControlError for an ``error`` reply, a closed channel or no
        reply within ``timeout`` (code ``unavailable``).
        """
        send_channel, receive_channel = trio.open_memory_channel[ControlMessage](1)
        message_id, frame = self._codec.send(message_type, fields)
        self._pending[message_id] = send_channel
        try:
            async with self._send_lock:
                try:
                    await self.stream.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                    self._closed.set()
                    raise ControlError(ErrorCode.CLOSED, f"{self.label}: {error}") from None
            with trio.move_on_after(timeout):
                try:
                    reply = await receive_channel.receive()
                except trio.EndOfChannel:
                    raise ControlError(ErrorCode.CLOSED, f"{self.label}: closed") from None
                if reply.type == "error":
                    raise ControlError(str(reply.get("code")), str(reply.get("message")))
                return reply
            raise ControlError(
                ErrorCode.UNAVAILABLE, f"{self.label}: no reply to {message_type} in {timeout}s"
            )
        finally:
            self._pending.pop(message_id, None)

    async def run(self, handler: Handler = _no_handler) -> None:
        """Read and dispatch until the connection closes; then fail pending requests.

        The stream is closed when this returns (EOF, a fatal framing error, or
        cancellation).
        """
        try:
            async with trio.open_nursery() as nursery:
                await self._read_loop(handler, nursery)
                nursery.cancel_scope.cancel()
        finally:
            self._closed.set()
            for pending in list(self._pending.values()):
                pending.close()
            self._pending.clear()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self, handler: Handler, nursery: trio.Nursery) -> None:
        while True:
            try:
                event = self._codec.next_event()
            except RemoteProtocolError as error:
                log.warning(
                    "control connection broken",
                    extra={"fields": {"peer": self.label, "error": error}},
                )
                code = ErrorCode.TOO_LARGE if error.reason == "too-large" else ErrorCode.MALFORMED
                await self._send_error(None, code, str(error))
                return
            if event is NEED_DATA:
                try:
                    data = bytes(await self.stream.receive_some(65536))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                self._codec.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                return
            if isinstance(event, MalformedMessage):
                self.malformed += 1
                log.warning(
                    "malformed control message",
                    extra={"fields": {"peer": self.label, "reason": event.reason}},
                )
                await self._send_error(event.id, event.code, event.reason)
                continue
            assert isinstance(event, ControlMessage)
            if event.kind is Kind.REPLY:
                waiting = (
                    self._pending.pop(event.reply_to, None) if event.reply_to is not None else None
                )
                if waiting is not None:
                    waiting.send_nowait(event)
                elif event.type == "error" and event.reply_to is None:
                    # An error about nothing we asked: the other side reports a
                    # failure of its own (e.g. a role that could not start).
                    await self._dispatch(handler, event)
                elif event.type == "error":
                    log.warning(
                        "control error from peer",
                        extra={
                            "fields": {
                                "peer": self.label,
                                "code": event.get("code"),
                                "message": event.get("message"),
                            }
                        },
                    )
                continue
            if event.kind is Kind.NOTIFICATION:
                # In order (hello before ready), on the reader: handlers must be quick.
                await self._dispatch(handler, event)
            else:
                # Requests run concurrently: a slow one must not hold up the rest.
                nursery.start_soon(self._dispatch, handler, event)

    async def _dispatch(self, handler: Handler, message: ControlMessage) -> None:
        try:
            reply = await handler(message)
        except ControlError as error:
            if message.kind is Kind.REQUEST:
                await self._send_error(message.id, error.code, error.message)
            return
        except Exception as error:  # a handler bug must not take the channel down
            log.exception("control handler failed", extra={"fields": {"type": message.type}})
            if message.kind is Kind.REQUEST:
                await self._send_error(
                    message.id, ErrorCode.FAILED, f"{type(error).__name__}: {error}"
                )
            return
        if message.kind is not Kind.REQUEST:
            return
        if reply is None:
            reply = ("ok", {"result": {}})
        reply_type, fields = reply
        # A reply is small and the requester waits for it: finish sending it
        # even if this side is being cancelled (e.g. the reply to shutdown).
        with trio.CancelScope(shield=True, deadline=trio.current_time() + REPLY_SEND_SECONDS):
            try:
                await self.send(reply_type, fields, reply_to=message.id)
            except LocalProtocolError as error:
                await self._send_error(message.id, ErrorCode.FAILED, f"bad reply: {error}")
            except ControlError:
                pass

    async def _send_error(self, reply_to: int | None, code: str, message: str) -> None:
        try:
            await self.send(
                "error", {"code": str(code), "message": message[:500]}, reply_to=reply_to
            )
        except (ControlError, LocalProtocolError):
            pass

    async def aclose(self) -> None:
        self._closed.set()
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


# --- addresses ----------------------------------------------------------------

_UNIX_PATH_MAX = 107


def socket_path_for(run_dir: os.PathLike[str] | str) -> str:
    """The control socket of the cluster whose run directory is ``run_dir``.

    ``<run_dir>/control.sock`` when the absolute path fits a unix socket
    address (107 bytes); otherwise a short name in the temp folder derived
    from the run directory (recorded in the state file like the other).
    """
    import hashlib
    import tempfile

    run_dir = os.path.abspath(os.fspath(run_dir))
    path = os.path.join(run_dir, "control.sock")
    if len(os.fsencode(path)) <= _UNIX_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(run_dir)).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"seedcast-{digest}.sock")


async def open_control_listener(path: str) -> trio.SocketListener:
    """Listen on the unix socket ``path`` (a stale socket file is replaced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def connect_control(path: str, *, label: str = "launcher") -> ControlChannel:
    """A channel to the control socket at ``path``; raises ControlError if nobody listens."""
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as error:
        raise ControlError(ErrorCode.UNAVAILABLE, f"{path}: {error.strerror or error}") from None
    return ControlChannel(stream, label=label)
