from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from seedcast.config import (
    ClusterConfig,
    config_from_mapping,
    default_config,
    load_config,
    to_toml,
)
from seedcast.errors import ConfigError
from seedcast.units import KiB, MiB

TWO_REGIONS = [
    {"name": "eu", "viewer_prefix": "127.0.41.0/24", "latency_ms": {"us": 40}},
    {"name": "us", "viewer_prefix": "127.0.42.0/24"},
]


def load(mapping: dict[str, object]) -> ClusterConfig:
    return config_from_mapping(mapping, source="cluster.toml")


def error_of(mapping: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(mapping)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_default_config_has_two_regions_with_an_edge_each() -> None:
    config = default_config()
    assert [region.name for region in config.regions] == ["eu", "us"]
    assert {edge.region for edge in config.edges} == {"eu", "us"}
    assert config.origin.listen == "127.0.10.1:8080"
    assert config.dns.listen == "127.0.53.1:5353"
    assert config.tracker.announce_url == "http://127.0.30.1:6969/announce"


def test_toml_round_trip_gives_the_same_config() -> None:
    config = default_config()
    again = config_from_mapping(tomllib.loads(to_toml(config)))
    assert dataclasses.replace(again, source=config.source) == config


def test_unknown_region_names_the_key_and_the_known_regions() -> None:
    message = error_of(
        {
            "regions": TWO_REGIONS,
            "edges": [
                {"name": "a", "region": "eu"},
                {"name": "b", "region": "us"},
                {"name": "c", "region": "mars"},
            ],
        }
    )
    assert message == 'cluster.toml: edges[2].region: unknown region "mars" (known: eu, us)'


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"bogus": {}}, "cluster.toml: bogus: unknown section"),
        ({"origin": {"lisen": "1.2.3.4:80"}}, "cluster.toml: origin.lisen: unknown key"),
        ({"origin": {"listen": "not-an-address"}}, "cluster.toml: origin.listen:"),
        (
            {"origin": {"segment_seconds": "two"}},
            "cluster.toml: origin.segment_seconds: expected a number",
        ),
        (
            {"edges": [{"name": "a", "region": "eu", "cache_memory": "lots"}]},
            "edges[0].cache_memory: not a size",
        ),
        ({"edges": [{"region": "eu"}]}, "cluster.toml: edges[0].name: missing (required)"),
        ({"peers": {"count": -1}}, "cluster.toml: peers.count: must not be negative"),
        ({"peers": {"upload": "fast"}}, "cluster.toml: peers.upload: not a rate"),
        ({"dns": {"policy": "nearest"}}, 'cluster.toml: dns.policy: unknown policy "nearest"'),
        (
            {"dns": {"names": [{"name": "x", "answers": 0}]}},
            "dns.names[0].answers: must be at least 1",
        ),
        ({"regions": [{"name": "eu", "viewer_prefix": "banana"}]}, "regions[0].viewer_prefix"),
        (
            {
                "regions": [
                    {"name": "eu", "viewer_prefix": "127.0.41.0/24", "latency_ms": {"mars": 3}}
                ]
            },
            "regions[0].latency_ms.mars: unknown region",
        ),
        (
            {"edges": [{"name": "a", "region": "eu"}, {"name": "a", "region": "us"}]},
            'edges[1].name: duplicate edge "a"',
        ),
        ({"tracker": {"interval": "soon"}}, "tracker.interval: not a duration"),
        ({"prometheus": {"enabled": "yes"}}, "prometheus.enabled: expected true or false"),
        ({"edges": {"name": "a"}}, "cluster.toml: edges: expected a list"),
    ],
)
def test_bad_values_name_the_key(mapping: dict[str, object], expected: str) -> None:
    assert expected in error_of(mapping)


def test_units_are_parsed_and_sections_merge_with_defaults() -> None:
    config = load(
        {
            "edges": [
                {"name": "edge-1", "region": "eu", "cache_memory": "64MiB", "cache_disk": "512KiB"}
            ],
            "peers": {"upload": "8Mbit/s", "download": "2MiB/s"},
            "tracker": {"interval": "500ms"},
        }
    )
    assert config.edges[0].cache_memory == 64 * MiB
    assert config.edges[0].cache_disk == 512 * KiB
    assert config.peers.upload == 1_000_000
    assert config.peers.download == 2 * MiB
    assert config.tracker.interval == 0.5
    assert config.origin == default_config().origin  # untouched section keeps its defaults


def test_load_config_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[origin\nlisten=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_regions_locate_viewers_and_hand_out_addresses() -> None:
    config = default_config()
    eu = config.region("eu")
    assert eu.viewer_address(3) == "127.0.41.3"
    assert config.region_of("127.0.42.9") == config.region("us")
    assert config.region_of("127.0.99.1") is None
    assert config.peers.peer_address(2) == "127.0.40.2"


def test_with_edge_count_spreads_edges_over_regions() -> None:
    config = default_config().with_edge_count(4)
    assert [edge.name for edge in config.edges] == ["edge-1", "edge-2", "edge-3", "edge-4"]
    assert [edge.region for edge in config.edges] == ["eu", "us", "eu", "us"]
    assert len({edge.listen for edge in config.edges}) == 4
