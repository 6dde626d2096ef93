"""The loopback address plan of a streaming cluster: one /24 per kind of process.

``Addresses(block, port)`` puts everything of one cluster on
``127.0.<block + offset>.<host>``: origin (offset 1), edges (2), DNS (3),
tracker (4), viewers' peers (5), and the viewer regions (7, 8, ...), so runs on
different blocks (tests, benches, a demo) never meet. Used by
:class:`seedcast.testing.streaming.StreamingCluster` and ``seedcast bench streaming``.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def regions_toml(self, names: Sequence[str], *, last_mile_ms: float = 0.0) -> str:
        """``[[regions]]`` of a cluster file: region ``names[n]`` on ``region_prefix(n)``,
        40 ms from every other region, ``last_mile_ms`` to its viewers when set."""
        last_mile = f"last_mile_ms = {last_mile_ms:g}\n" if last_mile_ms > 0 else ""
        return "".join(
            f"""
[[regions]]
name = "{name}"
viewer_prefix = "{self.region_prefix(number)}"
latency_ms = {{ {", ".join(f"{other} = 40" for other in names if other != name)} }}
{last_mile}"""
            for number, name in enumerate(names)
        )

    def services_toml(self) -> str:
        """The ``[dns]`` and ``[tracker]`` sections of a cluster file on this plan.

        The DNS answers ``video.netcinema.test`` (a CNAME into ``kingcdn.test``)
        and checks the edges' health every 500 ms, so a test or bench sees a
        dead edge leave the answers within a second.
        """
        return f"""
[dns]
listen = "{self.dns}"
metrics_listen = "{self.net(3, 1)}:19153"
health_interval = "500ms"
health_timeout = "300ms"
zones = [
  {{ origin = "netcinema.test", records = ["video 300 IN CNAME video.kingcdn.test."] }},
  {{ origin = "kingcdn.test" }},
]

[tracker]
listen = "{self.net(4, 1)}:16969"
interval = "5s"
min_interval = "1s"
"""
