"""dig (BIND's client) against the Seedcast nameserver: in-process, and as `seedcast dns`."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from seedcast.config import to_toml
from seedcast.testing.nameserver import example_config

DIG = shutil.which("dig")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DIG is None, reason="dig is not installed (Debian: bind9-dnsutils)"),
]


async def dig(port: int, *arguments: str, host: str = "127.0.0.1") -> str:
    assert DIG is not None
    command = [DIG, f"@{host}", "-p", str(port), "+time=3", "+tries=1", *arguments]
    with trio.fail_after(30):
        result = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    return result.stdout.decode()


def header(output: str) -> tuple[str, set[str]]:
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags: ([a-z ]+);", output)
    assert status is not None, output
    assert flags is not None, output
    return status.group(1), set(flags.group(1).split())


def section(output: str, name: str) -> list[str]:
    match = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", output, re.S)
    if match is None:
        return []
    return [" ".join(line.split()) for line in match.group(1).splitlines()]


@pytest.fixture
async def server_port(nursery: trio.Nursery) -> int:
    import random

    from seedcast.nameserver.server import NameServer

    server = NameServer(example_config(), "dig-test", rng=random.Random(1), probe=False)
    addresses = await nursery.start(lambda task_status: server.serve(task_status=task_status))
    return int(addresses[0].rsplit(":", 1)[1])


async def test_cname_chain_is_authoritative_without_recursion(server_port: int) -> None:
    output = await dig(server_port, "video.netcinema.test", "A", "-b", "127.0.43.2")
    status, flags = header(output)
    assert status == "NOERROR"
    assert {"qr", "aa"} <= flags
    assert "ra" not in flags
    assert section(output, "ANSWER") == [
        "video.netcinema.test. 300 IN CNAME video.kingcdn.test.",
        "video.kingcdn.test. 20 IN A 127.0.20.4",
    ]
    assert "recursion requested but not available" in output


async def test_negative_answers_and_refusal(server_port: int) -> None:
    nxdomain = await dig(server_port, "nope.kingcdn.test", "+norec")
    assert header(nxdomain)[0] == "NXDOMAIN"
    assert section(nxdomain, "AUTHORITY")[0].startswith("kingcdn.test. 60 IN SOA ns1.kingcdn.test.")
    nodata = await dig(server_port, "www.netcinema.test", "AAAA", "+norec")
    assert header(nodata)[0] == "NOERROR"
    assert section(nodata, "ANSWER") == []
    assert section(nodata, "AUTHORITY")[0].startswith("netcinema.test. 60 IN SOA")
    refused = await dig(server_port, "www.example.org", "+norec")
    status, flags = header(refused)
    assert status == "REFUSED"
    assert "aa" not in flags


async def test_other_opcodes_and_edns_versions(server_port: int) -> None:
    assert header(await dig(server_port, "netcinema.test", "SOA", "+opcode=notify"))[0] == "NOTIMP"
    badvers = await dig(server_port, "netcinema.test", "SOA", "+edns=1", "+noednsneg")
    assert header(badvers)[0] == "BADVERS"


async def test_mx_txt_ns_from_zone_data(server_port: int) -> None:
    mx = await dig(server_port, "netcinema.test", "MX", "+norec")
    assert section(mx, "ANSWER") == ["netcinema.test. 300 IN MX 10 mail.netcinema.test."]
    assert "mail.netcinema.test. 300 IN A 127.0.10.25" in section(mx, "ADDITIONAL")
    txt = await dig(server_port, "netcinema.test", "TXT", "+short")
    assert txt.strip() == '"v=seedcast"'
    ns = await dig(server_port, "kingcdn.test", "NS", "+short")
    assert ns.strip() == "ns1.kingcdn.test."


async def test_client_subnet_scope(server_port: int) -> None:
    output = await dig(server_port, "video.kingcdn.test", "+subnet=127.0.43.0/24")
    assert "CLIENT-SUBNET: 127.0.43.0/24/24" in output
    assert section(output, "ANSWER") == ["video.kingcdn.test. 20 IN A 127.0.20.4"]
    hashed = await dig(server_port, "movie.video.kingcdn.test", "+subnet=127.0.43.0/24")
    assert "CLIENT-SUBNET: 127.0.43.0/24/0" in hashed


async def test_truncation_then_tcp_retry(server_port: int) -> None:
    truncated = await dig(server_port, "big.netcinema.test", "TXT", "+ignore", "+noedns")
    status, flags = header(truncated)
    assert status == "NOERROR"
    assert "tc" in flags
    assert "MSG SIZE  rcvd: " in truncated
    retried = await dig(server_port, "big.netcinema.test", "TXT", "+noedns")
    assert "Truncated, retrying in TCP mode" in retried
    assert len(section(retried, "ANSWER")) == 1
    assert "(TCP)" in retried


async def test_tcp_with_several_queries(server_port: int) -> None:
    output = await dig(
        server_port, "+tcp", "+keepopen", "www.netcinema.test", "netcinema.test", "SOA"
    )
    assert output.count("status: NOERROR") == 2
    assert "www.netcinema.test. 300 IN A 127.0.10.1" in " ".join(output.split())


async def test_seedcast_dns_command_as_a_process(tmp_path: Path) -> None:
    config_file = tmp_path / "cluster.toml"
    config_file.write_text(to_toml(example_config()))
    command = [
        sys.executable,
        "-m",
        "seedcast",
        "dns",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        lines = b""
        with trio.fail_after(30):
            while b"ready" not in lines:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, lines.decode()
                lines += chunk
        match = re.search(rb"ready addresses=127\.0\.0\.1:(\d+),127\.0\.0\.1:(\d+)", lines)
        assert match is not None, lines.decode()
        output = await dig(
            int(match.group(1)), "video.netcinema.test", "-b", "127.0.42.3", "+short"
        )
        assert output.split() == ["video.kingcdn.test.", "127.0.20.2"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.stderr is not None:
            await process.stderr.aclose()
    assert process.returncode == 0
