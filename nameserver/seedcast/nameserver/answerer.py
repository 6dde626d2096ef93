"""The authoritative answering core: query bytes in, response bytes (or silence) out.

How it works. :meth:`Answerer.answer` takes one DNS message as bytes, the
client's address, the transport and ``now``, and returns the response bytes,
or None when the right answer is silence (a packet shorter than a header, a
response rather than a query, a rate-limited drop). It never raises for what
a peer sends.

The slow path does everything with dnspython: parse
(:func:`dns.message.from_wire`; any parse failure is FORMERR), check the
opcode (NOTIMP), question count (FORMERR), EDNS version (BADVERS), class and
meta types (REFUSED / FORMERR / NOTIMP), then resolve the name through our
zones: REFUSED outside them, CNAME chains followed across our zones, steered
names answered by :class:`~seedcast.nameserver.policies.Steering`,
NXDOMAIN / NODATA with the zone's SOA for negative caching. A steered name
also answers HTTPS queries (RFC 9460): one ServiceMode record per port among
the selected servers, ``port=`` and ``ipv4hint``/``ipv6hint`` naming them, so a
client given ``http://video.netcinema.test/...`` learns the edge's port the way
browsers learn alternative endpoints (see :meth:`StubResolver.resolve_endpoint`).
It sets AA
(never RA), echoes OPT (our payload size, the DO bit) and EDNS Client Subnet
with the SCOPE the decision needs, and renders at most what the query
allows on UDP (512 bytes without EDNS), else an empty answer with TC.

The fast path skips dnspython for the common case. :func:`_prescan` checks
that a packet is a plain query with one uncompressed question and at most an
OPT record whose only option is ECS. The answer then depends only on the
lower-cased question, the RD/CD bits, the OPT record, the transport and, for
steered names, the :class:`Selection`, which is computed per query exactly as
the slow path would. Those parts key a cache of rendered responses; a hit is
copied with the query's ID and the query's question bytes (so the case the
client sent comes back) patched in. Anything unusual takes the slow path.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from seedcast.config import ClusterConfig, SteeredName
from seedcast.errors import ConfigError
from seedcast.nameserver.health import HealthTracker
from seedcast.nameserver.policies import Locator, Selection, Steering
from seedcast.nameserver.rate_limit import RateDecision, ResponseRateLimiter
from seedcast.nameserver.statistics import (
    AnswererStatistics,
    Counters,
    qtype_label,
    rcode_label,
)
from seedcast.nameserver.zones import Found, Zone, ZoneSet, load_zones
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.dns")

MAX_CHAIN = 8
"""CNAME hops followed inside our zones before answering with the chain so far."""
CLASSIC_UDP_SIZE = 512
TCP_MAX_SIZE = 65535
_ECS = 8
_OPT = 41
_REFUSED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})


class Transport(IntEnum):
    UDP = 0
    TCP = 1


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a question resolves to, independent of the client: static data or a steered set."""

    steered: SteeredName | None = None
    owner: str = ""
    """Lower-case name (no final dot) the steered set is owned by; the hash key."""
    version: int = 4


_STATIC = _Plan()


@dataclass(frozen=True, slots=True)
class _Entry:
    wire: bytes
    qtype: str
    rcode: str
    answers: tuple[tuple[str, str], ...]
    truncated: bool


@dataclass(slots=True)
class _Resolution:
    rcode: int = dns.rcode.NOERROR
    authoritative: bool = True
    answer: list[dns.rrset.RRset] | None = None
    authority: list[dns.rrset.RRset] | None = None
    additional: list[dns.rrset.RRset] | None = None
    plan: _Plan = _STATIC
    selection: Selection | None = None


_Scan = tuple[int, int, bytes, bytes | None]


