"""Which requests an edge accepts: never an open proxy.

How it works: an edge forwards only to its one configured upstream, so the
request target must name a path on *this* site. :func:`check_request` looks
at the method, the request-target form and the ``Host`` field and returns a
:class:`Refusal` (status + one-line reason) or None:

* methods other than GET/HEAD -> 405 (the admin purge is routed before this);
* authority-form (``CONNECT host:port``) and asterisk-form (``OPTIONS *``)
  targets -> 400;
* absolute-form targets (``GET http://other.example/x``) -> 400 unless the
  authority is one of ours (RFC 9112 3.2.2: a server must accept absolute-form
  for itself);
* a ``Host`` naming a host that isn't ours -> 421 Misdirected Request;
  a malformed, missing (HTTP/1.1) or repeated ``Host`` -> 400.

"Ours" (:class:`HostRules`) is the set of addresses the edge listens on,
``localhost``, and every DNS name under the zones the cluster's nameserver is
authoritative for (``video.netcinema.test`` reaches an edge through a CNAME
to ``video.kingcdn.test``, and browsers keep the first name in ``Host``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

ALLOWED_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class HostRules:
    names: frozenset[str]
    """Exact host names (lower case, no port, no trailing dot) and address literals."""
    suffixes: tuple[str, ...] = ()
    """Zone apexes: ``kingcdn.test`` admits the apex and every name below it."""

    @classmethod
    def build(cls, names: Iterable[str], zones: Iterable[str] = ()) -> HostRules:
        exact = {_canonical(name) for name in names if name}
        exact.add("localhost")
        suffixes = tuple(sorted({_canonical(zone.lstrip("*.")) for zone in zones if zone}))
        return cls(frozenset(exact), suffixes)

    def allows(self, host: str) -> bool:
        host = _canonical(host)
        if host in self.names:
            return True
        return any(host == zone or host.endswith("." + zone) for zone in self.suffixes)


def _canonical(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def split_authority(authority: str) -> str | None:
    """The host of ``host[:port]`` (IPv6 in brackets), or None when malformed."""
    if not authority or len(authority) > 255 or "@" in authority:
        return None
    if any(char in authority for char in " \t/\\?#,"):
        return None
    if authority.startswith("["):
        closing = authority.find("]")
        if closing < 0:
            return None
        host, rest = authority[: closing + 1], authority[closing + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return host
    host, sep, port = authority.rpartition(":")
    if not sep:
        return authority
    if not port.isdigit() or not host or ":" in host:
        return None
    return host


def check_request(
    method: str, target: str, version: str, host_values: list[str], rules: HostRules
) -> Refusal | None:
    """None when the edge may serve this request; else how to refuse it."""
    if not target.startswith("/"):
        if target == "*":
            return Refusal(400, "asterisk-form targets are not served here")
        scheme, sep, rest = target.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            return Refusal(400, "this is not a forward proxy (authority-form target)")
        authority = rest.split("/", 1)[0].split("?", 1)[0]
        host = split_authority(authority)
        if host is None or not rules.allows(host):
            return Refusal(400, "this is not a forward proxy: the target names another host")
    if method not in ALLOWED_METHODS:
        return Refusal(405, f"method {method} is not served by this cache (GET, HEAD)")
    if len(host_values) > 1:
        return Refusal(400, "more than one Host field")
    if not host_values and version != "1.0":
        return Refusal(400, "HTTP/1.1 requests need a Host field")
    if host_values:
        host = split_authority(host_values[0].strip())
        if host is None:
            return Refusal(400, "malformed Host field")
        if not rules.allows(host):
            return Refusal(421, "this edge does not serve that host")
    return None
