"""``seedcast peer`` as a real process: seeds to an in-process leecher, stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    from conftest import TorrentFixture

pytestmark = pytest.mark.slow
_READY = re.compile(rb"ready addresses=(\S+)")


async def test_seed_process_serves_a_leecher_and_stops_cleanly(
    small_torrent: TorrentFixture,
) -> None:
    command = [
        sys.executable, "-m", "seedcast", "--data", str(small_torrent.seed_dir),
        "peer", "--torrent", str(small_torrent.torrent), "--seed", "--name", "seed-1",
        "--listen", "127.0.40.1:0", "--metrics", "127.0.40.1:0", "--upload", "4MiB/s",
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        with trio.fail_after(30):
            log = b""
            while not (match := _READY.search(log)):
                chunk = await process.stderr.receive_some(4096)
                assert chunk, log.decode()
                log += chunk
            peer_address, metrics_address = match.group(1).decode().split(",")
            leecher = small_torrent.leecher("leecher", host="127.0.40.2")
            async with trio.open_nursery() as nursery:
                await nursery.start(leecher.serve)
                host, port = peer_address.rsplit(":", 1)
                leecher.add_peer(host, int(port))
                await leecher.wait_complete()
                nursery.cancel_scope.cancel()
            small_torrent.assert_identical(small_torrent.tmp / "leecher")
            # metrics are served by the process
            metrics_host, metrics_port = metrics_address.rsplit(":", 1)
            stream = await trio.open_tcp_stream(metrics_host, int(metrics_port))
            async with stream:
                await stream.send_all(
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                body = b""
                while chunk := await stream.receive_some(65536):
                    body += chunk
            uploaded = re.search(rb"seedcast_peer_uploaded_bytes_total\{[^}]*\} (\S+)", body)
            assert uploaded is not None
            metainfo = small_torrent.metainfo
            payload = sum(metainfo.piece_payload(index) for index in range(metainfo.piece_count))
            assert float(uploaded.group(1)) >= payload  # trailing BEP 47 padding stays home
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_seed_with_missing_data_is_one_clear_line(small_torrent: TorrentFixture) -> None:
    empty = small_torrent.tmp / "empty"
    empty.mkdir()
    command = [
        sys.executable, "-m", "seedcast", "--data", str(empty), "peer",
        "--torrent", str(small_torrent.torrent), "--seed", "--listen", "127.0.40.1:0",
    ]  # fmt: skip
    with trio.fail_after(30):
        result = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "holds 0 of" in lines[0]
    assert "drop --seed" in lines[0]
