"""A streaming cluster of real processes, for tests and experiments with viewer agents.

:class:`StreamingCluster` writes a cluster.toml on its own loopback block
(``127.0.<block+n>.x``, so tests never meet each other or a demo cluster) and
starts each role as ``python -m seedcast <role>``: origin, edges, DNS (with
health checks), tracker, a seeding peer, and viewer agents on demand
(``seedcast peer --agent``). Every process is a :class:`RoleProcess`, ready
when it logs ``ready addresses=...``; everything is stopped (SIGTERM, then
SIGKILL) on exit. :func:`published_library` makes a real sample with
``seedcast sample`` and publishes it once per folder::

    library = published_library(tmp / "library", seconds=12)
    with StreamingCluster(tmp / "c", library, block=220) as cluster:
        url = cluster.start_viewer(1, "eu").manifest_url

Everything is bounded in time and stops what it starts.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from seedcast.testing.addresses import Addresses
from seedcast.testing.origin import publish_sample
from seedcast.testing.processes import RoleProcess, seedcast_command

__all__ = ["RoleProcess", "StreamingCluster", "Viewer", "published_library"]

SAMPLE_ID = "sample"


def published_library(
    folder: Path, *, seconds: float = 12, size: str = "640x360", ladder: str = "360p"
) -> Path:
    """A data dir holding ``sample`` (``seconds`` long), published once; returns the data dir."""
    folder = Path(folder)
    marker = folder / "published.json"
    if marker.is_file():
        return folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    data = publish_sample(
        folder / "data",
        seconds=seconds,
        size=size,
        ladder=ladder,
        video_id=SAMPLE_ID,
        source=folder / "sample.mp4",
    )
    marker.write_text(json.dumps({"seconds": seconds, "size": size, "ladder": ladder}))
    return data


@dataclass
class Viewer:
    name: str
    process: RoleProcess
    region: str

    @property
    def url(self) -> str:
        return f"http://{self.process.address}"

    @property
    def manifest_url(self) -> str:
        return f"{self.url}/{SAMPLE_ID}/manifest.mpd"

    def health(self) -> dict[str, Any]:
        """The agent's ``/healthz`` (its statistics)."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result


