"""Interop: real libtorrent sessions announce to `seedcast tracker` (a real process) and swarm.

A libtorrent seed and a libtorrent leecher share a torrent made by Seedcast (BEP 47 padded); the
only way the leecher can find the seed is our tracker's peer list, over HTTP or UDP (BEP 15).
Sessions bind to 127.0.0.1 with DHT, LSD, UPnP and NAT-PMP off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from seedcast.peer.metainfo import Metainfo, create_torrent

libtorrent = pytest.importorskip("libtorrent")

pytestmark = pytest.mark.slow

TIMEOUT = 30.0


class TrackerProcess:
    def __init__(self, tmp_path: Path) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seedcast",
                "--data",
                str(tmp_path / "data"),
                "tracker",
                "--listen",
                "127.0.0.1:0",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(TIMEOUT):
            self.stop()
            raise AssertionError(f"tracker did not become ready: {self.lines}")
        ready = next(line for line in self.lines if " ready " in line)
        match = re.search(r"addresses=(\S+)", ready)
        assert match, ready
        self.address = match.group(1)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if " ready " in line:
                self._ready.set()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode


@pytest.fixture
def tracker_process(tmp_path: Path) -> Iterator[TrackerProcess]:
    process = TrackerProcess(tmp_path)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.lines


def new_session() -> Any:
    return libtorrent.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True,
            # libtorrent refuses any loopback tracker path but /announce (SSRF guard), which
            # would block /scrape; every address in this test is loopback anyway.
            "ssrf_mitigation": False,
            "alert_mask": libtorrent.alert_category.status
            | libtorrent.alert_category.error
            | libtorrent.alert_category.tracker,
        }
    )


def torrent_params(data: bytes, save_path: Path) -> Any:
    params = libtorrent.load_torrent_buffer(data)
    params.save_path = str(save_path)
    return params


class Alert:
    """What we keep of a libtorrent alert (the alert itself dies at the next pop_alerts)."""

    def __init__(self, alert: Any) -> None:
        self.kind = type(alert).__name__
        self.message = alert.message()
        self.complete = getattr(alert, "complete", None)

    def __repr__(self) -> str:
        return f"{self.kind}: {self.message}"


def wait_for(sessions: list[Any], condition: Any, seen: list[Alert]) -> None:
    """Pump alerts from ``sessions`` into ``seen`` until ``condition()`` holds or time is up."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; alerts: {seen}")
        for session in sessions:
            session.wait_for_alert(50)
            seen.extend(Alert(alert) for alert in session.pop_alerts())


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_libtorrent_swarm_finds_peers_through_our_tracker(
    tracker_process: TrackerProcess, tmp_path: Path, scheme: str
) -> None:
    seed_dir = tmp_path / "seed"
    contents = {"720p/1.m4s": os.urandom(300_000), "manifest.mpd": os.urandom(5_000)}
    for relative, content in contents.items():
        (seed_dir / "movie" / relative).parent.mkdir(parents=True, exist_ok=True)
        (seed_dir / "movie" / relative).write_bytes(content)
    announce = (
        f"http://{tracker_process.address}/announce"
        if scheme == "http"
        else f"udp://{tracker_process.address}"
    )
    data = create_torrent(seed_dir / "movie", list(contents), announce=announce, name="movie")
    meta = Metainfo.parse(data)

    seed, leech = new_session(), new_session()
    seed_handle = seed.add_torrent(torrent_params(data, seed_dir))
    leech_handle = leech.add_torrent(torrent_params(data, tmp_path / "leech"))
    alerts: list[Alert] = []
    wait_for([seed, leech], lambda: leech_handle.status().is_seeding, alerts)

    for relative, content in contents.items():
        assert (tmp_path / "leech" / "movie" / relative).read_bytes() == content
    assert not (tmp_path / "leech" / "movie" / ".pad").exists()  # padding is never written
    assert seed_handle.status().is_seeding
    # The reply alert may still be queued when the download finishes: pump until it shows.
    wait_for([seed, leech], lambda: any(a.kind == "tracker_reply_alert" for a in alerts), alerts)
    assert not [alert for alert in alerts if alert.kind == "tracker_error_alert"]

    leech_handle.scrape_tracker()
    wait_for(
        [leech],
        lambda: any(alert.kind == "scrape_reply_alert" for alert in alerts),
        alerts,
    )
    scrape = next(alert for alert in alerts if alert.kind == "scrape_reply_alert")
    assert scrape.complete is not None
    assert scrape.complete >= 1

    text = tracker_process.metrics()
    assert 'seedcast_tracker_announces_total{event="started"} 2.0' in text
    assert f'seedcast_tracker_swarm_peers{{info_hash="{meta.info_hash.hex()}"}} 2.0' in text
    del seed, leech
