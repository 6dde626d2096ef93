"""The edge's settings (from the cluster config, see :mod:`seedcast.edge.server`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from seedcast.edge.guard import HostRules
from seedcast.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    name: str
    upstream: str
    """Base URL of the origin or parent edge, e.g. ``http://127.0.10.1:8080``."""
    upstream_timeout: float = 5.0
    stale_if_error: float = 60.0
    prefetch_next: bool = False
    admin_token: str = ""
    upload: float = 0.0
    hosts: HostRules = field(default_factory=lambda: HostRules(frozenset()))
    max_connections_per_upstream: int = 64

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"edge upstream {self.upstream!r}: expected http://HOST:PORT (no TLS upstream)"
            )
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"edge upstream {self.upstream!r}: give only scheme, host and port")

    @property
    def upstream_base(self) -> str:
        return self.upstream.rstrip("/")
