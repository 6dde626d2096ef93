"""TCP streams on non-blocking stdlib sockets, driven by ``trio.lowlevel`` waits.

Why: a busy swarm moves tens of thousands of small messages per second per
process; trio's ``SocketStream`` spends more time in its wrappers than the
peer spends on the messages. Here a read or write that can complete at once
costs one system call; only when the socket is not ready does the task wait
(``wait_readable``/``wait_writable``). To stay fair to other tasks and
cancellable, every stream still passes a checkpoint at least every
``_CHECKPOINT_EVERY`` operations.

Errors are the OS's (``OSError`` subclasses such as ConnectionResetError);
the swarm treats any of them as "connection lost".
"""

from __future__ import annotations

import errno
import socket

from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

__all__ = ["RawListener", "RawStream", "open_raw_stream"]

_CHECKPOINT_EVERY = 8


class RawStream:
    __slots__ = ("_credit", "socket")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a socketpair in tests)
            pass
        self.socket = sock
        self._credit = _CHECKPOINT_EVERY

    async def _maybe_checkpoint(self) -> None:
        self._credit -= 1
        if self._credit <= 0:
            self._credit = _CHECKPOINT_EVERY
            await checkpoint()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``; ``b""`` when the peer closed its side."""
        sock = self.socket
        while True:
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                await wait_readable(sock)
                self._credit = _CHECKPOINT_EVERY
                continue
            await self._maybe_checkpoint()
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await wait_writable(sock)
                self._credit = _CHECKPOINT_EVERY
                continue
            view = view[sent:]
        await self._maybe_checkpoint()

    def getpeername(self) -> tuple[str, int]:
        host, port = self.socket.getpeername()[:2]
        return host, port

    async def aclose(self) -> None:
        notify_closing(self.socket)
        self.socket.close()
        await checkpoint()


async def open_raw_stream(host: str, port: int, *, local_address: str | None = None) -> RawStream:
    """Connect to ``host:port`` (an IP address), optionally from ``local_address``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_address is not None:
            sock.bind((local_address, 0))
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, f"connect to {host}:{port}: {errno.errorcode.get(code, code)}")
        await wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {host}:{port}: {errno.errorcode.get(code, code)}")
    except BaseException:
        notify_closing(sock)
        sock.close()
        raise
    return RawStream(sock)


class RawListener:
    """A listening socket; :meth:`accept` waits for the next connection."""

    def __init__(self, host: str, port: int, *, backlog: int = 128) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.socket = sock

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    async def accept(self) -> tuple[RawStream, tuple[str, int]]:
        # Checkpoint first: once a connection is accepted nothing may be
        # cancelled before the caller owns it (it would leak the socket).
        await checkpoint()
        while True:
            try:
                connection, peer = self.socket.accept()
            except BlockingIOError:
                await wait_readable(self.socket)
                continue
            return RawStream(connection), (peer[0], peer[1])

    async def aclose(self) -> None:
        notify_closing(self.socket)
        self.socket.close()
        await checkpoint()
