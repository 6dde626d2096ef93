"""seedcast.resolver.StubResolver against the real nameserver over loopback."""

from __future__ import annotations

import pytest
import trio
from nameserver_harness import Running, start_nameserver
from seedcast.errors import ReadTimeout
from seedcast.resolver import NameNotFound, NoAnswer, ServerFailure, StubResolver
from seedcast.testing.nameserver import example_config


@pytest.fixture
async def running(nursery: trio.Nursery) -> Running:
    return await start_nameserver(nursery, example_config())


def stub(running: Running, **options: object) -> StubResolver:
    return StubResolver(f"{running.host}:{running.port}", **options)  # type: ignore[arg-type]


async def test_follows_the_cname_chain_and_answers_from_cache(running: Running) -> None:
    resolver = stub(running, local_address="127.0.42.5")
    answer = await resolver.resolve("video.netcinema.test")
    assert answer.canonical == "video.kingcdn.test."
    assert answer.chain == ("video.kingcdn.test.",)
    assert answer.addresses == ("127.0.20.2",)  # bound to a us address: the us edge
    assert answer.queries == 1  # our server put the whole chain in one answer
    assert 0 < answer.ttl <= 20
    again = await resolver.resolve("VIDEO.netcinema.test")
    assert again.queries == 0
    assert again.addresses == answer.addresses
    assert resolver.udp_queries == 1


async def test_local_address_picks_the_region(running: Running) -> None:
    eu = await stub(running, local_address="127.0.41.5").resolve_address("video.netcinema.test")
    asia = await stub(running, local_address="127.0.43.5").resolve_address("video.netcinema.test")
    assert eu in ("127.0.20.1", "127.0.20.3")
    assert asia == "127.0.20.4"
    assert await stub(running).resolve_address("127.0.0.9") == "127.0.0.9"


@pytest.mark.parametrize(("payload", "truncated"), [(None, True), (512, True), (1232, False)])
async def test_truncated_answer_is_retried_over_tcp(
    running: Running, payload: int | None, truncated: bool
) -> None:
    resolver = stub(running, local_address="127.0.41.5", payload=payload)
    answer = await resolver.resolve("big.netcinema.test", "TXT")
    assert len(answer.records) == 1
    assert answer.records[0].count('"') == 20  # ten strings
    assert resolver.truncated == resolver.tcp_queries == int(truncated)


async def test_negative_answers_raise_and_are_cached(running: Running) -> None:
    resolver = stub(running)
    with pytest.raises(NameNotFound) as nxdomain:
        await resolver.resolve("nope.kingcdn.test")
    assert nxdomain.value.name == "nope.kingcdn.test."
    with pytest.raises(NoAnswer):
        await resolver.resolve("www.netcinema.test", "AAAA")
    queries = resolver.udp_queries
    with pytest.raises(NameNotFound):
        await resolver.resolve("nope.kingcdn.test", "AAAA")
    assert resolver.udp_queries == queries


async def test_cname_out_of_our_zones_is_followed_and_refused(running: Running) -> None:
    resolver = stub(running)
    with pytest.raises(ServerFailure, match="REFUSED"):
        await resolver.resolve("away.netcinema.test")
    assert resolver.udp_queries == 2  # asked again for www.example.org.


async def test_cname_loop_is_an_error(running: Running) -> None:
    with pytest.raises(ServerFailure, match="loop"):
        await stub(running).resolve("loop1.netcinema.test")


async def test_silent_server_times_out() -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))  # bound but never answers
        port = sock.getsockname()[1]
        resolver = StubResolver(f"127.0.0.1:{port}", timeout=0.2, attempts=2)
        with pytest.raises(ReadTimeout):
            await resolver.resolve("video.netcinema.test")
        assert resolver.udp_queries == 2


async def test_endpoint_without_a_port_comes_from_the_https_record(running: Running) -> None:
    resolver = stub(running, local_address="127.0.42.5")
    assert await resolver.resolve_endpoint("video.netcinema.test", None) == ("127.0.20.2", 8080)
    # an explicit port wins; a name without HTTPS records is port 80 at its A record
    assert await resolver.resolve_endpoint("video.netcinema.test", 81) == ("127.0.20.2", 81)
    assert await resolver.resolve_endpoint("www.netcinema.test", None) == ("127.0.10.1", 80)
    assert await resolver.resolve_endpoint("127.0.0.9", None) == ("127.0.0.9", 80)
    with pytest.raises(NameNotFound):
        await resolver.resolve_endpoint("nope.kingcdn.test", None)
