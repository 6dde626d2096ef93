"""The one root of Seedcast's exceptions.

Every error a user can see derives from :class:`SeedcastError`; the CLI turns
it into one line and an exit code. Parsers of remote input raise only
:class:`RemoteProtocolError`, carrying the hint the shell needs to answer (an
HTTP status, a DNS rcode, a reason to drop a peer).
"""

from __future__ import annotations


class SeedcastError(Exception):
    """Root of every Seedcast error. ``str(error)`` is one line for the user."""


class ConfigError(SeedcastError):
    """A configuration file or option is invalid; the message names the key."""


class UsageError(SeedcastError):
    """The command line is wrong (exit code 2)."""


class NotReadyError(SeedcastError):
    """A command or feature exists in the CLI but is not built yet."""


class MediaError(SeedcastError):
    """Probing, packaging or reading media failed."""


class ProtocolError(SeedcastError):
    """Something broke a protocol's rules. Not raised directly.

    ``status_hint`` is the HTTP status a server should answer with (when it
    applies); ``reason`` is a short machine-friendly label for metrics.
    """

    def __init__(self, message: str, *, status_hint: int = 400, reason: str = "protocol") -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """We broke the rules (a bug on our side, or a misuse of an API)."""


class RemoteProtocolError(ProtocolError):
    """The other side broke the rules: bad bytes, bad message, bad order."""


class TransportError(SeedcastError):
    """A network operation failed: refused, reset, timed out."""


class ConnectError(TransportError):
    """Could not open a connection."""


class ReadTimeout(TransportError):
    """The peer sent nothing for longer than the read timeout."""


class WriteTimeout(TransportError):
    """The peer did not accept our bytes within the write timeout."""


class PoolTimeout(TransportError):
    """No pooled connection became free in time."""
