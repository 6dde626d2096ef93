"""The stub resolver's sans-IO cache, fed real responses from the answering core."""

from __future__ import annotations

import random

import dns.message
import dns.name
import dns.rdatatype
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.resolver import EntryKind, ResolverCache
from seedcast.testing.nameserver import example_config

A = dns.rdatatype.A


def respond(name: str, rdtype: str = "A", client: str = "127.0.42.7") -> dns.message.Message:
    answerer = Answerer(example_config(), rng=random.Random(1))
    response = answerer.answer_message(
        dns.message.make_query(name, rdtype), client, Transport.UDP, 0.0
    )
    assert response is not None
    return response


def test_chain_is_cached_link_by_link_until_the_shortest_ttl() -> None:
    cache = ResolverCache()
    cache.store("video.netcinema.test", A, respond("video.netcinema.test"), now=100.0)
    link = cache.get("Video.NetCinema.Test", A, 100.0)
    assert link is not None
    assert link.kind is EntryKind.CNAME
    assert link.records == ("video.kingcdn.test.",)
    final = cache.get("video.kingcdn.test.", A, 100.0)
    assert final is not None
    assert final.kind is EntryKind.RECORDS
    assert final.records == ("127.0.20.2",)
    assert cache.get("video.kingcdn.test", A, 120.0) is not None  # TTL 20: still valid at +20
    assert cache.get("video.kingcdn.test", A, 120.5) is None
    assert cache.get("video.netcinema.test", A, 399.0) is not None  # CNAME TTL 300
    assert cache.get("video.netcinema.test", A, 400.5) is None


def test_nxdomain_is_cached_for_the_negative_ttl_for_any_type() -> None:
    cache = ResolverCache()
    cache.store("nope.kingcdn.test", A, respond("nope.kingcdn.test"), now=0.0)
    for rdtype in (A, dns.rdatatype.AAAA):
        entry = cache.get("nope.kingcdn.test", rdtype, 59.0)
        assert entry is not None
        assert entry.kind is EntryKind.NXDOMAIN
    assert cache.get("nope.kingcdn.test", A, 61.0) is None


def test_nodata_is_cached_per_type() -> None:
    cache = ResolverCache()
    aaaa = dns.rdatatype.AAAA
    cache.store("www.netcinema.test", aaaa, respond("www.netcinema.test", "AAAA"), now=0.0)
    entry = cache.get("www.netcinema.test", aaaa, 1.0)
    assert entry is not None
    assert entry.kind is EntryKind.NODATA
    assert cache.get("www.netcinema.test", A, 1.0) is None


def test_error_rcodes_are_not_cached() -> None:
    cache = ResolverCache()
    cache.store("example.org", A, respond("example.org"), now=0.0)
    assert len(cache) == 0


def test_zero_ttl_lives_for_the_instant_it_was_learnt() -> None:
    cache = ResolverCache()
    response = respond("www.netcinema.test")
    response.answer[0].ttl = 0
    cache.store("www.netcinema.test", A, response, now=5.0)
    assert cache.get("www.netcinema.test", A, 5.0) is not None
    assert cache.get("www.netcinema.test", A, 5.001) is None


def test_memory_is_bounded_and_expiry_cleans_up() -> None:
    cache = ResolverCache(max_entries=10)
    response = respond("www.netcinema.test")
    for index in range(50):
        response.answer[0].name = dns.name.from_text(f"n{index}.netcinema.test")
        cache.store(f"n{index}.netcinema.test", A, response, now=float(index))
    assert len(cache) == 10
    assert cache.expire(10_000.0) == 10
    assert len(cache) == 0
