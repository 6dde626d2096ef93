"""The nameserver's trio shell over real loopback UDP and TCP, with dnspython as the client."""

from __future__ import annotations

import random
import struct

import dns.asyncresolver
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import pytest
import trio
from nameserver_harness import Running, frame, http_get, read_frame, start_nameserver
from seedcast.testing.nameserver import example_config


@pytest.fixture
async def running(nursery: trio.Nursery) -> Running:
    return await start_nameserver(nursery, example_config(tcp_idle_timeout=0.3))


def resolver_for(running: Running) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [running.host]
    resolver.port = running.port
    resolver.lifetime = 5
    resolver.timeout = 2
    resolver.cache = None
    return resolver


async def test_udp_and_tcp_answer_the_same(running: Running) -> None:
    query = dns.message.make_query("video.netcinema.test", "A")
    over_udp = await running.udp(query, source="127.0.41.8")
    over_tcp = await running.tcp(query)
    assert over_udp.flags & dns.flags.AA
    assert not over_udp.flags & dns.flags.RA
    assert over_udp.answer[0].to_text() == (
        "video.netcinema.test. 300 IN CNAME video.kingcdn.test."
    )
    assert over_udp.answer[1][0].address in ("127.0.20.1", "127.0.20.3")  # eu source address
    assert over_tcp.answer[0] == over_udp.answer[0]


async def test_dnspython_resolver_follows_the_chain(running: Running) -> None:
    answer = await resolver_for(running).resolve("video.netcinema.test", "A", source="127.0.42.8")
    assert answer.canonical_name.to_text() == "video.kingcdn.test."
    assert [rdata.address for rdata in answer] == ["127.0.20.2"]
    assert answer.rrset is not None
    assert answer.rrset.ttl == 20


async def test_dnspython_resolver_retries_truncated_answers_over_tcp(running: Running) -> None:
    truncated = await running.udp(dns.message.make_query("big.netcinema.test", "TXT"))
    assert truncated.flags & dns.flags.TC
    assert not truncated.answer
    answer = await resolver_for(running).resolve("big.netcinema.test", "TXT")
    assert len(answer[0].strings) == 10
    assert running.server.tcp_connections_total >= 1


async def test_every_rcode_over_the_wire(running: Running) -> None:
    cases = {
        ("www.netcinema.test", "A"): dns.rcode.NOERROR,
        ("nope.netcinema.test", "A"): dns.rcode.NXDOMAIN,
        ("www.example.org", "A"): dns.rcode.REFUSED,
        ("netcinema.test", "MAILB"): dns.rcode.NOTIMP,
    }
    for (name, rdtype), rcode in cases.items():
        response = await running.udp(dns.message.make_query(name, rdtype))
        assert response.rcode() == rcode, name
    badvers = await running.udp(dns.message.make_query("netcinema.test", "SOA", use_edns=1))
    assert badvers.rcode() == dns.rcode.BADVERS
    notify = dns.message.make_query("netcinema.test", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert (await running.udp(notify)).rcode() == dns.rcode.NOTIMP
    resolver = resolver_for(running)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nope.kingcdn.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("www.netcinema.test", "AAAA")


async def test_client_subnet_scope_over_udp(running: Running) -> None:
    query = dns.message.make_query(
        "video.kingcdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("127.0.43.0", 24)]
    )
    response = await running.udp(query, source="127.0.41.8")  # the subnet wins over the source
    assert response.answer[0][0].address == "127.0.20.4"
    (echo,) = response.options
    assert isinstance(echo, dns.edns.ECSOption)
    assert (echo.address, echo.srclen, echo.scopelen) == ("127.0.43.0", 24, 24)


async def test_tcp_serves_several_pipelined_queries_then_closes_when_idle(running: Running) -> None:
    queries = [
        dns.message.make_query(name, "A")
        for name in ("www.netcinema.test", "nope.kingcdn.test", "video.kingcdn.test")
    ]
    stream = await trio.open_tcp_stream(running.host, running.port)
    async with stream:
        await stream.send_all(b"".join(frame(query.to_wire()) for query in queries))
        buffer = bytearray()
        for query in queries:
            message = await read_frame(stream, buffer)
            assert message is not None
            assert query.is_response(dns.message.from_wire(message))
        with trio.fail_after(10):  # the server's idle timeout (0.3 s) closes the connection
            assert await read_frame(stream, buffer) is None
    assert running.server.tcp_connections == 0


async def test_tcp_answers_big_messages_whole(running: Running) -> None:
    response = await running.tcp(dns.message.make_query("big.netcinema.test", "TXT"))
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0][0].strings) == 10


async def test_garbage_never_stops_the_server(running: Running) -> None:
    rng = random.Random(3)
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((running.host, running.port))
        for _ in range(200):
            await sock.send(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))))
        formerr_query = (
            struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
        )
        await sock.send(formerr_query)
        with trio.fail_after(5):
            while True:
                reply = await sock.recv(65535)
                if reply[:2] == b"\x42\x42":
                    break
        assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    for junk in (b"\x00\x05abc", b"\xff\xff" + b"x" * 10, frame(b"\x00" * 5)):
        stream = await trio.open_tcp_stream(running.host, running.port)
        async with stream:
            await stream.send_all(junk)
            await stream.send_eof()
            with trio.fail_after(5):
                while await stream.receive_some(65536):
                    pass
    answer = await running.udp(dns.message.make_query("www.netcinema.test", "A"))
    assert answer.rcode() == dns.rcode.NOERROR


async def test_metrics_and_healthz_endpoint(running: Running) -> None:
    await running.udp(dns.message.make_query("video.kingcdn.test", "A"), source="127.0.42.1")
    await running.udp(dns.message.make_query("nope.kingcdn.test", "A"))
    status, text = await http_get(running.metrics, "/metrics")
    assert status == 200
    assert 'seedcast_dns_queries_total{qtype="A",rcode="NOERROR"} 1.0' in text
    assert 'seedcast_dns_queries_total{qtype="A",rcode="NXDOMAIN"} 1.0' in text
    assert 'seedcast_dns_answers_total{edge="edge-2",policy="geo"} 1.0' in text
    assert 'seedcast_dns_edge_state{edge="edge-1",state="unknown"} 1.0' in text
    assert "seedcast_dns_query_duration_seconds_bucket" in text
    assert 'seedcast_dns_rate_limited_total{action="slipped"} 0.0' in text
    assert "seedcast_build_info" in text
    assert await http_get(running.metrics, "/healthz") == (200, "ok\n")


async def test_rate_limit_slips_over_the_wire(nursery: trio.Nursery) -> None:
    running = await start_nameserver(nursery, example_config(rate_limit=1.0, rate_limit_slip=1))
    first = await running.udp(dns.message.make_query("www.netcinema.test", "A"))
    assert first.answer
    second = await running.udp(dns.message.make_query("www.netcinema.test", "A"))
    assert second.flags & dns.flags.TC  # slip 1: every limited answer is a TC invitation
    assert not second.answer
    over_tcp = await running.tcp(dns.message.make_query("www.netcinema.test", "A"))
    assert over_tcp.answer


async def test_status_figures(running: Running) -> None:
    await running.udp(dns.message.make_query("www.netcinema.test", "A"))
    status = running.server.status()
    assert status["queries"] == 1
    assert status["edges"] == 5
    result = await running.server.control_set_load({"edge": "edge-1", "load": 7})
    assert result == {"ok": True}
    health = await running.server.control_health({})
    assert health["edge-1"] == {"state": "unknown", "load": 7.0}
    assert (await running.server.control_set_load({"edge": "nope"}))["ok"] is False
