"""A cluster config moved from loopback addresses into a network-namespace subnet.

Pure functions. On one machine every node has a loopback address in
127.0.0.0/16; with ``--netns`` each node lives in its own namespace and gets
the same host part in a private /16 instead: 127.0.X.Y becomes 10.77.X.Y
(for the default subnet). Everything that names an address moves with it,
so DNS answers, tracker peer lists and edge lists carry namespace addresses:
listen addresses, public URLs whose host is an address, the regions' viewer
prefixes, the peers' prefix, and addresses inside the zones' records. The
DNS answers on port 53, where the libc resolver of curl, ffmpeg or mpv
sends its queries. A public URL that names a host (``http://origin:8080``)
is refused: inside the namespaces only the Seedcast DNS resolves names.

Nodes (:func:`cluster_nodes`): origin, dns, tracker, each edge, the seeding
peer ``seed``, ``viewer-1..N`` (peers.count; the namespaces exist even when
the viewer agent is not built, for players run with ``ip netns exec``) and
``prometheus`` when asked. ``viewer-k``'s first (primary) address is its
region's ``viewer_address(k)`` (what the agent binds for CDN and DNS
traffic), so its DNS queries, curl's included, come from its region; the
second is its peer address.

Shaping modes: ``tc`` moves the configured caps (edges' upload, peers'
upload/download) onto the links and zeroes Seedcast's token buckets;
``buckets`` leaves the caps to the token buckets; ``both`` keeps both.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from seedcast.config import ClusterConfig, ZoneConfig
from seedcast.errors import ConfigError
from seedcast.launcher._netns_layout import NetworkLayout, NodeLink
from seedcast.units import parse_host_port

DEFAULT_SUBNET = "10.77.0.0/16"
LOOPBACK_BLOCK = ipaddress.IPv4Network("127.0.0.0/16")
DNS_PORT = 53
_LOOPBACK_TOKEN = re.compile(r"(?<![\d.])127\.0\.(\d{1,3})\.(\d{1,3})(?![\d.])")


class Shaping(enum.StrEnum):
    TC = "tc"
    BUCKETS = "buckets"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class AddressMap:
    """127.0.X.Y -> the same host part in ``subnet`` (a /16 or larger)."""

    subnet: str = DEFAULT_SUBNET

    def __post_init__(self) -> None:
        network = ipaddress.IPv4Network(self.subnet)
        if network.prefixlen > LOOPBACK_BLOCK.prefixlen:
            raise ConfigError(f"netns subnet {self.subnet}: must be a /16 or larger")

    def address(self, host: str, what: str) -> str:
        try:
            parsed = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ConfigError(
                f"{what}: {host!r} is a name; with --netns use an address in 127.0.0.0/16 "
                "(or leave it empty)"
            ) from None
        if parsed not in LOOPBACK_BLOCK:
            raise ConfigError(
                f"{what}: {host} is outside 127.0.0.0/16; --netns moves 127.0.X.Y to "
                f"{self.base_text()}X.Y, so give each node an address in 127.0.0.0/16"
            )
        offset = int(parsed) - int(LOOPBACK_BLOCK.network_address)
        return str(ipaddress.IPv4Network(self.subnet).network_address + offset)

    def base_text(self) -> str:
        return (
            ".".join(str(ipaddress.IPv4Network(self.subnet).network_address).split(".")[:2]) + "."
        )

    def host_port(self, text: str, what: str, port: int | None = None) -> str:
        host, old_port = parse_host_port(text)
        return f"{self.address(host, what)}:{old_port if port is None else port}"

    def url(self, text: str, what: str) -> str:
        """``text`` with its host moved; empty stays empty."""
        if not text:
            return text
        parts = urllib.parse.urlsplit(text)
        if parts.hostname is None:
            raise ConfigError(f"{what}: {text!r} is not a URL")
        moved = self.address(parts.hostname, what)
        netloc = moved if parts.port is None else f"{moved}:{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def prefix(self, text: str, what: str) -> str:
        network = ipaddress.IPv4Network(text, strict=False)
        if not network.subnet_of(LOOPBACK_BLOCK):
            raise ConfigError(f"{what}: {text} is outside 127.0.0.0/16 (needed with --netns)")
        moved = self.address(str(network.network_address), what)
        return f"{moved}/{network.prefixlen}"

    def text(self, line: str) -> str:
        """Every 127.0.X.Y inside ``line`` (a zone record) moved."""
        return _LOOPBACK_TOKEN.sub(lambda match: self.address(match.group(0), "dns.zones"), line)


def netns_config(
    config: ClusterConfig, subnet: str = DEFAULT_SUBNET, *, shaping: Shaping = Shaping.TC
) -> ClusterConfig:
    """``config`` with every address moved into ``subnet``; see the module doc."""
    moved = AddressMap(subnet)
    replace = dataclasses.replace
    zero_caps = shaping is Shaping.TC
    if config.netem.enabled:
        raise ConfigError(
            "netem.enabled: emulated paths (seedcast netem relays) work in the loopback "
            "mode only; --netns does not place the relays yet"
        )
    regions = tuple(
        replace(
            region,
            viewer_prefix=moved.prefix(region.viewer_prefix, f"regions[{index}].viewer_prefix"),
        )
        for index, region in enumerate(config.regions)
    )
    origin = replace(
        config.origin,
        listen=moved.host_port(config.origin.listen, "origin.listen"),
        public_url=moved.url(config.origin.public_url, "origin.public_url"),
    )
    edges = tuple(
        replace(
            edge,
            listen=moved.host_port(edge.listen, f"edges[{index}].listen"),
            public_url=moved.url(edge.public_url, f"edges[{index}].public_url"),
            parent=moved.url(edge.parent, f"edges[{index}].parent"),
            upload=0.0 if zero_caps else edge.upload,
        )
        for index, edge in enumerate(config.edges)
    )
    dns = replace(
        config.dns,
        listen=moved.host_port(config.dns.listen, "dns.listen", DNS_PORT),
        metrics_listen=moved.host_port(config.dns.metrics_listen, "dns.metrics_listen"),
        public_address="",
        zones=tuple(
            ZoneConfig(
                origin=zone.origin,
                file=zone.file,
                records=tuple(moved.text(record) for record in zone.records),
            )
            for zone in config.dns.zones
        ),
    )
    if config.dns.public_address:
        moved.host_port(config.dns.public_address, "dns.public_address")  # refuse names
    tracker = replace(
        config.tracker,
        listen=moved.host_port(config.tracker.listen, "tracker.listen"),
        public_url=moved.url(config.tracker.public_url, "tracker.public_url"),
    )
    peers = replace(
        config.peers,
        listen_prefix=moved.prefix(config.peers.listen_prefix, "peers.listen_prefix"),
        upload=0.0 if zero_caps else config.peers.upload,
        download=0.0 if zero_caps else config.peers.download,
    )
    prometheus = replace(
        config.prometheus,
        listen=moved.host_port(config.prometheus.listen, "prometheus.listen"),
    )
    netem = replace(
        config.netem,
        relay_prefix=moved.prefix(config.netem.relay_prefix, "netem.relay_prefix"),
        listen=moved.host_port(config.netem.listen, "netem.listen"),
    )
    return replace(
        config,
        regions=regions,
        origin=origin,
        edges=edges,
        dns=dns,
        tracker=tracker,
        peers=peers,
        prometheus=prometheus,
        netem=netem,
    )


def viewer_regions(config: ClusterConfig) -> list[str]:
    """Region of each viewer 1..peers.count, as the launcher's plan spreads them."""
    regions = config.peers.regions or tuple(region.name for region in config.regions)
    count = config.peers.count
    return [regions[(index - 1) % len(regions)] if regions else "" for index in range(1, count + 1)]


