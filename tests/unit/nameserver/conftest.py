"""Fixtures for the nameserver cores: the example cluster and an Answerer on it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import dns.message
import pytest
from seedcast.config import ClusterConfig
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.testing.nameserver import example_config

Ask = Callable[..., dns.message.Message]


@pytest.fixture
def cluster() -> ClusterConfig:
    return example_config()


@pytest.fixture
def answerer(cluster: ClusterConfig) -> Answerer:
    return Answerer(cluster, rng=random.Random(7))


@pytest.fixture
def ask(answerer: Answerer) -> Ask:
    """ask(name, rdtype="A", client=..., transport=UDP, now=0.0, **make_query kwargs)."""

    def ask(
        name: str,
        rdtype: str = "A",
        *,
        client: str = "127.0.41.5",
        transport: Transport = Transport.UDP,
        now: float = 0.0,
        **options: Any,
    ) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **options)
        response = answerer.answer_message(query, client, transport, now)
        assert response is not None
        assert query.is_response(response)
        return response

    return ask
