"""A stub resolver for players and viewer agents: real DNS to the Seedcast nameserver.

:class:`StubResolver` sends queries (built and parsed by dnspython) to one
server address over UDP, from a given local address when asked (a viewer's
region is its source address), retries over TCP when the answer comes back
truncated, follows CNAME chains (re-asking for a target the answer did not
cover) and keeps what it learnt in a :class:`ResolverCache`.

:class:`ResolverCache` is sans-IO: it is fed whole responses and the current
time and answers lookups by (name, type). Positive records live for their
TTL; NXDOMAIN and NODATA live for the SOA's negative TTL (RFC 2308:
``min(SOA TTL, SOA minimum)``); CNAMEs are cached on their own, so a second
lookup of ``video.netcinema.test`` needs no packet at all until the
shortest TTL in its chain runs out. Memory is bounded (oldest entries go).

:meth:`StubResolver.resolve_endpoint` is what players and agents use for a
URL: an explicit port is kept; without one, the name's HTTPS record (RFC 9460)
supplies the port (``port=``) and, via ``ipv4hint``, the address, as browsers
use HTTPS records for alternative endpoints. A name without HTTPS records is
port 80 at its A record. (RFC 9460 section 9.5 would also upgrade ``http`` to
``https``; the cluster serves plain HTTP/1.1, so only the endpoint is taken.)

Errors: :class:`NameNotFound` (NXDOMAIN), :class:`NoAnswer` (NODATA),
:class:`ServerFailure` (SERVFAIL, REFUSED, ... or an unusable answer), all
:class:`ResolveError`; no reply in time is :class:`seedcast.errors.ReadTimeout`;
a refused TCP connection is :class:`seedcast.errors.ConnectError`.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.svcbbase
import dns.rrset
import trio
from seedcast.errors import ConnectError, ReadTimeout, SeedcastError
from seedcast.units import parse_host_port

MAX_CNAME_HOPS = 8
EDNS_PAYLOAD = 1232


class ResolveError(SeedcastError):
    """A lookup got a definite answer that is not the records asked for."""

    def __init__(self, message: str, *, name: str, rcode: int) -> None:
        super().__init__(message)
        self.name = name
        self.rcode = rcode


class NameNotFound(ResolveError):
    """NXDOMAIN: the name does not exist."""


class NoAnswer(ResolveError):
    """NODATA: the name exists but has no records of the type asked for."""


class ServerFailure(ResolveError):
    """SERVFAIL, REFUSED or another error rcode, or an answer that makes no sense."""


class EntryKind(IntEnum):
    RECORDS = 0
    CNAME = 1
    NXDOMAIN = 2
    NODATA = 3


@dataclass(frozen=True, slots=True)
class CacheEntry:
    kind: EntryKind
    expires: float
    records: tuple[str, ...] = ()
    """Record data as text (addresses for A/AAAA; the target for a CNAME)."""


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    """The name asked for (absolute, lower case)."""
    canonical: str
    """The name the records belong to, after following CNAMEs."""
    rdtype: str
    records: tuple[str, ...]
    ttl: float
    """Seconds the whole chain stays valid (the smallest remaining TTL)."""
    chain: tuple[str, ...] = ()
    """CNAME targets followed, in order."""
    queries: int = 0
    """Packets exchanged for this answer (0 = all from cache)."""

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.records


def _key(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    text = text.lower()
    return text if text.endswith(".") else text + "."


class ResolverCache:
    """Sans-IO DNS cache keyed by (name, type); see the module docstring."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: dict[tuple[str, int], CacheEntry] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, rdtype: int, now: float) -> CacheEntry | None:
        """The live entry for (name, rdtype), else a live CNAME at name, else None."""
        key = _key(name)
        for entry_key in ((key, rdtype), (key, dns.rdatatype.CNAME)):
            entry = self._entries.get(entry_key)
            if entry is None:
                continue
            if entry.expires < now:
                del self._entries[entry_key]
                continue
            if entry_key[1] == dns.rdatatype.CNAME and rdtype != dns.rdatatype.CNAME:
                if entry.kind is EntryKind.NXDOMAIN:
                    self.hits += 1
                    return entry  # no such name: no records of any type
                if entry.kind is not EntryKind.RECORDS:
                    continue
                self.hits += 1
                return CacheEntry(EntryKind.CNAME, entry.expires, entry.records)
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def put(self, name: str, rdtype: int, entry: CacheEntry) -> None:
        if len(self._entries) >= self.max_entries:
            self._evict()
        self._entries[(_key(name), rdtype)] = entry

    def store(self, qname: str, rdtype: int, response: dns.message.Message, now: float) -> None:
        """Remember what ``response`` (to a query for qname/rdtype) says.

        Answer-section RRsets are cached under their own owner and type; a
        negative answer for the end of the CNAME chain is cached for the SOA's
        negative TTL. Responses with an error rcode are not cached.
        """
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return
        for rrset in response.answer:
            if rrset.rdclass != dns.rdataclass.IN:
                continue
            records = tuple(rdata.to_text() for rdata in rrset)
            self.put(
                rrset.name.to_text(),
                rrset.rdtype,
                CacheEntry(EntryKind.RECORDS, now + rrset.ttl, records),
            )
        final = _end_of_chain(response, qname)
        if _find(response.answer, final, rdtype) is not None:
            return
        if _find(response.answer, final, dns.rdatatype.CNAME) is not None:
            return
        soa = next(
            (rrset for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA), None
        )
        if soa is None:
            return
        minimum: int = soa[0].minimum
        negative_ttl = min(soa.ttl, minimum)
        if rcode == dns.rcode.NXDOMAIN:
            # NXDOMAIN is about the name, whatever the type.
            for kind_type in (rdtype, dns.rdatatype.CNAME):
                self.put(final, kind_type, CacheEntry(EntryKind.NXDOMAIN, now + negative_ttl))
        else:
            self.put(final, rdtype, CacheEntry(EntryKind.NODATA, now + negative_ttl))

    def expire(self, now: float) -> int:
        """Forget every entry past its TTL; returns how many went."""
        stale = [key for key, entry in self._entries.items() if entry.expires < now]
        for key in stale:
            del self._entries[key]
        return len(stale)

    def clear(self) -> None:
        self._entries.clear()

    def _evict(self) -> None:
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]


