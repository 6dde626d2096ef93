"""`seedcast origin` as a real process: hostile paths from hypothesis over raw sockets."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seedcast.origin.library import Library
from seedcast.testing.origin import OriginProcess, write_synthetic_video

pytestmark = pytest.mark.slow

SECRET = b"SECRET-OUTSIDE-THE-LIBRARY-93ab"


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    data_dir = tmp_path_factory.mktemp("origin-process")
    write_synthetic_video(Library(data_dir / "library"), "movie")
    (data_dir / "secret.txt").write_bytes(SECRET)
    (data_dir / "library" / "movie" / "secret-link.m4s").symlink_to(data_dir / "secret.txt")
    with OriginProcess(data_dir) as process:
        yield process
    assert process.process is not None
    assert process.process.returncode == 0


def raw_request(
    origin: OriginProcess, request_line: bytes, *, headers: bytes = b""
) -> tuple[int, bytes]:
    """Send one request on a fresh socket; (status or 0 when closed without answer, raw reply)."""
    with socket.create_connection(("127.0.0.1", origin.port), timeout=10) as connection:
        connection.sendall(
            request_line + b"\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n"
        )
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return (int(match.group(1)) if match else 0), reply


_PIECES = [
    "..",
    ".",
    "/",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%",
    "%25",
    "%c0%ae",
    "movie",
    "manifest.mpd",
    "secret.txt",
    "secret-link.m4s",
    "library",
    "~",
    "%u002e",
    ";",
    "?",
    "#",
    "chunk-abcd1234-0-00001.m4s",
    "etc",
    "passwd",
    "%0d%0a",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=10))
def test_traversal_attempts_never_escape(origin: OriginProcess, pieces: list[str]) -> None:
    target = "/" + "".join(pieces)
    status, reply = raw_request(origin, b"GET " + target.encode() + b" HTTP/1.1")
    assert SECRET not in reply
    assert status != 500
    if status == 200:
        # Only the library's own files and pages are ever served.
        path = target.split("?", 1)[0].split("#", 1)[0]
        assert ".." not in path
        assert "%2e%2e" not in path.lower()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(min_size=1, max_size=200).filter(lambda data: b"\r" not in data and b"\n" not in data)
)
def test_arbitrary_request_targets(origin: OriginProcess, target: bytes) -> None:
    status, reply = raw_request(origin, b"GET /" + target + b" HTTP/1.1")
    assert SECRET not in reply
    assert status == 0 or status < 500


def test_still_healthy_and_counted(origin: OriginProcess) -> None:
    status, reply = raw_request(origin, b"GET /healthz HTTP/1.1")
    assert status == 200
    assert b'"status":"ok"' in reply
    status, reply = raw_request(origin, b"GET /movie/secret-link.m4s HTTP/1.1")
    assert status == 404
    assert SECRET not in reply
    status, reply = raw_request(origin, b"GET /metrics HTTP/1.1")
    counted = sum(
        float(value)
        for value in re.findall(
            rb"^seedcast_origin_refused_paths_total\{[^}]*\} (\S+)$", reply, re.M
        )
    )
    assert counted >= 10
    status, reply = raw_request(origin, b"GET /movie/manifest.mpd HTTP/1.1")
    assert status == 200
    assert b"<MPD" in reply
    assert Path(origin.data_dir / "secret.txt").read_bytes() == SECRET