class StreamingCluster:
    """Origin, edges, DNS, tracker and a seeding peer as processes; viewers on demand."""

    def __init__(
        self,
        folder: Path,
        library: Path,
        *,
        block: int,
        edges: int = 2,
        port: int = 18080,
        seed: bool = True,
    ) -> None:
        if not 1 <= block <= 245:
            raise ValueError("block must leave room for 10 /24s below 127.0.255")
        self.folder = Path(folder)
        self.block = block
        self.port = port
        self.addresses = Addresses(block, port)
        self.edge_count = edges
        self.with_seed = seed
        self.data_dir = self.folder / "data"
        self.logs = self.folder / "logs"
        self.processes: dict[str, RoleProcess] = {}
        self.viewers: dict[str, Viewer] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not self.data_dir.exists():
            shutil.copytree(library, self.data_dir)
        self.config_file = self.folder / "cluster.toml"
        self.config_file.write_text(self._toml(), encoding="utf-8")

    # -- addresses -----------------------------------------------------------------------

    def net(self, offset: int, host: int) -> str:
        return self.addresses.net(offset, host)

    @property
    def origin_address(self) -> str:
        return self.addresses.origin

    def edge_address(self, index: int) -> str:
        return self.addresses.edge(index)

    @property
    def dns_address(self) -> str:
        return self.addresses.dns

    def tracker_url(self, index: int = 1) -> str:
        return f"http://{self.net(4, index)}:16969/announce"

    def peer_host(self, index: int) -> str:
        return self.addresses.peer_host(index)

    @property
    def torrent(self) -> Path:
        return self.data_dir / "library" / SAMPLE_ID / f"{SAMPLE_ID}.torrent"

    @property
    def cdn_url(self) -> str:
        return self.addresses.cdn_url

    def _toml(self) -> str:
        edges = "".join(
            f"""
[[edges]]
name = "edge-{index}"
region = "{"eu" if index % 2 else "us"}"
listen = "{self.edge_address(index)}"
"""
            for index in range(1, self.edge_count + 1)
        )
        return f"""
[cluster]
name = "streaming-{self.block}"
data_dir = "{self.data_dir}"
run_dir = "{self.folder / "run"}"

[[regions]]
name = "eu"
viewer_prefix = "{self.net(7, 0)}/24"
latency_ms = {{ us = 40 }}

[[regions]]
name = "us"
viewer_prefix = "{self.net(8, 0)}/24"
latency_ms = {{ eu = 40 }}

[origin]
listen = "{self.origin_address}"
{edges}
[dns]
listen = "{self.dns_address}"
metrics_listen = "{self.net(3, 1)}:19153"
health_interval = "500ms"
health_timeout = "300ms"
zones = [
  {{ origin = "netcinema.test", records = ["video 300 IN CNAME video.kingcdn.test."] }},
  {{ origin = "kingcdn.test" }},
]

[tracker]
listen = "{self.net(4, 1)}:16969"
interval = "5s"
min_interval = "1s"

[peers]
count = 0
listen_prefix = "{self.net(5, 0)}/24"
prefetch_seconds = "20s"
urgent_seconds = "4s"
"""

    # -- processes -------------------------------------------------------------------------

    def _role(self, name: str, *args: str) -> RoleProcess:
        process = RoleProcess(
            name, seedcast_command("--config", str(self.config_file), *args), log_dir=self.logs
        )
        self.processes[name] = process
        return process

    def start(self) -> StreamingCluster:
        started = [
            self._role("origin", "origin", "--name", "origin").start(),
            self._role("dns", "dns", "--name", "dns").start(),
            self._role("tracker", "tracker", "--name", "tracker", "--no-udp").start(),
        ]
        for index in range(1, self.edge_count + 1):
            started.append(self._role(f"edge-{index}", "edge", "--name", f"edge-{index}").start())
        try:
            for process in started:
                process.wait_ready()
            if self.with_seed:
                # After the tracker is up: its first announce registers it at once.
                self.start_seed("seed", 1, self.tracker_url())
        except BaseException:
            self.stop()
            raise
        return self

    def start_seed(self, name: str, index: int, tracker: str, *, wait: bool = True) -> RoleProcess:
        """A peer seeding the library's own files (announcing to ``tracker``)."""
        process = self._role(
            name,
            "--data",
            str(self.data_dir / "library"),
            "peer",
            "--name",
            name,
            "--seed",
            "--torrent",
            str(self.torrent),
            "--listen",
            f"{self.peer_host(index)}:6881",
            "--tracker",
            tracker,
            "--metrics",
            "off",
        ).start()
        return process.wait_ready() if wait else process

    def start_tracker(self, name: str, index: int) -> RoleProcess:
        address = self.tracker_url(index).removeprefix("http://").removesuffix("/announce")
        return self._role(name, "tracker", "--name", name, "--listen", address, "--no-udp")

    def restart(self, name: str) -> RoleProcess:
        process = self.processes[name]
        process.stop()
        return process.start().wait_ready()

    def start_viewer(
        self,
        index: int,
        region: str = "eu",
        *,
        tracker: str | None = None,
        extra: Sequence[str] = (),
        wait: bool = True,
    ) -> Viewer:
        """``seedcast peer --agent`` as viewer-``index`` of ``region`` (peer address index+10)."""
        name = f"viewer-{index}"
        host = self.peer_host(index + 10)
        process = self._role(
            name,
            "peer",
            "--name",
            name,
            "--listen",
            f"{host}:6881",
            "--agent",
            "--agent-listen",
            f"{host}:8081",
            "--region",
            region,
            "--torrent",
            str(self.torrent),
            "--tracker",
            tracker or self.tracker_url(),
            *extra,
        ).start()
        viewer = Viewer(name, process, region)
        self.viewers[name] = viewer
        if wait:
            process.wait_ready()
        return viewer

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def __enter__(self) -> StreamingCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
