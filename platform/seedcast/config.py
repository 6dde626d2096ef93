"""The cluster config: one tree of frozen dataclasses, parsed once.

``cluster.toml`` is read with :mod:`tomllib` and walked field by field against
the dataclasses below. Each field's type (or its ``parse`` metadata: sizes,
rates, durations, addresses) says how to convert the value; unknown keys and
bad values raise :class:`ConfigError` naming the key path, for example
``cluster.toml: edges[2].region: unknown region "mars" (known: eu, us)``.

Without a file, :func:`default_config` gives the built-in demo cluster, so
every command works out of the box. ``to_toml`` writes the resolved tree back
(``seedcast config show``).

To add a setting: add a field with a default to the right section class. The
loader, ``config show`` and the error messages pick it up.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from seedcast.errors import ConfigError
from seedcast.units import parse_duration, parse_host_port, parse_rate, parse_size


def _size(default: int | str) -> Any:
    return field(default=parse_size(default), metadata={"parse": parse_size, "show": "size"})


def _rate(default: float | str) -> Any:
    return field(default=parse_rate(default), metadata={"parse": parse_rate})


def _duration(default: float | str) -> Any:
    return field(default=parse_duration(default), metadata={"parse": parse_duration})


def _address(default: str, default_port: int | None = None) -> Any:
    def parse(text: str) -> str:
        host, port = parse_host_port(text, default_port=default_port)
        ipaddress.ip_address(host)  # names are not addresses: config holds addresses
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True, slots=True)
class ClusterSection:
    name: str = "local"
    data_dir: str = ".seedcast"
    """Media library and persistent state."""
    run_dir: str = ""
    """Sockets, pid files, logs of a running cluster; empty = <data_dir>/run."""


@dataclass(frozen=True, slots=True)
class RegionConfig:
    name: str
    viewer_prefix: str
    """Source prefix of viewers in this region, e.g. 127.0.41.0/24."""
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    """One-way latency to other regions, by region name."""
    loss: Mapping[str, float] = field(default_factory=dict)
    """One-way loss fraction (0..1) to other regions, by region name (emulated paths)."""
    last_mile_ms: float = 0.0
    """One-way delay of this region's viewers' access link (emulated paths)."""
    last_mile_jitter_ms: float = 0.0
    """Jitter (uniform, +-) on the access link (emulated paths)."""
    last_mile_loss: float = 0.0
    """Loss fraction (0..1) on the access link (emulated paths)."""

    def viewer_address(self, index: int) -> str:
        """The address viewer ``index`` (1-based) of this region binds to."""
        network = ipaddress.ip_network(self.viewer_prefix)
        return str(network.network_address + index)

    def contains(self, address: str) -> bool:
        return ipaddress.ip_address(address) in ipaddress.ip_network(self.viewer_prefix)


@dataclass(frozen=True, slots=True)
class OriginConfig:
    listen: str = _address("127.0.10.1:8080", 8080)
    public_url: str = ""
    """URL edges use to reach the origin; empty = http://<listen>."""
    ffmpeg: str = ""
    """ffmpeg binary; empty = the one shipped by imageio-ffmpeg."""
    segment_seconds: float = 2.0
    ladder: tuple[str, ...] = ("1080p", "720p", "540p", "360p")
    audio_bitrate: str = "128k"
    sample_id: str = "sample"
    sample_seconds: float = 30.0
    manifest_max_age: float = _duration("2s")
    segment_max_age: float = _duration(31536000)
    upload: float = _rate(0)
    """Egress cap of the origin's HTTP server in bytes/s; 0 = unlimited."""
    dashjs: str = ""
    """dash.all.min.js (or the dashjs npm package folder); empty = ./node_modules/dashjs."""

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.listen}"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    name: str
    region: str
    listen: str = _address("127.0.20.1:8080", 8080)
    public_url: str = ""
    """URL the DNS answers with and health-checks (host: an address, or a name such as a
    Kubernetes Service, resolved at probe time); empty = http://<listen>."""
    parent: str = ""
    """Parent edge URL for tiered caching; empty = fetch from the origin."""
    cache_memory: int = _size("256MiB")
    cache_disk_dir: str = ""
    """Disk tier folder; empty = no disk tier."""
    cache_disk: int = _size(0)
    upstream_timeout: float = _duration("5s")
    stale_if_error: float = _duration("60s")
    prefetch_next: bool = False
    admin_token: str = ""
    """Token for purge requests; empty = purge only through the control channel."""
    upload: float = _rate(0)
    """Egress cap in bytes/s; 0 = unlimited."""
    eviction: str = "s3-fifo"
    """Cache eviction policy: s3-fifo | lru (``seedcast bench edge`` compares them)."""

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.listen}"


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    origin: str
    """Apex of the zone, e.g. netcinema.test."""
    file: str = ""
    """Optional RFC 1035 master file, merged with ``records``."""
    records: tuple[str, ...] = ()
    """Master-file lines relative to the apex, e.g. "video 300 IN CNAME video.kingcdn.test."."""


