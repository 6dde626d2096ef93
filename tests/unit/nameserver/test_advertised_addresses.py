"""Across hosts, edges are reached at their public URL: the DNS answers with that address."""

from __future__ import annotations

import dataclasses

import pytest
from seedcast.config import default_config
from seedcast.errors import ConfigError
from seedcast.nameserver.commands import resolve_advertised_names
from seedcast.nameserver.policies import advertised_host, edges_from_config


def test_answers_use_the_public_url_when_set() -> None:
    config = default_config()
    edges = (
        dataclasses.replace(
            config.edges[0], listen="0.0.0.0:8080", public_url="http://10.1.2.3:8080"
        ),
        config.edges[1],
    )
    config = dataclasses.replace(config, edges=edges)
    assert [edge.address for edge in edges_from_config(config)] == ["10.1.2.3", "127.0.20.2"]


def test_an_unspecified_listen_address_is_never_an_answer() -> None:
    with pytest.raises(ValueError, match="not where to send viewers"):
        advertised_host("http://0.0.0.0:8080")


def test_service_names_are_resolved_once_at_start() -> None:
    config = default_config()
    edge = dataclasses.replace(config.edges[0], public_url="http://localhost:8080")
    origin = dataclasses.replace(config.origin, public_url="http://localhost:9000")
    resolved = resolve_advertised_names(dataclasses.replace(config, edges=(edge,), origin=origin))
    assert resolved.edges[0].public_url in ("http://127.0.0.1:8080", "http://[::1]:8080")
    assert resolved.origin.public_url.endswith(":9000")
    assert advertised_host(resolved.edges[0].url) in ("127.0.0.1", "::1")


def test_an_unresolvable_name_is_one_line_naming_the_key() -> None:
    config = default_config()
    edge = dataclasses.replace(config.edges[0], public_url="http://no-such-edge.invalid:8080")
    with pytest.raises(
        ConfigError, match=r"edges\[0\]\.public_url: cannot resolve 'no-such-edge.invalid'"
    ):
        resolve_advertised_names(dataclasses.replace(config, edges=(edge,)))
