"""Zones from the config and from RFC 1035 master files."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from seedcast.config import ZoneConfig, config_from_mapping
from seedcast.errors import ConfigError
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.nameserver.zones import Found, load_zones, zone_config_from_file
from seedcast.testing.nameserver import example_mapping

MASTER_FILE = """$ORIGIN example.test.
$TTL 600
@       IN SOA ns.example.test. admin.example.test. 7 3600 600 86400 30
@       IN NS  ns
ns      IN A   127.0.53.1
www     IN A   127.0.10.1
        IN AAAA ::1
ftp     IN CNAME www
@       IN MX 5 mail.elsewhere.test.
"""


def test_config_records_get_a_synthesized_soa_and_ns() -> None:
    zones = load_zones([ZoneConfig("kingcdn.test")], nameserver_address="127.0.53.1")
    zone = zones.find(dns.name.from_text("a.b.kingcdn.test"))
    assert zone is not None
    assert zone.soa[0].mname == dns.name.from_text("ns1.kingcdn.test")
    assert zone.soa.ttl == 60
    glue = zone.rrset(dns.name.from_text("ns1.kingcdn.test"), dns.rdatatype.A)
    assert glue is not None
    assert glue[0].address == "127.0.53.1"
    assert zones.find(dns.name.from_text("example.org")) is None


def test_master_file_loads_with_its_own_soa(tmp_path: Path) -> None:
    path = tmp_path / "whatever.db"
    path.write_text(MASTER_FILE)
    config = zone_config_from_file(path)
    assert config.origin == "example.test"
    zones = load_zones([config], nameserver_address="127.0.53.1")
    zone = zones.zones[dns.name.from_text("example.test")]
    assert zone.soa[0].serial == 7
    assert zone.soa.ttl == 30  # min(SOA TTL, minimum)
    assert zone.lookup(dns.name.from_text("www.example.test")).found is Found.NODE
    assert zone.lookup(dns.name.from_text("nope.example.test")).found is Found.MISSING


def test_zone_name_comes_from_the_file_name_without_origin(tmp_path: Path) -> None:
    path = tmp_path / "kingcdn.test.zone"
    path.write_text("edge 300 IN A 127.0.20.1\n")
    config = zone_config_from_file(path)
    assert config.origin == "kingcdn.test"
    zones = load_zones(
        [config, ZoneConfig("kingcdn.test", records=("x 60 IN A 127.0.0.9",))],
        nameserver_address="127.0.53.1",
    )
    zone = zones.zones[dns.name.from_text("kingcdn.test")]
    assert zone.lookup(dns.name.from_text("edge.kingcdn.test")).found is Found.NODE  # merged
    assert zone.lookup(dns.name.from_text("x.kingcdn.test")).found is Found.NODE


def test_master_file_is_served(tmp_path: Path) -> None:
    (tmp_path / "example.test.zone").write_text(MASTER_FILE)
    mapping = example_mapping()
    mapping["dns"]["zones"].append({"origin": "example.test", "file": "example.test.zone"})
    config_file = tmp_path / "cluster.toml"
    config_file.write_text("")
    config = config_from_mapping(mapping, source=str(config_file))  # relative to the config
    answerer = Answerer(config, rng=random.Random(1))
    query = dns.message.make_query("ftp.example.test", "AAAA")
    response = answerer.answer_message(query, "127.0.0.1", Transport.UDP, 0.0)
    assert response is not None
    assert [rrset.to_text() for rrset in response.answer] == [
        "ftp.example.test. 600 IN CNAME www.example.test.",
        "www.example.test. 600 IN AAAA ::1",
    ]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (("www IN A not-an-address",), "netcinema.test"),
        (("www 300 IN BOGUS 1",), "netcinema.test"),
    ],
)
def test_bad_records_raise_config_error_naming_the_zone(
    records: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_zones([ZoneConfig("netcinema.test", records=records)], nameserver_address="127.0.53.1")


def test_missing_zone_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_zones(
            [ZoneConfig("x.test", file=str(tmp_path / "nope.zone"))],
            nameserver_address="127.0.53.1",
        )
    with pytest.raises(ConfigError, match="cannot read zone file"):
        zone_config_from_file(tmp_path / "nope.zone")


def test_steered_name_outside_our_zones_is_a_config_error() -> None:
    mapping = example_mapping(names=[{"name": "video.example.org"}])
    with pytest.raises(ConfigError, match=r"dns\.names\[0\]\.name"):
        Answerer(config_from_mapping(mapping), rng=random.Random(1))


def test_the_built_in_config_serves_the_textbook_chain() -> None:
    from seedcast.config import default_config

    answerer = Answerer(default_config(), rng=random.Random(1))
    response = answerer.answer_message(
        dns.message.make_query("video.netcinema.test", "A"), "127.0.42.3", Transport.UDP, 0.0
    )
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert response.answer[1][0].address == "127.0.20.2"  # us viewer, us edge
