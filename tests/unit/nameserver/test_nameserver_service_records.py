"""HTTPS records (RFC 9460) for steered names: the port and address of the chosen edge."""

from __future__ import annotations

import random
from collections.abc import Callable

import dns.message
import dns.rcode
import dns.rdatatype
from seedcast.config import config_from_mapping
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.testing.nameserver import example_mapping

Ask = Callable[..., dns.message.Message]


def https_records(response: dns.message.Message) -> list[str]:
    return [
        rdata.to_text()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.HTTPS
        for rdata in rrset
    ]


def test_steered_name_answers_https_with_the_selected_edge_and_port(ask: Ask) -> None:
    response = ask("video.netcinema.test", "HTTPS", client="127.0.42.9")
    assert response.rcode() == dns.rcode.NOERROR
    kinds = [dns.rdatatype.to_text(rrset.rdtype) for rrset in response.answer]
    assert kinds == ["CNAME", "HTTPS"]
    assert https_records(response) == ['1 . alpn="http/1.1" port="8080" ipv4hint="127.0.20.2"']


def test_https_follows_the_same_policy_as_a(ask: Ask) -> None:
    # geo: an eu viewer rotates over the two eu edges, in HTTPS answers as in A answers
    hints = {https_records(ask("video.kingcdn.test", "HTTPS"))[0] for _ in range(4)}
    assert hints == {
        f'1 . alpn="http/1.1" port="8080" ipv4hint="{address}"'
        for address in ("127.0.20.1", "127.0.20.3")
    }


def test_edges_on_different_ports_get_one_record_each_in_answer_order() -> None:
    mapping = example_mapping()
    mapping["edges"][0]["listen"] = "127.0.20.1:80"
    answerer = Answerer(config_from_mapping(mapping, source="<test>"), rng=random.Random(1))
    query = dns.message.make_query("rr.kingcdn.test", "HTTPS")
    ports = set()
    for _ in range(4):  # round-robin over the pool: every pair comes up
        response = answerer.answer_message(query, "127.0.41.1", Transport.UDP, 0.0)
        assert response is not None
        for text in https_records(response):
            priority, _, rest = text.partition(" . ")
            assert priority.isdigit()
            ports.add(rest.split("port=")[1].split()[0])
    assert ports == {'"80"', '"8080"'}


def test_public_url_port_is_the_advertised_port() -> None:
    mapping = example_mapping()
    for edge in mapping["edges"][:4]:
        edge["public_url"] = f"http://{edge['listen'].split(':')[0]}:9000"
    answerer = Answerer(config_from_mapping(mapping, source="<test>"), rng=random.Random(1))
    query = dns.message.make_query("video.kingcdn.test", "HTTPS")
    response = answerer.answer_message(query, "127.0.41.1", Transport.UDP, 0.0)
    assert response is not None
    assert 'port="9000"' in https_records(response)[0]


def test_https_for_a_static_name_is_nodata(ask: Ask) -> None:
    response = ask("www.netcinema.test", "HTTPS")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_cached_https_answer_is_the_same_as_the_first(ask: Ask) -> None:
    first = ask("video.netcinema.test", "HTTPS", client="127.0.42.9")
    second = ask("video.netcinema.test", "HTTPS", client="127.0.42.9")
    assert https_records(first) == https_records(second)
