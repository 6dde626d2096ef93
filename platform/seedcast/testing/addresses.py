"""The loopback address plan of a streaming cluster: one /24 per kind of process.

``Addresses(block, port)`` puts everything of one cluster on
``127.0.<block + offset>.<host>``: origin (offset 1), edges (2), DNS (3),
tracker (4), viewers' peers (5), and the viewer regions (7, 8, ...), so runs on
different blocks (tests, benches, a demo) never meet. Used by
:class:`seedcast.testing.streaming.StreamingCluster` and ``seedcast bench streaming``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Addresses"]


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where everything of a run lives: ``127.0.<block + offset>.<host>``."""

    block: int
    port: int

    def net(self, offset: int, host: int) -> str:
        return f"127.0.{self.block + offset}.{host}"

    @property
    def origin(self) -> str:
        return f"{self.net(1, 1)}:{self.port}"

    def edge(self, index: int) -> str:
        return f"{self.net(2, index)}:{self.port}"

    @property
    def dns(self) -> str:
        return f"{self.net(3, 1)}:15353"

    @property
    def tracker(self) -> str:
        return f"http://{self.net(4, 1)}:16969/announce"

    def peer_host(self, index: int) -> str:
        return self.net(5, index)

    def region_prefix(self, number: int) -> str:
        return f"{self.net(7 + number, 0)}/24"

    def viewer_source(self, region_number: int, index: int) -> str:
        return self.net(7 + region_number, index)

    @property
    def cdn_url(self) -> str:
        return f"http://video.netcinema.test:{self.port}"
