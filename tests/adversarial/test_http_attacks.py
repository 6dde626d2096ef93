"""HTTP attacks on a real origin process: it stays up, bounded, serving, and counts them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from adversary import http_get, raw_exchange, report, running_role

HTTP = """
[http]
max_connections = {max_connections}
max_connections_per_source = {per_source}
head_timeout = "{head_timeout}"
"""
MIB = 2**20


def _origin(tmp_path: Path, *, max_connections: int = 1024, per_source: int = 64,
            head_timeout: str = "5s"):  # fmt: skip
    config = HTTP.format(
        max_connections=max_connections, per_source=per_source, head_timeout=head_timeout
    )
    return running_role(tmp_path, "origin", "127.0.0.1:0", config=config)


def _connect(address: tuple[str, int], source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def _probes_ok(address: tuple[str, int], source: str, count: int = 6) -> tuple[int, float]:
    """How many of ``count`` probes got 200, and the seconds the last one took."""
    served = 0
    took = 0.0
    for _ in range(count):
        started = time.monotonic()
        try:
            status, _ = http_get(address, "/healthz", source=source, timeout=5)
        except OSError:
            continue
        took = time.monotonic() - started
        served += status == 200
    return served, took


def test_one_source_reopening_sockets_cannot_take_the_server_offline(tmp_path: Path) -> None:
    with _origin(tmp_path) as origin:
        before = origin.rss()
        attackers = [_connect(origin.address, "127.0.0.1") for _ in range(800)]  # silent
        served, took = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        assert origin.metric("seedcast_origin_http_evicted_connections_total") >= 800 - 64
        assert origin.metric("seedcast_origin_http_open_connections") <= 64 + 2
        after = origin.rss()
        for sock in attackers:
            sock.close()
        assert origin.alive()
        assert after - before < 32 * MIB
        report("800 silent sockets, one source", f"probes {served}/6", before, after, took)


def test_idle_flood_from_many_sources_evicts_the_oldest_idle(tmp_path: Path) -> None:
    with _origin(tmp_path, max_connections=64) as origin:
        before = origin.rss()
        attackers = [_connect(origin.address, f"127.0.3.{index % 200 + 1}") for index in range(400)]
        served, took = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        assert origin.metric("seedcast_origin_http_open_connections") <= 64
        assert origin.metric("seedcast_origin_http_evicted_connections_total") >= 400 - 64
        after = origin.rss()
        for sock in attackers:
            sock.close()
        report("400 idle sockets, 200 sources, cap 64", f"probes {served}/6", before, after, took)


def test_slow_loris_gets_408_after_the_head_deadline(tmp_path: Path) -> None:
    with _origin(tmp_path, head_timeout="1s") as origin:
        before = origin.rss()
        loris = []
        for index in range(120):
            sock = _connect(origin.address, f"127.0.4.{index % 4 + 1}")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ")
            loris.append(sock)
        started = time.monotonic()
        answers = []
        for sock in loris:  # a byte now and then would not help: one deadline per head
            sock.settimeout(10)
            data = b""
            try:
                sock.sendall(b"a")
                while chunk := sock.recv(4096):
                    data += chunk
            except OSError:
                pass
            answers.append(data)
            sock.close()
        recovery = time.monotonic() - started
        timed_out = sum(answer.startswith(b"HTTP/1.1 408") for answer in answers)
        evicted = origin.metric("seedcast_origin_http_evicted_connections_total")
        assert timed_out + evicted >= 120  # each got 408, or made room for a newer one
        assert origin.metric("seedcast_origin_http_bad_requests_total") >= timed_out
        served, _ = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        after = origin.rss()
        report("slow-loris x120 (head deadline 1 s)", f"{timed_out} x 408", before, after,
               recovery)  # fmt: skip


HOSTILE = [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", "400"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400"),  # obs-fold
    (b"GET / HTTP/1.1\nHost: x\n\n", "400"),  # bare LF
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400 405"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", "400"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
     "400 405"),
    (b"GET / HTTP/1.1\r\n\r\n", "400"),  # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: \xc3\xa9\r\n\r\n", "400"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n", "431"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: v\r\n" * 3000 + b"\r\n", "431"),
    (b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", "501"),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "501"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64, "400"),  # TLS hello
]  # fmt: skip


def test_malformed_and_smuggling_shapes_are_refused_and_closed(tmp_path: Path) -> None:
    with _origin(tmp_path) as origin:
        before = origin.rss()
        for request, status in HOSTILE:
            answer, closed = raw_exchange(origin.address, request)
            # "400 405": a bad body behind a request the handler refuses anyway
            assert answer.split(b" ", 2)[1].decode() in status.split(), request[:60]
            assert closed, request[:60]
        log_lines = len(origin.log_lines)
        for _ in range(500):  # the edge once logged an ERROR per such request
            raw_exchange(origin.address, b"GET / HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n")
        served, _ = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        assert len(origin.log_lines) - log_lines < 20
        # (the two bad bodies behind a refused POST are 405s, not bad requests)
        assert origin.metric("seedcast_origin_http_bad_requests_total") >= len(HOSTILE) - 2 + 500
        report("smuggling/malformed x17 + 500 bad bytes", "all 4xx/5xx + close, logs bounded",
               before, origin.rss(), None)  # fmt: skip


TRAVERSALS = [
    "/static/../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/static/..%5c..%5c..%5cetc%5cpasswd",
    "/static/%00../../etc/passwd",
    "/..%2f..%2f..%2fetc/passwd",
    "/sample/..%2f..%2f..%2f..%2fetc%2fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_in_any_encoding_never_leaves_the_library(tmp_path: Path, path: str) -> None:
    with _origin(tmp_path) as origin:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        answer, _ = raw_exchange(origin.address, request)
        status = answer.split(b" ", 2)[1]
        assert status in (b"400", b"404"), answer[:200]
        assert b"root:" not in answer


def test_range_abuse_stays_bounded(tmp_path: Path) -> None:
    with _origin(tmp_path) as origin:
        status, script = http_get(origin.address, "/static/dash.all.min.js")
        if status != 200:
            pytest.skip("dash.js is not installed (npm install)")
        before = origin.rss()
        ranges = [
            "bytes=" + ",".join(f"{index}-{index}" for index in range(5000)),
            "bytes=" + ",".join("0-" for _ in range(2000)),
            "bytes=0-99999999999999999999999999999",
            "bytes=99999999999999999999999999-",
            "bytes=-99999999999999999999999999",
            "bytes=5-1",
            "bytes=" + "9" * 5000 + "-",
        ]
        for value in ranges:
            request = (
                "GET /static/dash.all.min.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Range: {value}\r\n\r\n"
            ).encode()
            answer, _ = raw_exchange(origin.address, request)
            code = answer.split(b" ", 2)[1]
            assert code in (b"200", b"206", b"416", b"400", b"431"), (value[:40], answer[:100])
            assert len(answer) < 2 * len(script) + 64 * 1024  # no multipart blow-up
        served, _ = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        report("Range abuse (5000 ranges, huge numbers)", "bounded answers", before,
               origin.rss(), None)  # fmt: skip


def test_pipelining_client_that_never_reads_is_bounded(tmp_path: Path) -> None:
    with _origin(tmp_path) as origin:
        before = origin.rss()
        hog = _connect(origin.address, "127.0.0.1")
        hog.setblocking(False)
        request = b"GET /catalog HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < 50 * MIB:
            try:
                sent += hog.send(request * 256)
            except BlockingIOError:
                break  # the server stopped reading: its buffering is full, as it should be
        served, took = _probes_ok(origin.address, "127.0.0.2")
        assert served == 6
        after = origin.rss()
        assert after - before < 32 * MIB
        assert sent < 50 * MIB
        hog.close()
        report(f"pipelining, never reading ({sent // 1024} KiB sent)", f"probes {served}/6",
               before, after, took)  # fmt: skip


def test_request_bodies_on_get_are_discarded_or_refused(tmp_path: Path) -> None:
    with _origin(tmp_path) as origin:
        with socket.create_connection(origin.address, timeout=10) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200") == 2  # the body was not taken as a request
        assert b"hello" not in data.split(b"\r\n\r\n", 1)[0]