@dataclass(frozen=True, slots=True)
class SteeredName:
    name: str
    """A name (or ``*.name`` wildcard) answered with edge addresses."""
    policy: str = "geo"
    """round-robin | geo | least-loaded | consistent-hash | latency (measured RTT, see [netem])"""
    answers: int = 1
    ttl: int = 20


@dataclass(frozen=True, slots=True)
class DnsConfig:
    listen: str = _address("127.0.53.1:5353", 5353)
    metrics_listen: str = _address("127.0.53.1:9153", 9153)
    public_address: str = ""
    """host:port players and agents send queries to (a name is resolved by the system
    resolver, e.g. a Kubernetes Service); empty = listen."""
    ttl: int = 20
    policy: str = "geo"
    zones: tuple[ZoneConfig, ...] = (
        ZoneConfig(
            origin="netcinema.test",
            records=("video 300 IN CNAME video.kingcdn.test.", "www 300 IN A 127.0.10.1"),
        ),
        ZoneConfig(origin="kingcdn.test"),
    )
    names: tuple[SteeredName, ...] = (
        SteeredName(name="video.kingcdn.test", policy="geo"),
        SteeredName(name="*.video.kingcdn.test", policy="consistent-hash"),
    )
    health_interval: float = _duration("1s")
    health_timeout: float = _duration("1s")
    all_down: str = "origin"
    """What to answer when every edge is down: origin | all-edges | servfail."""
    rate_limit: float = 50.0
    """UDP responses per second per client /24 (IPv6 /56) prefix, also the burst; 0 = off.
    Bounds what a spoofed flood can reflect at a victim; real resolvers cache (TTL) and
    retry over TCP, which is never limited."""
    rate_limit_slip: int = 2
    """Every Nth rate-limited UDP response is sent truncated (TC) instead of dropped; 0 = drop all."""
    rate_limit_clients: int = 10000
    """Most client prefixes the rate limiter remembers (least recently seen are forgotten)."""
    health_window: int = 3
    """Health probes remembered per edge."""
    health_threshold: int = 2
    """Failures (or successes) within the window that take an edge down (or back up)."""
    health_path: str = "/healthz"
    udp_payload: int = 1232
    """Largest UDP response we send to EDNS clients (without EDNS: 512)."""
    tcp_idle_timeout: float = _duration("10s")
    """A TCP connection must deliver each whole query within this (a byte a second does
    not extend it)."""
    tcp_max_connections: int = 256
    """Open DNS-over-TCP connections; when full, the longest idle one is closed for a new one."""
    tcp_max_connections_per_source: int = 16
    """Open DNS-over-TCP connections per client address (beyond: its longest idle one goes)."""
    answer_cache: int = 10000
    """Rendered answers kept for reuse (ID and question case are patched per query)."""

    @property
    def server(self) -> str:
        """host:port to send queries to: public_address, else listen."""
        return self.public_address or self.listen


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    listen: str = _address("127.0.30.1:6969", 6969)
    public_url: str = ""
    """URL peers announce to (put in published torrents); empty = http://<listen>."""
    interval: float = _duration("30s")
    min_interval: float = _duration("5s")
    allowlist: tuple[str, ...] = ()
    """Hex info hashes allowed; empty = any torrent (public mode)."""
    interval_jitter: float = 0.1
    """Announce intervals are spread by +-this fraction so clients don't announce in step."""
    peer_grace: float = _duration("30s")
    """A peer expires after missing announces for interval (+jitter) + this."""
    numwant_default: int = 50
    numwant_max: int = 200
    max_peers_per_torrent: int = 5000
    """When a swarm is full, a newcomer replaces its oldest peer that announced only once."""
    max_peers_per_source: int = 16
    """Entries one IP address may hold in one swarm; a new one replaces its own oldest."""
    max_peers: int = 200_000
    max_torrents: int = 20_000
    trust_ip_param: bool = False
    """Honour the announce ``ip`` parameter (only behind a proxy you trust; otherwise a peer is
    listed under its connection's address)."""
    udp: bool = True
    """Also answer BEP 15 UDP announces on the same host:port."""

    @property
    def announce_url(self) -> str:
        return f"{self.public_url or f'http://{self.listen}'}/announce"


