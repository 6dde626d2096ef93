"""What an emulated network looks like, and the ``ip``/``tc`` commands that build it.

Sans-IO: a :class:`NetworkLayout` is plain data (a name prefix, a private
subnet, one :class:`NodeLink` per node) and this module only *computes*:
names, addresses and command lines. :mod:`seedcast.launcher.netns` runs them.

The network: one Linux bridge ``<prefix>-br`` in the host namespace, and per
node a network namespace ``<prefix>-<node>`` joined to it by a veth pair
(``<prefix>-<k>`` on the bridge, ``eth0`` inside). Each node's addresses sit
on its ``eth0`` with the subnet's prefix length, the first one primary (the
source of the node's own connections and DNS queries). The bridge has no
address: the host is not on this network, so nothing outside the namespaces
is ever reachable from them, nor they from it.

Shaping is a token bucket filter (``tc ... tbf``) on each side of a node's
veth: the node side's egress is its upload, the bridge side's egress its
download. Rates are payload rates (what a token bucket in Seedcast counts);
tbf counts frames, so the wire rate is raised by the Ethernet, IP and TCP
header overhead of a full-sized segment (``(mtu + 14) / (mtu - 52)``) and a
bulk TCP transfer's goodput lands on the configured rate.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seedcast.errors import ConfigError

LAYOUT_FORMAT = 1
IFNAME_MAX = 15
"""Linux interface names are at most 15 bytes."""
NODE_INTERFACE = "eth0"
ETHERNET_HEADER = 14
TCP_IP_HEADERS = 52
"""IPv4 (20) + TCP (20) + the timestamp option (12) Linux always sends."""
BURST_SECONDS = 0.01
MIN_BURST = 16 * 1024
QUEUE_LATENCY = "100ms"

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,8}$")
_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

Command = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeLink:
    """One node: its namespace gets ``addresses`` and is shaped to these rates (bytes/s)."""

    name: str
    addresses: tuple[str, ...]
    upload: float = 0.0
    """Payload bytes/s the node may send; 0 = not shaped."""
    download: float = 0.0
    """Payload bytes/s the node may receive; 0 = not shaped."""

    def __post_init__(self) -> None:
        if not _NODE_NAME.match(self.name):
            raise ConfigError(
                f"netns node {self.name!r}: use 1-40 of a-z, 0-9, '-', '_' (a letter or digit first)"
            )
        if not self.addresses:
            raise ConfigError(f"netns node {self.name!r}: has no address")
        if self.upload < 0 or self.download < 0:
            raise ConfigError(f"netns node {self.name!r}: rates must not be negative")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "upload": self.upload,
            "download": self.download,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeLink:
        return cls(
            name=str(data["name"]),
            addresses=tuple(str(address) for address in data["addresses"]),
            upload=float(data.get("upload", 0.0)),
            download=float(data.get("download", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    """A bridge, one namespace + veth per node, addresses in ``subnet``; see the module doc."""

    prefix: str
    subnet: str
    nodes: tuple[NodeLink, ...]
    nameserver: str = ""
    """Address written to each namespace's resolv.conf; empty = none written."""
    mtu: int = 1500

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ConfigError(
                f"netns prefix {self.prefix!r}: use 1-9 of a-z, 0-9, starting with a letter"
            )
        try:
            network = ipaddress.IPv4Network(self.subnet)
        except ValueError:
            raise ConfigError(f"netns subnet {self.subnet!r}: not an IPv4 prefix") from None
        if not network.is_private or network.is_loopback:
            raise ConfigError(f"netns subnet {self.subnet}: must be a private range, not loopback")
        if not 576 <= self.mtu <= 65535:
            raise ConfigError(f"netns mtu {self.mtu}: use 576 to 65535")
        if len(self.link_name(len(self.nodes))) > IFNAME_MAX:
            raise ConfigError(f"netns prefix {self.prefix!r}: too long for {len(self.nodes)} nodes")
        owners: dict[str, str] = {}
        names: set[str] = set()
        for node in self.nodes:
            if node.name in names:
                raise ConfigError(f"netns node {node.name!r}: listed twice")
            names.add(node.name)
            for address in node.addresses:
                try:
                    parsed = ipaddress.IPv4Address(address)
                except ValueError:
                    raise ConfigError(
                        f"netns node {node.name!r}: {address!r} is not an IPv4 address"
                    ) from None
                if (
                    parsed not in network
                    or parsed == network.network_address
                    or parsed == network.broadcast_address
                ):
                    raise ConfigError(
                        f"netns node {node.name!r}: {address} is not a host address of {network}"
                    )
                if address in owners and owners[address] != node.name:
                    raise ConfigError(
                        f"netns: {owners[address]} and {node.name} both use {address}; "
                        "each node needs addresses of its own"
                    )
                owners[address] = node.name
        if self.nameserver:
            try:
                ipaddress.IPv4Address(self.nameserver)
            except ValueError:
                raise ConfigError(f"netns nameserver {self.nameserver!r}: not an address") from None

    # -- names ---------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def prefix_length(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    def namespace(self, node: str) -> str:
        """The network namespace of ``node`` (``ip netns exec <this> ...``)."""
        self.node(node)
        return f"{self.prefix}-{node}"

    def link_name(self, position: int) -> str:
        """Bridge-side veth of the node at 1-based ``position``."""
        return f"{self.prefix}-{position}"

    def host_link(self, node: str) -> str:
        for position, entry in enumerate(self.nodes, start=1):
            if entry.name == node:
                return self.link_name(position)
        raise KeyError(node)

    def node(self, name: str) -> NodeLink:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        known = ", ".join(entry.name for entry in self.nodes)
        raise KeyError(f"no netns node {name!r} (known: {known})")

    def namespaces(self) -> list[str]:
        return [f"{self.prefix}-{node.name}" for node in self.nodes]

    def links(self) -> list[str]:
        return [self.link_name(position) for position in range(1, len(self.nodes) + 1)]

    def owns(self, name: str) -> bool:
        """True for a namespace or interface name this layout's prefix marks as ours."""
        return name.startswith(f"{self.prefix}-")

    def exec_prefix(self, node: str, ip_binary: str = "ip") -> tuple[str, ...]:
        """Prepend this to a command line to run it inside ``node``'s namespace."""
        return (ip_binary, "netns", "exec", self.namespace(node))

    def resolv_conf(self) -> str:
        return (
            "# written by seedcast up --netns: the cluster's own DNS\n"
            f"nameserver {self.nameserver}\noptions timeout:1 attempts:2\n"
        )

    # -- commands ------------------------------------------------------------

    def setup_commands(self) -> list[Command]:
        """``ip``/``tc`` argv lists (without the binary) that build the network, in order."""
        commands: list[Command] = [("ip", "netns", "add", name) for name in self.namespaces()]
        commands.append(("ip", "link", "add", self.bridge, "type", "bridge"))
        commands.append(("ip", "link", "set", self.bridge, "up"))
        length = str(self.prefix_length)
        for position, node in enumerate(self.nodes, start=1):
            namespace = f"{self.prefix}-{node.name}"
            host_link = self.link_name(position)
            commands += [
                (
                    *("ip", "link", "add", host_link, "mtu", str(self.mtu), "type", "veth"),
                    *("peer", "name", NODE_INTERFACE, "netns", namespace),
                ),
                ("ip", "link", "set", host_link, "master", self.bridge),
                ("ip", "link", "set", host_link, "up"),
                ("ip", "-n", namespace, "link", "set", "lo", "up"),
            ]
            for address in node.addresses:
                add = ("ip", "-n", namespace, "addr", "add", f"{address}/{length}")
                commands.append((*add, "dev", NODE_INTERFACE))
            commands.append(("ip", "-n", namespace, "link", "set", NODE_INTERFACE, "up"))
            commands += self.shaping_commands(
                node.name, node.upload, node.download, remove_unshaped=False
            )
        return commands

    def shaping_commands(
        self, node: str, upload: float, download: float, *, remove_unshaped: bool = True
    ) -> list[Command]:
        """Set ``node``'s upload and download shaping; a rate of 0 removes it (``tc ... del``
        fails harmlessly when there was none)."""
        namespace = self.namespace(node)
        host_link = self.host_link(node)
        commands: list[Command] = []
        for rate, where in (
            (upload, ("tc", "-n", namespace, "qdisc")),
            (download, ("tc", "qdisc")),
        ):
            device = NODE_INTERFACE if "-n" in where else host_link
            if rate > 0:
                commands.append(
                    (*where, "replace", "dev", device, "root", *tbf_arguments(rate, self.mtu))
                )
            elif remove_unshaped:
                commands.append((*where, "del", "dev", device, "root"))
        return commands

    def teardown_commands(self) -> list[Command]:
        """Deleting a veth deletes both ends and their qdiscs; then the bridge, the namespaces."""
        commands: list[Command] = [("ip", "link", "del", link) for link in self.links()]
        commands.append(("ip", "link", "del", self.bridge))
        commands += [("ip", "netns", "del", name) for name in self.namespaces()]
        return commands

    # -- persistence ---------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LAYOUT_FORMAT,
            "prefix": self.prefix,
            "subnet": self.subnet,
            "nameserver": self.nameserver,
            "mtu": self.mtu,
            "nodes": [node.to_json() for node in self.nodes],
        }

    @classmethod
    def from_json(cls, data: Any) -> NetworkLayout:
        """Read back :meth:`to_json`; raises ValueError on anything else."""
        if not isinstance(data, Mapping) or data.get("format") != LAYOUT_FORMAT:
            raise ValueError("not a seedcast netns layout")
        try:
            return cls(
                prefix=str(data["prefix"]),
                subnet=str(data["subnet"]),
                nodes=tuple(NodeLink.from_json(node) for node in data["nodes"]),
                nameserver=str(data.get("nameserver", "")),
                mtu=int(data.get("mtu", 1500)),
            )
        except (KeyError, TypeError, ConfigError) as error:
            raise ValueError(f"bad netns layout: {error}") from None


def wire_rate(payload_rate: float, mtu: int = 1500) -> float:
    """Frame bytes/s that carry ``payload_rate`` bytes/s of full-sized TCP segments."""
    return payload_rate * (mtu + ETHERNET_HEADER) / (mtu - TCP_IP_HEADERS)


def tbf_arguments(payload_rate: float, mtu: int = 1500) -> list[str]:
    """``tbf rate ... burst ... latency ...`` for a payload rate in bytes/s."""
    rate = wire_rate(payload_rate, mtu)
    burst = max(int(rate * BURST_SECONDS), MIN_BURST, 2 * (mtu + ETHERNET_HEADER))
    bits = f"{max(1, round(rate * 8))}bit"
    return ["tbf", "rate", bits, "burst", str(burst), "latency", QUEUE_LATENCY]