def _prescan(wire: bytes) -> _Scan | None:
    """(end of qname, end of question, OPT record bytes, ECS option data) for plain queries.

    None means "take the slow path": anything but QR=0/opcode QUERY, exactly one
    question with an uncompressed name, no answer/authority records, and at most
    one OPT record (version 0) carrying nothing but a well-formed ECS option.
    """
    size = len(wire)
    if size < 17 or wire[2] & 0xF8 or wire[4:11] != b"\x00\x01\x00\x00\x00\x00\x00":
        return None
    additional = wire[11]
    if additional > 1:
        return None
    position = 12
    while True:
        if position >= size:
            return None
        length = wire[position]
        if length == 0:
            break
        if length > 63:
            return None
        position += length + 1
    qname_end = position + 1
    question_end = qname_end + 4
    if question_end > size or qname_end - 12 > 255:
        return None
    if not additional:
        return (qname_end, question_end, b"", None) if question_end == size else None
    opt = wire[question_end:]
    if len(opt) < 11 or opt[0:3] != b"\x00\x00\x29" or opt[6] != 0:
        return None
    if len(opt) != 11 + (opt[9] << 8 | opt[10]):
        return None
    ecs: bytes | None = None
    position = 11
    while position < len(opt):
        if position + 4 > len(opt):
            return None
        code = opt[position] << 8 | opt[position + 1]
        length = opt[position + 2] << 8 | opt[position + 3]
        data = opt[position + 4 : position + 4 + length]
        if code != _ECS or ecs is not None or len(data) != length or not _ecs_valid(data):
            return None
        ecs = data
        position += 4 + length
    return (qname_end, question_end, opt, ecs)


def _ecs_valid(data: bytes) -> bool:
    if len(data) < 4:
        return False
    family = data[0] << 8 | data[1]
    source = data[2]
    address = data[4:]
    if family == 1:
        width = 32
    elif family == 2:
        width = 128
    else:
        return False
    if source > width or len(address) != (source + 7) // 8:
        return False
    spare = -source % 8
    return not (address and spare and address[-1] & ((1 << spare) - 1))


_BY_REGION = frozenset({"geo", "latency"})
"""Policies that answer by the client's region (source address or client subnet)."""