@dataclass(frozen=True, slots=True)
class PeersConfig:
    count: int = 4
    """Viewers started by ``seedcast up`` (plus one seeding peer)."""
    regions: tuple[str, ...] = ()
    """Regions viewers are spread over in turn; empty = every region."""
    listen_prefix: str = "127.0.40.0/24"
    """Peer k listens on the k-th address of this prefix."""
    port: int = 6881
    agent_port: int = 8081
    upload: float = _rate(0)
    """Per-peer upload cap in bytes/s; 0 = unlimited."""
    download: float = _rate(0)
    max_connections: int = 50
    play_seconds: float = 0.0
    """Viewers started by ``up`` stream this much of the sample through their agent with the
    headless player (``up --demo`` sets it); 0 = they only serve players that connect."""
    play_stagger: float = _duration("4s")
    """Viewer k starts playing (k - 1) * play_stagger seconds after it is ready."""
    abr: str = "bola"
    """ABR rule of the viewers' headless players: throughput | bba | bola."""
    prefetch_seconds: float = _duration("20s")
    urgent_seconds: float = _duration("4s")
    cdn_url: str = ""
    """CDN base URL viewer agents fetch from; empty = http://video.netcinema.test:<edge port>."""

    def peer_address(self, index: int) -> str:
        network = ipaddress.ip_network(self.listen_prefix)
        return str(network.network_address + index)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Limits of every HTTP server (origin, edges, tracker, agents, /metrics endpoints)."""

    max_connections: int = 1024
    """Open connections per server; when full, the idle one nearest its deadline is closed
    for a new one (busy ones never are)."""
    max_connections_per_source: int = 64
    """Open connections from one client address; beyond, that address's own idle ones go."""
    head_timeout: float = _duration("5s")
    """A new connection's first byte, and a started request head, must arrive within this."""
    keep_alive_timeout: float = _duration("30s")
    """An idle connection between requests is closed after this."""
    send_timeout: float = _duration("60s")
    """A client that takes no response bytes for this long is dropped."""
    max_head_size: int = _size("16KiB")
    """Request line plus headers; larger -> 431 (a longer target alone -> 431 too)."""


