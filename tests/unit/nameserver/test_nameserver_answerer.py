"""The answering core: every rcode path, CNAME chains, EDNS, ECS scope, truncation, the cache."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from seedcast.config import ClusterConfig
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.nameserver.health import EdgeState
from seedcast.testing.nameserver import example_config

Ask = Callable[..., dns.message.Message]
EU_EDGES = {"127.0.20.1", "127.0.20.3"}


def addresses(response: dns.message.Message, rdtype: int = dns.rdatatype.A) -> list[str]:
    return [
        rdata.to_text() for rrset in response.answer if rrset.rdtype == rdtype for rdata in rrset
    ]


def test_a_record_is_authoritative_without_recursion(ask: Ask) -> None:
    response = ask("www.netcinema.test")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert response.flags & dns.flags.RD  # copied from the query
    assert addresses(response) == ["127.0.10.1"]


def test_cname_chain_across_our_zones_ends_in_steered_a(ask: Ask) -> None:
    response = ask("chain1.netcinema.test", client="127.0.42.9")
    names = [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) for rrset in response.answer
    ]
    assert names == [
        ("chain1.netcinema.test.", "CNAME"),
        ("chain2.netcinema.test.", "CNAME"),
        ("video.netcinema.test.", "CNAME"),
        ("video.kingcdn.test.", "A"),
    ]
    assert addresses(response) == ["127.0.20.2"]  # us viewer -> us edge
    assert response.answer[-1].ttl == 20


def test_cname_loop_and_out_of_zone_target_answer_the_chain(ask: Ask) -> None:
    loop = ask("loop1.netcinema.test")
    assert loop.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in loop.answer] == [dns.rdatatype.CNAME] * 2
    away = ask("away.netcinema.test")
    assert away.rcode() == dns.rcode.NOERROR
    assert [rrset.to_text() for rrset in away.answer] == [
        "away.netcinema.test. 300 IN CNAME www.example.org."
    ]


def test_cname_query_returns_the_cname_itself(ask: Ask) -> None:
    response = ask("video.netcinema.test", "CNAME")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME]


def test_nxdomain_carries_soa_with_negative_ttl(ask: Ask) -> None:
    response = ask("nope.kingcdn.test")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text("kingcdn.test")
    assert soa.ttl == min(3600, soa[0].minimum)


def test_nodata_is_noerror_with_soa(ask: Ask) -> None:
    response = ask("www.netcinema.test", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_empty_non_terminal_is_nodata_not_nxdomain(ask: Ask) -> None:
    for name in ("deep.netcinema.test", "b.deep.netcinema.test"):
        response = ask(name)
        assert response.rcode() == dns.rcode.NOERROR
        assert not response.answer
    assert ask("c.deep.netcinema.test").rcode() == dns.rcode.NXDOMAIN


def test_zone_wildcard_is_synthesized_for_the_queried_name(ask: Ask) -> None:
    response = ask("anything.wild.netcinema.test")
    assert [rrset.to_text() for rrset in response.answer] == [
        "anything.wild.netcinema.test. 300 IN A 127.0.10.7"
    ]


def test_steered_name_with_other_type_is_nodata(ask: Ask) -> None:
    response = ask("video.kingcdn.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_mx_and_ns_come_with_glue_txt_and_soa_from_zone_data(ask: Ask) -> None:
    mx = ask("netcinema.test", "MX")
    assert [rrset.to_text() for rrset in mx.answer] == [
        "netcinema.test. 300 IN MX 10 mail.netcinema.test."
    ]
    assert [rrset.to_text() for rrset in mx.additional] == [
        "mail.netcinema.test. 300 IN A 127.0.10.25"
    ]
    ns = ask("kingcdn.test", "NS")
    assert [rrset.to_text() for rrset in ns.answer] == [
        "kingcdn.test. 3600 IN NS ns1.kingcdn.test."
    ]
    assert [rrset.to_text() for rrset in ns.additional] == ["ns1.kingcdn.test. 3600 IN A 127.0.0.1"]
    txt = ask("netcinema.test", "TXT")
    assert [rrset.to_text() for rrset in txt.answer] == ['netcinema.test. 300 IN TXT "v=seedcast"']
    soa = ask("kingcdn.test", "SOA")
    assert soa.answer[0].rdtype == dns.rdatatype.SOA


def test_any_returns_the_node(ask: Ask) -> None:
    response = ask("netcinema.test", "ANY")
    types = {rrset.rdtype for rrset in response.answer}
    assert {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.TXT} <= types


def test_names_outside_our_zones_are_refused(ask: Ask) -> None:
    response = ask("www.example.org")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert not response.answer


def test_zone_transfer_and_other_classes_are_refused(ask: Ask) -> None:
    assert ask("netcinema.test", "AXFR").rcode() == dns.rcode.REFUSED
    query = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert ask("netcinema.test", "IXFR").rcode() == dns.rcode.REFUSED
    response = dns.message.make_query("netcinema.test", "SOA", rdclass=dns.rdataclass.CH)
    for message in (query, response):
        answerer = Answerer(example_config(), rng=random.Random(1))
        reply = answerer.answer_message(message, "127.0.0.1", Transport.UDP, 0.0)
        assert reply is not None
        assert reply.rcode() == dns.rcode.REFUSED


def test_meta_types_get_notimp_and_opt_formerr(ask: Ask) -> None:
    assert ask("netcinema.test", "MAILB").rcode() == dns.rcode.NOTIMP
    assert ask("netcinema.test", "OPT").rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE]
)
def test_other_opcodes_are_not_implemented(answerer: Answerer, opcode: int) -> None:
    query = dns.message.make_query("netcinema.test", "SOA")
    query.set_opcode(opcode)
    wire = query.to_wire()
    reply = answerer.answer(wire, "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    assert reply[:2] == wire[:2]
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.NOTIMP
    assert response.opcode() == opcode


def test_two_questions_are_formerr(answerer: Answerer) -> None:
    query = dns.message.make_query("netcinema.test", "SOA")
    query.question.append(
        dns.rrset.RRset(dns.name.from_text("kingcdn.test"), dns.rdataclass.IN, dns.rdatatype.SOA)
    )
    response = answerer.answer_message(query, "127.0.0.1", Transport.UDP, 0.0)
    assert response is not None
    assert response.rcode() == dns.rcode.FORMERR
    assert response.id == query.id


def test_no_question_is_formerr(answerer: Answerer) -> None:
    wire = struct.pack("!HHHHHH", 0x1234, 0x0100, 0, 0, 0, 0)
    reply = answerer.answer(wire, "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.FORMERR
    assert response.id == 0x1234


def test_garbage_after_header_is_formerr_with_id(answerer: Answerer) -> None:
    wire = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x07garbage"
    reply = answerer.answer(wire, "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    assert len(reply) <= len(wire)
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.FORMERR
    assert response.id == 0xBEEF
    assert response.flags & dns.flags.QR


def test_responses_and_short_packets_get_silence(answerer: Answerer) -> None:
    query = dns.message.make_query("netcinema.test", "SOA")
    response = dns.message.make_response(query)
    assert answerer.answer(response.to_wire(), "127.0.0.1", Transport.UDP, 0.0) is None
    assert answerer.answer(b"\x12\x34\x01", "127.0.0.1", Transport.UDP, 0.0) is None
    stats = answerer.statistics()
    assert stats.dropped == {"response": 1, "short": 1}


def test_edns_version_above_zero_is_badvers(ask: Ask) -> None:
    response = ask("netcinema.test", "SOA", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0


def test_opt_is_echoed_with_our_payload_and_the_do_bit(ask: Ask) -> None:
    plain = ask("www.netcinema.test")
    assert plain.edns == -1
    edns = ask("www.netcinema.test", use_edns=0, payload=4096, want_dnssec=True)
    assert edns.edns == 0
    assert edns.payload == 1232
    assert edns.ednsflags & dns.flags.DO
    assert not ask("www.netcinema.test", use_edns=0).ednsflags & dns.flags.DO


def test_big_answer_is_truncated_on_udp_and_whole_on_tcp(answerer: Answerer) -> None:
    query = dns.message.make_query("big.netcinema.test", "TXT")
    wire = query.to_wire()
    reply = answerer.answer(wire, "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    assert len(reply) <= 512
    truncated = dns.message.from_wire(reply)
    assert truncated.flags & dns.flags.TC
    assert not truncated.answer
    whole = answerer.answer(wire, "127.0.0.1", Transport.TCP, 0.0)
    assert whole is not None
    assert len(whole) > 512
    response = dns.message.from_wire(whole)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0][0].strings) == 10


@pytest.mark.parametrize(
    ("payload", "fits"), [(512, False), (900, False), (1232, True), (4096, True)]
)
def test_advertised_payload_size_is_honoured(answerer: Answerer, payload: int, fits: bool) -> None:
    query = dns.message.make_query("big.netcinema.test", "TXT", use_edns=0, payload=payload)
    reply = answerer.answer(query.to_wire(), "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    assert len(reply) <= max(512, min(payload, 1232))
    response = dns.message.from_wire(reply)
    assert bool(response.flags & dns.flags.TC) is not fits
    assert answerer.statistics().truncated == (0 if fits else 1)


def test_geo_answers_from_the_viewers_region_and_rotates(ask: Ask) -> None:
    seen = {addresses(ask("video.kingcdn.test", client="127.0.41.20"))[0] for _ in range(4)}
    assert seen == EU_EDGES
    assert addresses(ask("video.kingcdn.test", client="127.0.42.20")) == ["127.0.20.2"]
    assert addresses(ask("video.kingcdn.test", client="127.0.43.20")) == ["127.0.20.4"]


def test_geo_aaaa_uses_ipv6_edges(ask: Ask) -> None:
    response = ask("video.kingcdn.test", "AAAA", client="127.0.42.20")
    assert addresses(response, dns.rdatatype.AAAA) == ["::1"]


@pytest.mark.parametrize(
    ("subnet", "source", "expected_scope", "expected"),
    [
        ("127.0.41.0", 24, 24, EU_EDGES),
        ("127.0.42.128", 25, 24, {"127.0.20.2"}),
        ("127.0.43.7", 32, 24, {"127.0.20.4"}),
        ("10.0.0.0", 8, 2, None),  # no region: the answer holds for all of 0.0.0.0/2
        ("127.0.0.0", 16, 19, None),  # needs more bits than given: scope > source
        ("0.0.0.0", 0, 0, None),  # "don't tailor"
    ],
)
def test_client_subnet_decides_and_scope_says_for_whom(
    ask: Ask, subnet: str, source: int, expected_scope: int, expected: set[str] | None
) -> None:
    option = dns.edns.ECSOption(subnet, source)
    response = ask("video.kingcdn.test", client="127.0.42.1", use_edns=0, options=[option])
    (echo,) = response.options
    assert isinstance(echo, dns.edns.ECSOption)
    assert (echo.address, echo.srclen, echo.scopelen) == (subnet, source, expected_scope)
    if expected is not None:
        assert set(addresses(response)) <= expected


def test_ecs_scope_is_zero_for_answers_not_tailored(ask: Ask) -> None:
    option = dns.edns.ECSOption("127.0.41.0", 24)
    for name in (
        "www.netcinema.test",
        "movie.video.kingcdn.test",
        "rr.kingcdn.test",
        "nope.kingcdn.test",
    ):
        response = ask(name, use_edns=0, options=[option])
        (echo,) = response.options
        assert echo.scopelen == 0, name


def test_malformed_ecs_is_formerr(answerer: Answerer) -> None:
    query = dns.message.make_query("video.kingcdn.test", "A", use_edns=0)
    wire = query.to_wire()
    # family 1, source /20, but bits beyond /20 are set in the address
    option = struct.pack("!HHHBB", 8, 7, 1, 20, 0) + bytes([127, 0, 47])
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(option)) + option
    bad = wire[: len(wire) - 11] + opt
    reply = answerer.answer(bad, "127.0.0.1", Transport.UDP, 0.0)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


def test_round_robin_hands_out_n_addresses_in_turn(ask: Ask) -> None:
    answers = [addresses(ask("rr.kingcdn.test")) for _ in range(5)]
    assert all(len(set(answer)) == 2 for answer in answers)
    assert [answer[0] for answer in answers] == [
        "127.0.20.1",
        "127.0.20.2",
        "127.0.20.3",
        "127.0.20.4",
        "127.0.20.1",
    ]
    assert answers[0] == ["127.0.20.1", "127.0.20.2"]


def test_consistent_hash_keeps_a_name_on_one_edge(ask: Ask) -> None:
    for name in ("movie.video.kingcdn.test", "other.video.kingcdn.test"):
        answers = {tuple(addresses(ask(name, client=f"127.0.4{index}.1"))) for index in range(1, 4)}
        assert len(answers) == 1


def test_least_loaded_prefers_the_idle_edge(answerer: Answerer, ask: Ask) -> None:
    for edge in ("edge-1", "edge-2", "edge-3"):
        answerer.health.set_load(edge, 99.0)
    answerer.health.set_load("edge-4", 0.0)
    counts = [addresses(ask("ll.kingcdn.test"))[0] for _ in range(200)]
    assert counts.count("127.0.20.4") > 150


def test_unhealthy_region_falls_back_to_the_nearest(answerer: Answerer, ask: Ask) -> None:
    health = answerer.health
    for edge in ("edge-1", "edge-2", "edge-3", "edge-4"):
        health.record(edge, True, 0.0)
    for edge in ("edge-1", "edge-3"):
        health.record(edge, False, 1.0)
        health.record(edge, False, 2.0)
        assert health.state(edge) is EdgeState.DOWN
    assert addresses(ask("video.kingcdn.test", client="127.0.41.9")) == ["127.0.20.2"]  # eu -> us
    health.record("edge-2", False, 1.0)
    health.record("edge-2", False, 2.0)
    assert addresses(ask("video.kingcdn.test", client="127.0.41.9")) == ["127.0.20.4"]  # -> asia


@pytest.mark.parametrize(
    ("policy", "rcode", "expected"),
    [
        ("origin", dns.rcode.NOERROR, ["127.0.10.1"]),
        ("servfail", dns.rcode.SERVFAIL, []),
        ("all-edges", dns.rcode.NOERROR, None),
    ],
)
def test_all_down_policy(policy: str, rcode: int, expected: list[str] | None) -> None:
    answerer = Answerer(example_config(all_down=policy), rng=random.Random(3))
    for edge in answerer.health.edges:
        answerer.health.record(edge, False, 0.0)
        answerer.health.record(edge, False, 1.0)
    query = dns.message.make_query("video.netcinema.test", "A")
    response = answerer.answer_message(query, "127.0.41.3", Transport.UDP, 5.0)
    assert response is not None
    assert response.rcode() == rcode
    found = addresses(response)
    if expected is None:
        assert found[0] in EU_EDGES  # the policy still applies, over every configured edge
    else:
        assert found == expected
    stats = answerer.statistics()
    if policy == "origin":
        assert stats.answers == {("all-down", "origin"): 1}


def test_before_any_probe_every_configured_edge_is_eligible(ask: Ask, answerer: Answerer) -> None:
    assert all(answerer.health.state(edge) is EdgeState.UNKNOWN for edge in answerer.health.edges)
    assert addresses(ask("video.kingcdn.test", client="127.0.42.1")) == ["127.0.20.2"]


def test_cache_hit_patches_id_and_question_case(answerer: Answerer) -> None:
    first = dns.message.make_query("video.netcinema.test", "A")
    answerer.answer(first.to_wire(), "127.0.42.1", Transport.UDP, 0.0)
    query = dns.message.make_query("ViDeO.NetCinema.TEST", "A")
    reply = answerer.answer(query.to_wire(), "127.0.42.1", Transport.UDP, 0.0)
    assert reply is not None
    assert answerer.statistics().cache_hits == 1
    response = dns.message.from_wire(reply)
    assert query.is_response(response)
    assert response.question[0].name.to_text() == "ViDeO.NetCinema.TEST."
    assert addresses(response) == ["127.0.20.2"]


def test_statistics_count_qtype_rcode_and_answers(answerer: Answerer, ask: Ask) -> None:
    ask("video.kingcdn.test", client="127.0.42.1")
    ask("video.kingcdn.test", client="127.0.42.1")
    ask("nope.kingcdn.test")
    ask("example.org", "MX")
    stats = answerer.statistics()
    assert stats.queries == {("A", "NOERROR"): 2, ("A", "NXDOMAIN"): 1, ("MX", "REFUSED"): 1}
    assert stats.answers == {("geo", "edge-2"): 2}
    assert stats.cache_hits == 1


def _query_wires(seed: int, count: int) -> list[tuple[bytes, str, Transport]]:
    rng = random.Random(seed)
    names = [
        "video.netcinema.test",
        "video.kingcdn.test",
        "movie.video.kingcdn.test",
        "rr.kingcdn.test",
        "ll.kingcdn.test",
        "www.netcinema.test",
        "nope.kingcdn.test",
        "big.netcinema.test",
        "deep.netcinema.test",
        "x.wild.netcinema.test",
        "example.org",
        "many.kingcdn.test",
    ]
    clients = ["127.0.41.5", "127.0.42.5", "127.0.43.5", "127.0.0.1", "::1"]
    result = []
    for _ in range(count):
        name = "".join(char.upper() if rng.random() < 0.3 else char for char in rng.choice(names))
        rdtype = rng.choice(["A", "A", "AAAA", "TXT", "MX", "SOA"])
        options = {}
        if rng.random() < 0.5:
            options = {"use_edns": 0, "payload": rng.choice([512, 1232, 4096])}
            if rng.random() < 0.5:
                subnet = rng.choice(
                    [("127.0.41.0", 24), ("127.0.42.0", 24), ("10.0.0.0", 8), ("0.0.0.0", 0)]
                )
                options["options"] = [dns.edns.ECSOption(*subnet)]
        query = dns.message.make_query(name, rdtype, **options)
        query.id = rng.randrange(65536)
        if rng.random() < 0.2:
            query.flags &= ~dns.flags.RD
        result.append(
            (query.to_wire(), rng.choice(clients), rng.choice([Transport.UDP, Transport.TCP]))
        )
    return result


def test_cached_answers_are_byte_identical_to_fresh_ones(cluster: ClusterConfig) -> None:
    """The fast path (cache) and the dnspython path agree on every byte, query after query."""
    cached = Answerer(cluster, rng=random.Random(11))
    uncached_config = example_config(answer_cache=0)
    uncached = Answerer(uncached_config, rng=random.Random(11))
    for edge in ("edge-1", "edge-2"):
        for answerer in (cached, uncached):
            answerer.health.set_load(edge, 5.0)
    for wire, client, transport in _query_wires(seed=5, count=600):
        assert cached.answer(wire, client, transport, 1.0) == uncached.answer(
            wire, client, transport, 1.0
        )
    assert cached.statistics().cache_hits > 100
    assert uncached.statistics().cache_hits == 0