def cluster_nodes(
    original: ClusterConfig,
    moved: ClusterConfig,
    *,
    shaping: Shaping = Shaping.TC,
    prometheus: bool = False,
) -> tuple[NodeLink, ...]:
    """One node per process of the cluster (see the module doc), addresses from ``moved``."""
    shaped = shaping is not Shaping.BUCKETS

    def host(address: str) -> str:
        return parse_host_port(address)[0]

    def unique(*hosts: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(hosts))

    nodes = [
        NodeLink("origin", (host(moved.origin.listen),)),
        NodeLink("dns", unique(host(moved.dns.listen), host(moved.dns.metrics_listen))),
        NodeLink("tracker", (host(moved.tracker.listen),)),
    ]
    for edge, original_edge in zip(moved.edges, original.edges, strict=True):
        nodes.append(
            NodeLink(
                edge.name, (host(edge.listen),), upload=original_edge.upload if shaped else 0.0
            )
        )
    peer_upload = original.peers.upload if shaped else 0.0
    peer_download = original.peers.download if shaped else 0.0
    nodes.append(NodeLink("seed", (moved.peers.peer_address(1),), peer_upload, peer_download))
    for index, region_name in enumerate(viewer_regions(moved), start=1):
        addresses = [moved.peers.peer_address(index + 1)]
        if region_name:  # the agent's convention: viewer-k -> k-th address of its region
            addresses.insert(0, moved.region(region_name).viewer_address(index))
        nodes.append(NodeLink(f"viewer-{index}", tuple(addresses), peer_upload, peer_download))
    if prometheus:
        nodes.append(NodeLink("prometheus", (host(moved.prometheus.listen),)))
    return tuple(nodes)


def cluster_layout(
    config: ClusterConfig,
    prefix: str,
    *,
    subnet: str = DEFAULT_SUBNET,
    shaping: Shaping = Shaping.TC,
    prometheus: bool = False,
) -> tuple[ClusterConfig, NetworkLayout]:
    """The moved config and the network that runs it (nameserver: the DNS's address)."""
    moved = netns_config(config, subnet, shaping=shaping)
    layout = NetworkLayout(
        prefix=prefix,
        subnet=subnet,
        nodes=cluster_nodes(config, moved, shaping=shaping, prometheus=prometheus),
        nameserver=parse_host_port(moved.dns.listen)[0],
    )
    return moved, layout