@dataclass(frozen=True, slots=True)
class NetemConfig:
    """Emulated paths: relays that put the regions' delay, jitter and loss on traffic."""

    enabled: bool = False
    """Start ``seedcast netem`` with the cluster; the DNS answers relay addresses."""
    relay_prefix: str = "127.0.120.0/24"
    """Edge k's relay listens on the k-th address of this prefix (same port as the edge)."""
    listen: str = _address("127.0.120.254:9120", 9120)
    """HTTP address of ``seedcast netem``: /metrics, /healthz, GET and PUT /paths."""
    seed: int = 0
    """Seed of the relays' random draws (jitter, loss): runs are repeatable."""
    probe_interval: float = _duration("1s")
    """How often the DNS measures the path from each region to each edge; 0 = never."""
    probe_alpha: float = 0.5
    """Weight of a new RTT sample in the DNS's moving average (0..1]."""
    switch_margin: float = 0.1
    """A region moves to another edge only when its RTT is this fraction better."""

    def relay_address(self, index: int, port: int) -> str:
        """Where edge ``index`` (1-based) is reached through its relay."""
        network = ipaddress.ip_network(self.relay_prefix)
        return f"{network.network_address + index}:{port}"


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    enabled: bool = False
    listen: str = _address("127.0.0.1:9090", 9090)
    binary: str = "prometheus"
    scrape_interval: float = _duration("5s")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster: ClusterSection = field(default_factory=ClusterSection)
    regions: tuple[RegionConfig, ...] = ()
    origin: OriginConfig = field(default_factory=OriginConfig)
    edges: tuple[EdgeConfig, ...] = ()
    dns: DnsConfig = field(default_factory=DnsConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    peers: PeersConfig = field(default_factory=PeersConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    netem: NetemConfig = field(default_factory=NetemConfig)
    source: str = field(default="<built-in>", metadata={"internal": True})
    """Where this config came from, for messages."""

    @property
    def data_dir(self) -> Path:
        return Path(self.cluster.data_dir)

    @property
    def run_dir(self) -> Path:
        return Path(self.cluster.run_dir) if self.cluster.run_dir else self.data_dir / "run"

    def region(self, name: str) -> RegionConfig:
        for region in self.regions:
            if region.name == name:
                return region
        raise ConfigError(f"{self.source}: unknown region {name!r}")

    def region_of(self, address: str) -> RegionConfig | None:
        """The region whose viewer prefix holds ``address``, if any."""
        for region in self.regions:
            if region.contains(address):
                return region
        return None

    def edge_relay(self, edge: EdgeConfig) -> str:
        """host:port of ``edge``'s relay (meaningful when ``netem.enabled``)."""
        index = self.edges.index(edge) + 1
        return self.netem.relay_address(index, parse_host_port(edge.listen)[1])

    def edge(self, name: str) -> EdgeConfig:
        for edge in self.edges:
            if edge.name == name:
                return edge
        known = ", ".join(edge.name for edge in self.edges)
        raise ConfigError(f"{self.source}: unknown edge {name!r} (known: {known})")

    def with_edge_count(self, count: int) -> ClusterConfig:
        """The same cluster with ``count`` edges, spread over the regions in turn."""
        edges = list(self.edges[:count])
        template = self.edges[0] if self.edges else EdgeConfig(name="edge-1", region="")
        regions = [region.name for region in self.regions] or [""]
        for index in range(len(edges) + 1, count + 1):
            edges.append(
                dataclasses.replace(
                    template,
                    name=f"edge-{index}",
                    region=regions[(index - 1) % len(regions)],
                    listen=f"127.0.20.{index}:{parse_host_port(template.listen)[1]}",
                )
            )
        return dataclasses.replace(self, edges=tuple(edges))

    def with_peer_count(self, count: int) -> ClusterConfig:
        return dataclasses.replace(self, peers=dataclasses.replace(self.peers, count=count))


def default_config() -> ClusterConfig:
    """The built-in cluster: two regions with an edge each, DNS, tracker, 4 viewers."""
    return ClusterConfig(
        regions=(
            RegionConfig(name="eu", viewer_prefix="127.0.41.0/24", latency_ms={"us": 40.0}),
            RegionConfig(name="us", viewer_prefix="127.0.42.0/24", latency_ms={"eu": 40.0}),
        ),
        edges=(
            EdgeConfig(name="edge-1", region="eu", listen="127.0.20.1:8080"),
            EdgeConfig(name="edge-2", region="us", listen="127.0.20.2:8080"),
        ),
    )


# ---------------------------------------------------------------------------
# Loading: TOML mapping -> dataclasses, with errors that name the key.


def load_config(path: str | Path | None) -> ClusterConfig:
    """Read ``path`` (or the built-in default when None) and validate it.

    Raises ConfigError with one line: ``<file>: <key>: <problem>``.
    """
    if path is None:
        return default_config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file (omit --config for the built-in one)"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> ClusterConfig:
    base = default_config()
    # Sections absent from the file keep the built-in defaults, so a file can
    # say only what differs (e.g. just [[edges]]).
    merged: dict[str, Any] = {}
    for item in dataclasses.fields(ClusterConfig):
        if item.metadata.get("internal"):
            continue
        if item.name in data:
            merged[item.name] = data[item.name]
    unknown = sorted(set(data) - {item.name for item in dataclasses.fields(ClusterConfig)})
    if unknown:
        raise ConfigError(
            f"{source}: {unknown[0]}: unknown section (known: {_known(ClusterConfig)})"
        )
    try:
        parsed = _build(ClusterConfig, merged, "")
    except _KeyError as error:
        raise ConfigError(f"{source}: {error.key}: {error.problem}") from None
    replaced = {
        item.name: getattr(parsed, item.name)
        for item in dataclasses.fields(ClusterConfig)
        if item.name in merged
    }
    config = dataclasses.replace(base, **replaced, source=source)
    _check_references(config)
    return config


class _KeyError(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _known(cls: type) -> str:
    return ", ".join(
        item.name for item in dataclasses.fields(cls) if not item.metadata.get("internal")
    )


def _build(cls: type, data: Any, key: str) -> Any:
    if not isinstance(data, Mapping):
        raise _KeyError(key or "<top>", f"expected a table, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {item.name for item in dataclasses.fields(cls) if not item.metadata.get("internal")}
    for name in data:
        if name not in names:
            raise _KeyError(_join(key, name), f"unknown key (known: {_known(cls)})")
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name not in data:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise _KeyError(_join(key, item.name), "missing (required)")
            continue
        values[item.name] = _convert(hints[item.name], item, data[item.name], _join(key, item.name))
    return cls(**values)


def _convert(hint: Any, item: dataclasses.Field[Any] | None, value: Any, key: str) -> Any:
    parse: Callable[[Any], Any] | None = item.metadata.get("parse") if item else None
    if parse is not None:
        try:
            return parse(value)
        except (ValueError, TypeError) as error:
            raise _KeyError(key, str(error)) from None
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise _KeyError(key, f"expected a list, got {_show(value)}")
        (element,) = typing.get_args(hint)[:1]
        return tuple(
            _convert(element, None, entry, f"{key}[{index}]") for index, entry in enumerate(value)
        )
    if origin in (Mapping, dict) or hint in (dict,):
        if not isinstance(value, Mapping):
            raise _KeyError(key, f"expected a table, got {_show(value)}")
        _, value_hint = typing.get_args(hint)
        return {
            str(name): _convert(value_hint, None, entry, f"{key}.{name}")
            for name, entry in value.items()
        }
    if origin in (types.UnionType, typing.Union):
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _KeyError(key, f"expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _KeyError(key, f"expected an integer, got {_show(value)}")
        if value < 0:
            raise _KeyError(key, f"must not be negative, got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _KeyError(key, f"expected a number, got {_show(value)}")
        if value < 0:
            raise _KeyError(key, f"must not be negative, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _KeyError(key, f"expected a string, got {_show(value)}")
        return value
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_POLICIES = ("round-robin", "geo", "least-loaded", "consistent-hash", "latency")
_ALL_DOWN = ("origin", "all-edges", "servfail")
_ABR_RULES = ("throughput", "bba", "bola")


def _check_references(config: ClusterConfig) -> None:
    """Cross-field rules: names exist, prefixes parse, nothing is listed twice."""
    source = config.source

    def fail(key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {problem}")

    region_names = [region.name for region in config.regions]
    known = ", ".join(region_names) or "none defined"
    for index, region in enumerate(config.regions):
        if region.name in region_names[:index]:
            fail(f"regions[{index}].name", f'duplicate region "{region.name}"')
        try:
            ipaddress.ip_network(region.viewer_prefix)
        except ValueError:
            fail(
                f"regions[{index}].viewer_prefix", f'not a network prefix: "{region.viewer_prefix}"'
            )
        for table in ("latency_ms", "loss"):
            for other in getattr(region, table):
                if other not in region_names:
                    fail(
                        f"regions[{index}].{table}.{other}",
                        f'unknown region "{other}" (known: {known})',
                    )
        for other, fraction in region.loss.items():
            if fraction > 1:
                fail(f"regions[{index}].loss.{other}", f"a fraction 0..1, got {fraction}")
        if region.last_mile_loss > 1:
            fail(
                f"regions[{index}].last_mile_loss", f"a fraction 0..1, got {region.last_mile_loss}"
            )
    edge_names = [edge.name for edge in config.edges]
    for index, edge in enumerate(config.edges):
        if region_names and edge.region not in region_names:
            fail(f"edges[{index}].region", f'unknown region "{edge.region}" (known: {known})')
        if edge.name in edge_names[:index]:
            fail(f"edges[{index}].name", f'duplicate edge "{edge.name}"')
    for index, region_name in enumerate(config.peers.regions):
        if region_name not in region_names:
            fail(f"peers.regions[{index}]", f'unknown region "{region_name}" (known: {known})')
    try:
        ipaddress.ip_network(config.peers.listen_prefix)
    except ValueError:
        fail("peers.listen_prefix", f'not a network prefix: "{config.peers.listen_prefix}"')
    for key, policy in [("dns.policy", config.dns.policy)] + [
        (f"dns.names[{index}].policy", name.policy) for index, name in enumerate(config.dns.names)
    ]:
        if policy not in _POLICIES:
            fail(key, f'unknown policy "{policy}" (known: {", ".join(_POLICIES)})')
    if config.peers.abr not in _ABR_RULES:
        fail("peers.abr", f'unknown ABR rule "{config.peers.abr}" (known: {", ".join(_ABR_RULES)})')
    if config.dns.all_down not in _ALL_DOWN:
        fail(
            "dns.all_down",
            f'unknown policy "{config.dns.all_down}" (known: {", ".join(_ALL_DOWN)})',
        )
    try:
        ipaddress.ip_network(config.netem.relay_prefix)
    except ValueError:
        fail("netem.relay_prefix", f'not a network prefix: "{config.netem.relay_prefix}"')
    if not 0 < config.netem.probe_alpha <= 1:
        fail("netem.probe_alpha", f"must be in (0, 1], got {config.netem.probe_alpha}")
    for index, name in enumerate(config.dns.names):
        if name.answers < 1:
            fail(f"dns.names[{index}].answers", f"must be at least 1, got {name.answers}")


# ---------------------------------------------------------------------------
# Showing: dataclasses -> TOML.


def to_mapping(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: to_mapping(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if not item.metadata.get("internal")
        }
    if isinstance(value, tuple | list):
        return [to_mapping(entry) for entry in value]
    if isinstance(value, Mapping):
        return {str(name): to_mapping(entry) for name, entry in value.items()}
    return value


def to_toml(config: ClusterConfig) -> str:
    """The resolved config as TOML that :func:`load_config` reads back unchanged.

    A switched-off ``[netem]`` left at its defaults is omitted: its loopback relay
    addresses mean nothing to a cluster that runs no relays (e.g. in containers).
    """
    mapping = to_mapping(config)
    if config.netem == NetemConfig():
        del mapping["netem"]
    return f"# resolved from {config.source}\n" + tomli_w.dumps(mapping)