def _find(rrsets: Sequence[dns.rrset.RRset], name: str, rdtype: int) -> dns.rrset.RRset | None:
    wanted = dns.name.from_text(name)
    for rrset in rrsets:
        if rrset.name == wanted and rrset.rdtype == rdtype:
            return rrset
    return None


def _end_of_chain(response: dns.message.Message, qname: str) -> str:
    current = _key(qname)
    for _ in range(MAX_CNAME_HOPS):
        cname = _find(response.answer, current, dns.rdatatype.CNAME)
        if cname is None:
            break
        target: dns.name.Name = cname[0].target
        current = _key(target)
    return current


class StubResolver:
    """Queries one nameserver (``"host:port"``, port 53 by default); see the module docstring.

    ``local_address`` binds every UDP socket and TCP connection to that source
    address. ``timeout`` is per attempt; ``attempts`` UDP tries before
    :class:`ReadTimeout`. ``payload`` is the EDNS UDP size offered (None: no
    EDNS, so answers over 512 bytes come truncated and are fetched over TCP).
    """

    def __init__(
        self,
        server: str,
        *,
        local_address: str | None = None,
        timeout: float = 2.0,
        attempts: int = 2,
        cache: ResolverCache | None = None,
        payload: int | None = EDNS_PAYLOAD,
    ) -> None:
        host, port = parse_host_port(server, default_port=53)
        self.server = (host, port)
        self.local_address = local_address
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.cache = cache if cache is not None else ResolverCache()
        self.payload = payload
        self.udp_queries = 0
        self.tcp_queries = 0
        self.truncated = 0

    async def resolve(self, name: str, rdtype: str | int = "A") -> Answer:
        """The records of ``rdtype`` for ``name``, following CNAMEs; see the class docstring."""
        wanted = dns.rdatatype.RdataType.make(rdtype)
        now = trio.current_time()
        asked = _key(name)
        current = asked
        chain: list[str] = []
        expires = math.inf
        queries = 0
        for _ in range(MAX_CNAME_HOPS + 1):
            entry = self.cache.get(current, wanted, now)
            if entry is None:
                response = await self.query(current, wanted)
                queries += 1
                self.cache.store(current, wanted, response, now)
                entry = self.cache.get(current, wanted, now)
                if entry is None:
                    rcode = response.rcode()
                    text = dns.rcode.to_text(rcode)
                    if rcode != dns.rcode.NOERROR:
                        raise ServerFailure(
                            f"{current}: the nameserver answered {text}", name=current, rcode=rcode
                        )
                    raise ServerFailure(f"{current}: no usable answer", name=current, rcode=rcode)
            expires = min(expires, entry.expires)
            if entry.kind is EntryKind.RECORDS:
                return Answer(
                    name=asked,
                    canonical=current,
                    rdtype=dns.rdatatype.to_text(wanted),
                    records=entry.records,
                    ttl=max(0.0, expires - now),
                    chain=tuple(chain),
                    queries=queries,
                )
            if entry.kind is EntryKind.CNAME:
                current = _key(entry.records[0])
                if current in chain or current == asked:
                    raise ServerFailure(f"{asked}: CNAME loop at {current}", name=asked, rcode=0)
                chain.append(current)
                continue
            if entry.kind is EntryKind.NXDOMAIN:
                raise NameNotFound(
                    f"{current}: no such name (NXDOMAIN)", name=current, rcode=dns.rcode.NXDOMAIN
                )
            raise NoAnswer(
                f"{current}: no {dns.rdatatype.to_text(wanted)} records (NODATA)",
                name=current,
                rcode=dns.rcode.NOERROR,
            )
        raise ServerFailure(f"{asked}: more than {MAX_CNAME_HOPS} CNAMEs", name=asked, rcode=0)

    async def resolve_address(self, host: str) -> str:
        """``host`` itself if it is an IP address, else its first A record."""
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            pass
        answer = await self.resolve(host, "A")
        return answer.records[0]

    async def resolve_endpoint(self, host: str, port: int | None) -> tuple[str, int]:
        """(address, port) to connect to for ``http://host[:port]``; see the module docstring."""
        if port is not None:
            return await self.resolve_address(host), port
        try:
            return str(ipaddress.ip_address(host.strip("[]"))), 80
        except ValueError:
            pass
        try:
            answer = await self.resolve(host, "HTTPS")
        except (NameNotFound, NoAnswer):
            return await self.resolve_address(host), 80
        endpoint = service_endpoint(answer.records)
        if endpoint is None:
            return await self.resolve_address(host), 80
        target, hint, service_port = endpoint
        if hint is None:
            hint = await self.resolve_address(host if target == "." else target)
        return hint, service_port

    async def query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """One exchange, no cache: UDP, then TCP if the answer is truncated."""
        if self.payload is None:
            query = dns.message.make_query(name, rdtype)
        else:
            query = dns.message.make_query(name, rdtype, use_edns=0, payload=self.payload)
        query.flags &= ~dns.flags.RD
        response = await self._udp(query)
        if response.flags & dns.flags.TC:
            self.truncated += 1
            response = await self._tcp(query)
        return response

    async def _udp(self, query: dns.message.Message) -> dns.message.Message:
        wire = query.to_wire()
        host, port = self.server
        family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
        for _ in range(self.attempts):
            self.udp_queries += 1
            with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
                await sock.bind((self.local_address or "", 0))
                await sock.connect((host, port))
                await sock.send(wire)
                with trio.move_on_after(self.timeout):
                    while True:
                        try:
                            data = await sock.recv(65535)
                        except OSError:
                            break  # e.g. ICMP port unreachable: try again
                        response = _parse_reply(query, data)
                        if response is not None:
                            return response
        raise ReadTimeout(
            f"no DNS answer from {host}:{port} within {self.timeout:g}s x {self.attempts}"
            " (is the cluster up? seedcast status)"
        )

    async def _tcp(self, query: dns.message.Message) -> dns.message.Message:
        host, port = self.server
        self.tcp_queries += 1
        wire = query.to_wire()
        with trio.move_on_after(self.timeout):
            try:
                stream = await trio.open_tcp_stream(host, port, local_address=self.local_address)
            except OSError as error:
                raise ConnectError(f"DNS over TCP to {host}:{port}: {error}") from None
            async with stream:
                try:
                    await stream.send_all(struct.pack("!H", len(wire)) + wire)
                    buffer = bytearray()
                    while True:
                        if len(buffer) >= 2:
                            length = buffer[0] << 8 | buffer[1]
                            if len(buffer) >= 2 + length:
                                response = _parse_reply(query, bytes(buffer[2 : 2 + length]))
                                if response is None:
                                    raise ServerFailure(
                                        f"{host}:{port}: unusable DNS-over-TCP reply",
                                        name=query.question[0].name.to_text(),
                                        rcode=0,
                                    )
                                return response
                        data = await stream.receive_some(65536)
                        if not data:
                            raise ServerFailure(
                                f"{host}:{port}: closed the DNS-over-TCP connection",
                                name=query.question[0].name.to_text(),
                                rcode=0,
                            )
                        buffer += data
                except (trio.BrokenResourceError, OSError) as error:
                    raise ConnectError(f"DNS over TCP to {host}:{port}: {error}") from None
        raise ReadTimeout(f"no DNS-over-TCP answer from {host}:{port} within {self.timeout:g}s")