class Answerer:
    """Answers queries for the config's zones; see the module docstring.

    ``rng`` drives the least-loaded policy; ``health`` is shared with the
    prober (a fresh tracker is made when omitted). Raises ConfigError when a
    zone does not parse or a steered name is outside every zone.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        rng: random.Random,
        health: HealthTracker | None = None,
        zones: ZoneSet | None = None,
        base_dir: Path | None = None,
    ) -> None:
        settings = config.dns
        listen_host, _ = parse_host_port(settings.listen)
        if base_dir is None and Path(config.source).is_file():
            base_dir = Path(config.source).parent  # zone files are relative to the config
        self.zones = zones or load_zones(
            settings.zones, nameserver_address=listen_host, base_dir=base_dir
        )
        if health is None:
            try:
                health = HealthTracker(
                    [edge.name for edge in config.edges],
                    window=settings.health_window,
                    threshold=settings.health_threshold,
                )
            except ValueError as error:
                raise ConfigError(f"{config.source}: dns.health_threshold: {error}") from None
        self.health = health
        self.steering = Steering.from_config(config, self.health)
        self.locator = Locator(config.regions)
        self.rng = rng
        self.udp_payload = max(CLASSIC_UDP_SIZE, min(settings.udp_payload, TCP_MAX_SIZE))
        self.rate_limiter = (
            ResponseRateLimiter(
                settings.rate_limit,
                slip=settings.rate_limit_slip,
                max_clients=max(1, settings.rate_limit_clients),
            )
            if settings.rate_limit > 0
            else None
        )
        self._exact: dict[dns.name.Name, SteeredName] = {}
        self._wildcards: dict[dns.name.Name, SteeredName] = {}
        for index, steered in enumerate(settings.names):
            try:
                name = dns.name.from_text(steered.name)
            except dns.exception.DNSException as error:
                raise ConfigError(f"dns.names[{index}].name: {error}") from None
            if name.labels[0] == b"*":
                name = name.parent()
                self._wildcards[name] = steered
            else:
                self._exact[name] = steered
            if self.zones.find(name) is None:
                raise ConfigError(
                    f"dns.names[{index}].name: {steered.name!r} is in none of our zones"
                )
        self._ports = _service_ports(config)
        self._cache_limit = max(0, settings.answer_cache)
        self._plans: dict[bytes, _Plan] = {}
        self._rendered: dict[tuple[Any, ...], _Entry] = {}
        self.counters = Counters()
        self._malformed_logged = False

    # -- the hot path -------------------------------------------------------

    def answer(self, wire: bytes, client: str, transport: Transport, now: float) -> bytes | None:
        """The response to ``wire`` from ``client``, or None for silence. Never raises."""
        scan = _prescan(wire)
        if scan is None:
            return self._slow(wire, client, transport, now, None)
        qname_end, question_end, opt, ecs = scan
        question = wire[12:qname_end].lower() + wire[qname_end:question_end]
        plan = self._plans.get(question)
        if plan is None:
            return self._slow(wire, client, transport, now, scan)
        selection = None
        if plan.steered is not None:
            selection = self._select(plan, client, ecs)
        key = (question, wire[2] & 0x01, wire[3] & 0x10, opt, transport, selection)
        entry = self._rendered.get(key)
        if entry is None:
            return self._slow(wire, client, transport, now, scan, plan, selection)
        self.counters.cache_hits += 1
        cached = entry.wire
        response = wire[:2] + cached[2:12] + wire[12:qname_end] + cached[qname_end:]
        return self._send(response, entry, wire, question_end, client, transport, now)

    def answer_message(
        self, query: dns.message.Message, client: str, transport: Transport, now: float
    ) -> dns.message.Message | None:
        """Convenience for tests and tools: :meth:`answer` on a dnspython message."""
        response = self.answer(query.to_wire(), client, transport, now)
        return None if response is None else dns.message.from_wire(response)

    def statistics(self) -> AnswererStatistics:
        return self.counters.snapshot(len(self._rendered))

    def _send(
        self,
        response: bytes,
        entry: _Entry,
        wire: bytes,
        question_end: int,
        client: str,
        transport: Transport,
        now: float,
    ) -> bytes | None:
        counters = self.counters
        label = (entry.qtype, entry.rcode)
        counters.queries[label] = counters.queries.get(label, 0) + 1
        if self.rate_limiter is not None and transport is Transport.UDP:
            decision = self.rate_limiter.check(client, now)
            if decision is not RateDecision.ALLOW:
                return self._limited(decision, wire, question_end)
        for answer_label in entry.answers:
            counters.answers[answer_label] = counters.answers.get(answer_label, 0) + 1
        if entry.truncated:
            counters.truncated += 1
        return response

    def _limited(self, decision: RateDecision, wire: bytes, question_end: int) -> bytes | None:
        counters = self.counters
        if decision is RateDecision.DROP:
            counters.rate_limited["dropped"] = counters.rate_limited.get("dropped", 0) + 1
            counters.dropped["rate-limited"] = counters.dropped.get("rate-limited", 0) + 1
            return None
        counters.rate_limited["slipped"] = counters.rate_limited.get("slipped", 0) + 1
        # A bare truncated reply (question only, no OPT): never larger than the query.
        flags = bytes([0x80 | (wire[2] & 0x79) | 0x04 | 0x02, wire[3] & 0x10])
        if question_end > 12:
            return wire[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + wire[12:question_end]
        return wire[:2] + flags + b"\x00" * 8

    def _select(self, plan: _Plan, client: str, ecs: bytes | None) -> Selection:
        steered = plan.steered
        assert steered is not None
        if steered.policy not in _BY_REGION:
            return self.steering.select(steered, plan.owner, plan.version, self.rng)
        if ecs is not None:
            family = ecs[0] << 8 | ecs[1]
            region, scope = self.locator.subnet(family, ecs[2], ecs[4:])
        else:
            region, scope = self.locator.region_of(client), 0
        return self.steering.select(
            steered, plan.owner, plan.version, self.rng, region=region, scope=scope
        )

    # -- the slow path -------------------------------------------------------

    def _slow(
        self,
        wire: bytes,
        client: str,
        transport: Transport,
        now: float,
        scan: _Scan | None,
        plan: _Plan | None = None,
        selection: Selection | None = None,
    ) -> bytes | None:
        self.counters.cache_misses += 1
        if len(wire) < 12:
            return self._drop("short")
        if wire[2] & 0x80:
            return self._drop("response")
        try:
            query = dns.message.from_wire(wire)
        except Exception as error:  # any parse failure of a peer's bytes is FORMERR
            return self._formerr(wire, client, transport, now, error)
        try:
            return self._respond(query, wire, client, transport, now, scan, plan, selection)
        except Exception as error:  # hostile input must never take the server down
            return self._formerr(wire, client, transport, now, error)

    def _drop(self, reason: str) -> bytes | None:
        """Count a packet we answer with silence; returns None (nothing to send)."""
        self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + 1
        return None

    def _formerr(
        self, wire: bytes, client: str, transport: Transport, now: float, error: Exception
    ) -> bytes | None:
        """A header-only FORMERR: ID and opcode echoed, nothing else trusted."""
        (log.debug if self._malformed_logged else log.info)(
            "malformed query (answered FORMERR; further ones are logged at debug level)",
            extra={"fields": {"client": client, "error": f"{type(error).__name__}: {error}"}},
        )
        self._malformed_logged = True
        response = wire[:2] + bytes([0x80 | (wire[2] & 0x79), dns.rcode.FORMERR]) + b"\x00" * 8
        entry = _Entry(response, "none", "FORMERR", (), False)
        return self._send(response, entry, wire, 12, client, transport, now)

    def _respond(
        self,
        query: dns.message.Message,
        wire: bytes,
        client: str,
        transport: Transport,
        now: float,
        scan: _Scan | None,
        plan_hint: _Plan | None,
        selection_hint: Selection | None,
    ) -> bytes | None:
        if query.flags & dns.flags.QR:
            return self._drop("response")
        response = dns.message.make_response(query, our_payload=self.udp_payload)
        response.flags |= query.flags & dns.flags.CD
        if query.edns >= 0 and query.ednsflags & dns.flags.DO:
            response.ednsflags |= dns.flags.DO
        qtype: int | None = None
        resolution = _Resolution(authoritative=False)
        cacheable = False
        ecs = _client_subnet(query)
        if query.opcode() != dns.opcode.QUERY:
            resolution.rcode = dns.rcode.NOTIMP
        elif len(query.question) != 1:
            response.question = []
            resolution.rcode = dns.rcode.FORMERR
        elif query.edns > 0:
            resolution.rcode = dns.rcode.BADVERS
        else:
            question = query.question[0]
            qtype = question.rdtype
            cacheable = scan is not None
            if question.rdclass != dns.rdataclass.IN or qtype in _REFUSED_TYPES:
                resolution.rcode = dns.rcode.REFUSED
            elif qtype == _OPT:
                resolution.rcode = dns.rcode.FORMERR
            elif dns.rdatatype.is_metatype(qtype) and qtype != dns.rdatatype.ANY:
                resolution.rcode = dns.rcode.NOTIMP
            else:
                resolution = self._resolve(
                    question.name, qtype, client, ecs, plan_hint, selection_hint
                )
        response.set_rcode(dns.rcode.Rcode.make(resolution.rcode))
        if resolution.authoritative:
            response.flags |= dns.flags.AA
        response.answer = resolution.answer or []
        response.authority = resolution.authority or []
        response.additional = resolution.additional or []
        if ecs is not None and query.edns == 0:
            scope = resolution.selection.scope if resolution.selection is not None else 0
            option = dns.edns.ECSOption(ecs.address, ecs.srclen, scope)
            response.use_edns(0, response.ednsflags, self.udp_payload, options=[option])
        rendered, truncated = self._render(response, query, transport)
        answers: tuple[tuple[str, str], ...] = ()
        selection = resolution.selection
        if selection is not None and resolution.plan.steered is not None and not truncated:
            policy = "all-down" if selection.all_down else resolution.plan.steered.policy
            answers = tuple((policy, edge) for edge in selection.edges)
        entry = _Entry(
            rendered, qtype_label(qtype), rcode_label(resolution.rcode), answers, truncated
        )
        if cacheable and scan is not None and self._cache_limit:
            self._remember(wire, scan, transport, resolution, entry)
        question_end = scan[1] if scan is not None else 12
        return self._send(rendered, entry, wire, question_end, client, transport, now)

    def _render(
        self, response: dns.message.Message, query: dns.message.Message, transport: Transport
    ) -> tuple[bytes, bool]:
        if transport is Transport.TCP:
            limit = TCP_MAX_SIZE
        elif query.edns >= 0:
            limit = max(CLASSIC_UDP_SIZE, min(query.payload, self.udp_payload))
        else:
            limit = CLASSIC_UDP_SIZE
        try:
            return response.to_wire(max_size=limit, want_shuffle=False), False
        except dns.exception.TooBig:
            response.answer = []
            response.authority = []
            response.additional = []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit, want_shuffle=False), True

    def _remember(
        self, wire: bytes, scan: _Scan, transport: Transport, resolution: _Resolution, entry: _Entry
    ) -> None:
        qname_end, question_end, opt, _ = scan
        if entry.wire[12:qname_end].lower() != wire[12:qname_end].lower():
            return  # the rendered question is not where patching expects it
        question = wire[12:qname_end].lower() + wire[qname_end:question_end]
        plan = resolution.plan
        selection = resolution.selection if plan.steered is not None else None
        key = (question, wire[2] & 0x01, wire[3] & 0x10, opt, transport, selection)
        if len(self._plans) >= self._cache_limit:
            del self._plans[next(iter(self._plans))]
        if len(self._rendered) >= self._cache_limit:
            del self._rendered[next(iter(self._rendered))]
        self._plans[question] = plan
        self._rendered[key] = entry

    # -- resolution ------------------------------------------------------------

    def steered_name(self, name: dns.name.Name) -> SteeredName | None:
        """The steered-name entry matching ``name`` (exact beats the nearest wildcard)."""
        steered = self._exact.get(name)
        if steered is not None:
            return steered
        parent = name
        while len(parent) > 1:
            parent = parent.parent()
            steered = self._wildcards.get(parent)
            if steered is not None:
                return steered
        return None

    def _resolve(
        self,
        qname: dns.name.Name,
        qtype: int,
        client: str,
        ecs: dns.edns.ECSOption | None,
        plan_hint: _Plan | None,
        selection_hint: Selection | None,
    ) -> _Resolution:
        zone = self.zones.find(qname)
        if zone is None:
            return _Resolution(rcode=dns.rcode.REFUSED, authoritative=False)
        result = _Resolution(answer=[], authority=[], additional=[])
        assert result.answer is not None
        assert result.authority is not None
        current = qname
        seen: set[dns.name.Name] = set()
        for _ in range(MAX_CHAIN):
            steered = self.steered_name(current)
            if steered is not None and qtype in _STEERED_TYPES:
                version = 6 if qtype == dns.rdatatype.AAAA else 4
                plan = _Plan(steered, current.to_text(omit_final_dot=True).lower(), version)
                if plan_hint == plan and selection_hint is not None:
                    selection = selection_hint
                else:
                    selection = self._select(plan, client, _ecs_bytes(ecs))
                result.plan = plan
                result.selection = selection
                if selection.servfail:
                    result.rcode = dns.rcode.SERVFAIL
                    result.answer = []
                    result.authority = []
                elif selection.addresses and qtype == dns.rdatatype.HTTPS:
                    result.answer.append(self._service_rrset(current, steered.ttl, selection))
                elif selection.addresses:
                    rdtype = dns.rdatatype.AAAA if version == 6 else dns.rdatatype.A
                    result.answer.append(
                        dns.rrset.from_text_list(
                            current,
                            steered.ttl,
                            dns.rdataclass.IN,
                            rdtype,
                            list(selection.addresses),
                        )
                    )
                else:
                    result.authority.append(zone.soa)
                return result
            found = zone.lookup(current)
            if found.found is Found.MISSING and steered is None:
                result.rcode = dns.rcode.NXDOMAIN
                result.authority.append(zone.soa)
                return result
            node = found.node
            if node is None:
                result.authority.append(zone.soa)  # empty non-terminal or steered: NODATA
                return result
            if qtype == dns.rdatatype.ANY:
                for rdataset in node.rdatasets:
                    result.answer.append(_rrset(current, rdataset))
                if not node.rdatasets:
                    result.authority.append(zone.soa)
                return result
            rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RdataType.make(qtype))
            if rdataset is not None:
                rrset = _rrset(current, rdataset)
                result.answer.append(rrset)
                self._add_glue(rrset, result)
                return result
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                result.authority.append(zone.soa)
                return result
            result.answer.append(_rrset(current, cname))
            seen.add(current)
            target: dns.name.Name = cname[0].target
            next_zone = self.zones.find(target)
            if next_zone is None or target in seen:
                return result  # out of our zones (the resolver follows) or a loop
            zone, current = next_zone, target
        return result

    def _service_rrset(
        self, owner: dns.name.Name, ttl: int, selection: Selection
    ) -> dns.rrset.RRset:
        """HTTPS records for the selected servers: one per port, in answer order."""
        by_port: dict[int, list[str]] = {}
        for name, address in zip(selection.edges, selection.addresses, strict=False):
            by_port.setdefault(self._ports.get(name, 80), []).append(address)
        texts = []
        for priority, (port, addresses) in enumerate(by_port.items(), start=1):
            v4 = [a for a in addresses if ":" not in a]
            v6 = [a for a in addresses if ":" in a]
            hints = (f" ipv4hint={','.join(v4)}" if v4 else "") + (
                f" ipv6hint={','.join(v6)}" if v6 else ""
            )
            texts.append(f"{priority} . alpn=http/1.1 port={port}{hints}")
        return dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, dns.rdatatype.HTTPS, texts)

    def _add_glue(self, rrset: dns.rrset.RRset, result: _Resolution) -> None:
        """Addresses of in-zone NS / MX / SRV targets, in the additional section."""
        if rrset.rdtype not in (dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.SRV):
            return
        assert result.additional is not None
        for rdata in rrset:
            target = getattr(rdata, "target", None) or getattr(rdata, "exchange", None)
            if not isinstance(target, dns.name.Name):
                continue
            zone: Zone | None = self.zones.find(target)
            if zone is None:
                continue
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue = zone.rrset(target, rdtype)
                if glue is not None and glue not in result.additional:
                    result.additional.append(glue)


_STEERED_TYPES = frozenset(
    {dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.HTTPS}
)


def _service_ports(config: ClusterConfig) -> dict[str, int]:
    """Edge name (and ``origin``) -> the TCP port of its advertised URL (80 when it has none)."""
    urls = {"origin": config.origin.url, **{edge.name: edge.url for edge in config.edges}}
    return {name: urlsplit(url).port or 80 for name, url in urls.items()}


def _rrset(owner: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset))


def _client_subnet(query: dns.message.Message) -> dns.edns.ECSOption | None:
    for option in query.options:
        if isinstance(option, dns.edns.ECSOption):
            return option
    return None


def _ecs_bytes(option: dns.edns.ECSOption | None) -> bytes | None:
    """The option as wire data (family, source, scope, address), as the fast path sees it."""
    if option is None:
        return None
    address = ipaddress.ip_address(option.address)
    family = 1 if address.version == 4 else 2
    truncated = address.packed[: (option.srclen + 7) // 8]
    return bytes([0, family, option.srclen, 0]) + truncated
