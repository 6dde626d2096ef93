"""The ``seedcast edge`` command line and how it maps onto the config."""

from __future__ import annotations

import argparse

import pytest
from seedcast.config import default_config
from seedcast.edge.commands import _disk_option, configure_edge
from seedcast.edge.server import EdgeOptions, edge_config_for, host_rules
from seedcast.errors import ConfigError
from seedcast.units import GiB, MiB


def test_options_parse() -> None:
    parser = argparse.ArgumentParser()
    configure_edge(parser)
    args = parser.parse_args(
        ["--origin", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--cache-memory", "64MiB",
         "--cache-disk", "/tmp/x:2GiB", "--parent", "http://127.0.0.1:8", "--eviction", "lru"]
    )  # fmt: skip
    assert args.cache_memory == 64 * MiB
    assert args.cache_disk == ("/tmp/x", 2 * GiB)
    assert args.prefetch_next is None
    with pytest.raises(argparse.ArgumentTypeError):
        _disk_option("no-size-here")
    with pytest.raises(argparse.ArgumentTypeError):
        _disk_option("/tmp/x:lots")


def test_edge_config_defaults_come_from_the_named_edge() -> None:
    config = default_config()
    edge = edge_config_for(config, "edge-2", EdgeOptions(cache_memory=MiB))
    assert edge.listen == "127.0.20.2:8080"
    assert edge.cache_memory == MiB
    assert edge.eviction == "s3-fifo"
    unknown = edge_config_for(config, "edge-9", EdgeOptions())
    assert unknown.name == "edge-9"
    with pytest.raises(ConfigError):
        edge_config_for(config, "edge-1", EdgeOptions(eviction="random"))


def test_host_rules_cover_addresses_and_zones() -> None:
    config = default_config()
    rules = host_rules(config, config.edges[0], [("127.0.20.1", 8080)])
    assert rules.allows("127.0.20.1")
    assert rules.allows("video.netcinema.test")
    assert rules.allows("a.video.kingcdn.test")
    assert not rules.allows("example.com")