def service_endpoint(records: Sequence[str]) -> tuple[str, str | None, int] | None:
    """(target, first IPv4 hint or None, port) of the best ServiceMode HTTPS record.

    ``records`` are HTTPS rdata in text form; AliasMode (priority 0) and records
    that don't parse are skipped; the port defaults to 80. None: no usable record.
    """
    best: tuple[int, str, str | None, int] | None = None
    for text in records:
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.HTTPS, text)
        except (dns.exception.DNSException, ValueError):
            continue
        priority: int = rdata.priority  # type: ignore[attr-defined]
        if priority == 0 or (best is not None and best[0] <= priority):
            continue
        params = rdata.params  # type: ignore[attr-defined]
        port_param = params.get(dns.rdtypes.svcbbase.ParamKey.PORT)
        hints = params.get(dns.rdtypes.svcbbase.ParamKey.IPV4HINT)
        target: str = rdata.target.to_text()  # type: ignore[attr-defined]
        port = port_param.port if port_param is not None else 80
        best = (priority, target, hints.addresses[0] if hints else None, port)
    return None if best is None else best[1:]


def _parse_reply(query: dns.message.Message, data: bytes) -> dns.message.Message | None:
    """The reply if it parses and answers ``query`` (ID, QR, question), else None."""
    try:
        response = dns.message.from_wire(data)
    except Exception:  # a bad packet is ignored like a spoofed one
        return None
    try:
        if not query.is_response(response):
            return None
    except dns.exception.DNSException:
        return None
    return response
