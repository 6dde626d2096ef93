"""Zone data: the config's [dns] zones and RFC 1035 master files, parsed by dnspython.

Each :class:`ZoneConfig` becomes one :class:`Zone`: its master file (if any) and
its ``records`` lines are joined under ``$ORIGIN <apex>`` / ``$TTL 300`` and
handed to :func:`dns.zone.from_text`. Configs naming the same apex are merged.
A zone without an SOA or NS at its apex gets synthesized ones
(``ns1.<apex>`` with the nameserver's own address as glue), so a three-line
config is still a zone real resolvers accept.

Lookups are plain dictionary walks over absolute :class:`dns.name.Name` keys:
:meth:`ZoneSet.find` picks the zone with the longest matching apex,
:meth:`Zone.lookup` finds a node, an empty non-terminal (so NODATA, not
NXDOMAIN) or a ``*`` wildcard at the closest encloser (RFC 4592, simplified:
no delegations inside a zone).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import dns.exception
import dns.name
import dns.node
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from seedcast.config import ZoneConfig
from seedcast.errors import ConfigError

DEFAULT_TTL = 300
_ORIGIN_DIRECTIVE = re.compile(r"^\$ORIGIN\s+(\S+)", re.MULTILINE | re.IGNORECASE)


class Found(IntEnum):
    NODE = 0
    """The name exists with data (``node`` is set)."""
    WILDCARD = 1
    """Synthesized from ``*.<closest encloser>`` (``node`` is the wildcard's node)."""
    EMPTY = 2
    """An empty non-terminal: the name exists but owns nothing (NODATA)."""
    MISSING = 3
    """No such name (NXDOMAIN)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    found: Found
    node: dns.node.Node | None = None


@dataclass(frozen=True, slots=True)
class Zone:
    apex: dns.name.Name
    data: dns.zone.Zone
    soa: dns.rrset.RRset
    """The apex SOA with its TTL lowered to the negative-caching TTL (RFC 2308 section 5)."""
    names: frozenset[dns.name.Name]
    """Every name that exists: owners of data and the empty non-terminals above them."""

    def lookup(self, name: dns.name.Name) -> Lookup:
        node = self.data.nodes.get(name)
        if node is not None:
            return Lookup(Found.NODE, node)
        if name in self.names:
            return Lookup(Found.EMPTY)
        encloser = name.parent()
        while encloser not in self.names and encloser != self.apex and len(encloser) > 1:
            encloser = encloser.parent()
        wildcard = self.data.nodes.get(dns.name.Name((b"*", *encloser.labels)))
        if wildcard is not None:
            return Lookup(Found.WILDCARD, wildcard)
        return Lookup(Found.MISSING)

    def rrset(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """The records of ``rdtype`` at ``name`` (wildcards included), owned by ``name``."""
        found = self.lookup(name)
        if found.node is None:
            return None
        rdataset = found.node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype))
        if rdataset is None:
            return None
        return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


class ZoneSet:
    """Our zones by apex; :meth:`find` answers "whose is this name?"."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self.zones: dict[dns.name.Name, Zone] = {zone.apex: zone for zone in zones}

    def find(self, name: dns.name.Name) -> Zone | None:
        while True:
            zone = self.zones.get(name)
            if zone is not None:
                return zone
            if len(name) <= 1:
                return None
            name = name.parent()

    def __iter__(self) -> Iterator[Zone]:
        return iter(self.zones.values())

    def __len__(self) -> int:
        return len(self.zones)


def load_zones(
    configs: Sequence[ZoneConfig], *, nameserver_address: str, base_dir: Path | None = None
) -> ZoneSet:
    """Parse every zone; raises ConfigError naming the zone and the problem."""
    merged: dict[dns.name.Name, list[ZoneConfig]] = {}
    for config in configs:
        try:
            apex = dns.name.from_text(config.origin)
        except dns.exception.DNSException as error:
            raise ConfigError(f"dns.zones: bad zone origin {config.origin!r}: {error}") from None
        merged.setdefault(apex, []).append(config)
    return ZoneSet(
        _load_zone(apex, parts, nameserver_address=nameserver_address, base_dir=base_dir)
        for apex, parts in merged.items()
    )


def zone_config_from_file(path: str | Path) -> ZoneConfig:
    """A ZoneConfig for a master file; the apex is its ``$ORIGIN`` or else its file name.

    ``kingcdn.test.zone`` without ``$ORIGIN`` is the zone ``kingcdn.test``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read zone file: {error.strerror}") from None
    match = _ORIGIN_DIRECTIVE.search(text)
    origin = match.group(1) if match else path.name.removesuffix(".zone").removesuffix(".db")
    return ZoneConfig(origin=origin.rstrip(".") or ".", file=str(path))


def _load_zone(
    apex: dns.name.Name,
    parts: Sequence[ZoneConfig],
    *,
    nameserver_address: str,
    base_dir: Path | None,
) -> Zone:
    where = f"dns.zones[{apex.to_text(omit_final_dot=True)}]"
    body: list[str] = []
    for part in parts:
        if part.file:
            path = Path(part.file)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            try:
                body.append(path.read_text(encoding="utf-8"))
            except OSError as error:
                raise ConfigError(f"{where}.file: cannot read {path}: {error.strerror}") from None
            body.append(f"$ORIGIN {apex.to_text()}")
        body.extend(part.records)
    head = [f"$ORIGIN {apex.to_text()}", f"$TTL {DEFAULT_TTL}"]
    zone = _parse(apex, head + body, where, check_origin=False)
    synthesized = _synthesize_apex(zone, apex, nameserver_address)
    if synthesized:
        zone = _parse(apex, head + synthesized + body, where, check_origin=True)
    soa_rdataset = zone.nodes[apex].get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    assert soa_rdataset is not None
    minimum: int = soa_rdataset[0].minimum
    soa = dns.rrset.from_rdata_list(apex, min(soa_rdataset.ttl, minimum), list(soa_rdataset))
    names: set[dns.name.Name] = set()
    for owner in zone.nodes:
        name = owner
        while name not in names:
            names.add(name)
            if name == apex:
                break
            name = name.parent()
    return Zone(apex=apex, data=zone, soa=soa, names=frozenset(names))


def _parse(
    apex: dns.name.Name, lines: list[str], where: str, *, check_origin: bool
) -> dns.zone.Zone:
    try:
        return dns.zone.from_text(
            "\n".join(lines) + "\n",
            origin=apex,
            relativize=False,
            check_origin=check_origin,
            allow_include=False,
        )
    except dns.zone.NoSOA:
        raise ConfigError(f"{where}: no SOA record at the apex") from None
    except dns.zone.NoNS:
        raise ConfigError(f"{where}: no NS record at the apex") from None
    except (dns.exception.DNSException, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def _synthesize_apex(
    zone: dns.zone.Zone, apex: dns.name.Name, nameserver_address: str
) -> list[str]:
    node = zone.nodes.get(apex)
    has_soa = node is not None and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    has_ns = node is not None and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    lines: list[str] = []
    if not has_soa:
        lines.append("@ 3600 IN SOA ns1 hostmaster 1 3600 600 86400 60")
    if not has_ns:
        lines.append("@ 3600 IN NS ns1")
        glue_name = dns.name.Name((b"ns1", *apex.labels))
        if glue_name not in zone.nodes:
            kind = "A" if ipaddress.ip_address(nameserver_address).version == 4 else "AAAA"
            lines.append(f"ns1 3600 IN {kind} {nameserver_address}")
    return lines
