"""A cluster config that exercises every nameserver feature, for tests and experiments.

Three regions (eu, us, asia) with a latency table, four IPv4 edges and one
IPv6 edge, the two textbook zones with MX/TXT/glue, a CNAME chain, a CNAME
loop, a CNAME out of our zones, an empty non-terminal, a zone wildcard, a TXT
too big for 512 bytes, and a steered name per policy.
"""

from __future__ import annotations

from typing import Any

from seedcast.config import ClusterConfig, config_from_mapping

BIG_TXT = " ".join(f'"{index:02d}-' + "x" * 90 + '"' for index in range(10))


def example_mapping(**dns_overrides: Any) -> dict[str, Any]:
    dns: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
        "zones": [
            {
                "origin": "netcinema.test",
                "records": [
                    "video 300 IN CNAME video.kingcdn.test.",
                    "www 300 IN A 127.0.10.1",
                    "@ 300 IN MX 10 mail",
                    "mail 300 IN A 127.0.10.25",
                    '@ 300 IN TXT "v=seedcast"',
                    f"big 300 IN TXT {BIG_TXT}",
                    "loop1 300 IN CNAME loop2",
                    "loop2 300 IN CNAME loop1",
                    "away 300 IN CNAME www.example.org.",
                    "a.b.deep 300 IN A 127.0.10.9",
                    "*.wild 300 IN A 127.0.10.7",
                    "chain1 300 IN CNAME chain2",
                    "chain2 300 IN CNAME video",
                ],
            },
            {"origin": "kingcdn.test"},
        ],
        "names": [
            {"name": "video.kingcdn.test", "policy": "geo"},
            {"name": "*.video.kingcdn.test", "policy": "consistent-hash"},
            {"name": "rr.kingcdn.test", "policy": "round-robin", "answers": 2},
            {"name": "ll.kingcdn.test", "policy": "least-loaded"},
            {"name": "many.kingcdn.test", "policy": "round-robin", "answers": 3, "ttl": 5},
        ],
        "health_interval": 0,
    }
    dns.update(dns_overrides)
    return {
        "regions": [
            {"name": "eu", "viewer_prefix": "127.0.41.0/24", "latency_ms": {"us": 40, "asia": 120}},
            {"name": "us", "viewer_prefix": "127.0.42.0/24", "latency_ms": {"eu": 40, "asia": 90}},
            {"name": "asia", "viewer_prefix": "127.0.43.0/24", "latency_ms": {"us": 90}},
        ],
        "edges": [
            {"name": "edge-1", "region": "eu", "listen": "127.0.20.1:8080"},
            {"name": "edge-2", "region": "us", "listen": "127.0.20.2:8080"},
            {"name": "edge-3", "region": "eu", "listen": "127.0.20.3:8080"},
            {"name": "edge-4", "region": "asia", "listen": "127.0.20.4:8080"},
            {"name": "edge-6", "region": "us", "listen": "[::1]:8080"},
        ],
        "dns": dns,
    }


def example_config(**dns_overrides: Any) -> ClusterConfig:
    """The example cluster; keyword arguments replace keys of its [dns] table."""
    return config_from_mapping(example_mapping(**dns_overrides), source="<example>")
