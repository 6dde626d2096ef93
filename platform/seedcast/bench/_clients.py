"""Virtual clients of the distribution benchmark: many per process, real sockets each.

``python -m seedcast.bench._clients`` reads a job (one JSON line) on stdin,
prepares its clients and prints ``{"event": "ready"}``; then it waits for a
``{"start_at": <unix time>}`` line, starts every client at that instant and
prints one ``{"event": "complete", "client": k, "elapsed": s}`` line per
client that has the whole file (``"failed"`` with a reason otherwise), plus
``{"event": "progress", "bytes": n}`` twice a second. When stdin closes it
stops, prints ``{"event": "statistics", "clients": [...]}`` and exits.

Modes (``job["mode"]``):

- ``http``: each client is an :class:`~seedcast.http11.HttpClient` bound to
  its own address (127.0.41.k) that GETs the file from its server (origin or
  edge), pays every received chunk into its own download bucket (d_i, the
  ingress cap) and checks the SHA-1 of what it got.
- ``peer``: each client is a :class:`~seedcast.peer.swarm.Swarm` (its own
  listener, connections, upload/download buckets and address 127.0.40.k);
  with ``webseed`` set it also runs a :class:`~seedcast.bench._webseed.WebSeed`
  against its edge (the hybrid strategy). Completion = every piece verified.
- ``libtorrent``: each client is a libtorrent session (the reference swarm),
  bound to its own address, with the same caps; ``seed`` clients start
  seeding at once, the others wait for ``start_at``.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from pathlib import Path
from typing import Any

import trio
from seedcast.bench._webseed import WebSeed
from seedcast.bench._worker import Emit, JobInput, report_progress, run_worker
from seedcast.errors import ProtocolError, TransportError
from seedcast.http11 import HttpClient
from seedcast.peer.metainfo import Metainfo
from seedcast.peer.storage import Storage
from seedcast.peer.swarm import Swarm, SwarmSettings
from seedcast.ratelimit import TokenBucket
from seedcast.testing.libtorrent_peer import LibtorrentPeer

__all__ = ["main"]


def _fresh_dir(path: str) -> Path:
    directory = Path(path)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


class _HttpClients:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.received: dict[int, int] = {}
        self.connections: dict[int, int] = {}

    async def prepare(self) -> None:
        return None

    def progress(self) -> int:
        return sum(self.received.values())

    async def run(self, start_at: float, emit: Emit) -> None:
        async with trio.open_nursery() as nursery:
            for spec in self.job["clients"]:
                nursery.start_soon(self._client, spec, start_at, emit)

    async def _client(self, spec: dict[str, Any], start_at: float, emit: Emit) -> None:
        index = spec["index"]
        bucket = TokenBucket(spec["download"]) if spec["download"] else None
        client = HttpClient(
            connect_timeout=10.0,
            read_timeout=120.0,
            max_connections_per_host=1,
            local_address=spec["address"],
        )
        digest = hashlib.sha1()
        self.received[index] = 0
        try:
            async with client.stream("GET", spec["url"]) as response:
                if response.status != 200:
                    raise TransportError(f"HTTP {response.status}")
                async for chunk in response.iter_bytes():
                    if bucket is not None:
                        await bucket.consume(len(chunk))
                    digest.update(chunk)
                    self.received[index] += len(chunk)
            if self.received[index] != self.job["size"] or digest.hexdigest() != self.job["sha1"]:
                raise TransportError(f"got {self.received[index]} bytes that don't match the file")
            emit({"event": "complete", "client": index, "elapsed": time.time() - start_at})
        except (TransportError, ProtocolError, OSError) as error:
            emit({"event": "failed", "client": index, "reason": str(error)})
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    def statistics(self) -> list[dict[str, Any]]:
        return [
            {"client": index, "from_server": received}
            for index, received in sorted(self.received.items())
        ]

    def close(self) -> None:
        return None


class _PeerClients:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.peers: list[tuple[dict[str, Any], Any, Any]] = []

    async def prepare(self) -> None:
        metainfo = Metainfo.parse(_read(self.job["torrent"]))
        extra = self.job.get("settings", {})
        for spec in self.job["clients"]:
            directory = _fresh_dir(spec["dir"])
            rng = random.Random(self.job["seed"] * 100_003 + spec["index"])
            swarm = Swarm(
                metainfo,
                Storage(metainfo, directory),
                settings=SwarmSettings(
                    upload_rate=spec["upload"],
                    download_rate=spec["download"],
                    local_address=spec["address"],
                    **extra,
                ),
                listen=(spec["address"], 0),
                announce_urls=[self.job["announce"]],
                rng=rng,
                name=f"client-{spec['index']}",
                have=[],
            )
            webseed = None
            if spec.get("webseed"):
                webseed = WebSeed(
                    swarm,
                    spec["webseed"],
                    rng=random.Random(rng.random()),
                    local_address=spec["address"],
                )
            self.peers.append((spec, swarm, webseed))

    def progress(self) -> int:
        return sum(
            swarm.bytes_downloaded + (webseed.bytes_received if webseed else 0)
            for _, swarm, webseed in self.peers
        )

    async def run(self, start_at: float, emit: Emit) -> None:
        async with trio.open_nursery() as nursery:
            for spec, swarm, webseed in self.peers:
                await nursery.start(swarm.serve)
                nursery.start_soon(self._watch, spec, swarm, start_at, emit)
                if webseed is not None:
                    nursery.start_soon(webseed.run)

    @staticmethod
    async def _watch(spec: dict[str, Any], swarm: Any, start_at: float, emit: Emit) -> None:
        await swarm.wait_complete()
        emit({"event": "complete", "client": spec["index"], "elapsed": time.time() - start_at})

    def statistics(self) -> list[dict[str, Any]]:
        result = []
        for spec, swarm, webseed in self.peers:
            snapshot = swarm.statistics()
            entry: dict[str, Any] = {
                "client": spec["index"],
                "from_peers": snapshot.bytes_downloaded,
                "uploaded": snapshot.bytes_uploaded,
                "hash_failures": snapshot.hash_failures,
                "protocol_errors": snapshot.protocol_errors,
            }
            if webseed is not None:
                web = webseed.statistics()
                entry |= {
                    "from_edge": web.bytes_received,
                    "edge_wasted": web.bytes_wasted,
                    "edge_hash_failures": web.hash_failures,
                    "edge_errors": web.errors,
                }
            result.append(entry)
        return result

    def close(self) -> None:
        for _, swarm, _ in self.peers:
            swarm.storage.close()


class _LibtorrentClients:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.peers: list[tuple[dict[str, Any], Any]] = []

    async def prepare(self) -> None:
        torrent = _read(self.job["torrent"])
        for spec in self.job["clients"]:
            directory = Path(spec["dir"]) if spec.get("seed") else _fresh_dir(spec["dir"])
            peer = LibtorrentPeer(
                torrent,
                directory,
                host=spec["address"],
                upload_rate=spec["upload"],
                download_rate=spec["download"],
                extra_settings={"rate_limit_ip_overhead": False},
            )
            await peer.wait_checked()
            if not spec.get("seed"):
                peer.handle.pause()
            elif not peer.is_seeding():
                raise RuntimeError(f"libtorrent seed found no complete copy in {directory}")
            self.peers.append((spec, peer))

    def progress(self) -> int:
        return sum(
            int(peer.status().total_wanted_done)
            for spec, peer in self.peers
            if not spec.get("seed")
        )

    async def run(self, start_at: float, emit: Emit) -> None:
        pending = []
        for spec, peer in self.peers:
            if not spec.get("seed"):
                peer.handle.resume()
                pending.append((spec, peer))
        while pending:
            await trio.sleep(0.05)  # libtorrent has no trio API: poll its status
            for item in list(pending):
                spec, peer = item
                if peer.is_seeding():
                    emit(
                        {
                            "event": "complete",
                            "client": spec["index"],
                            "elapsed": time.time() - start_at,
                        }
                    )
                    pending.remove(item)
        await trio.sleep_forever()

    def statistics(self) -> list[dict[str, Any]]:
        result = []
        for spec, peer in self.peers:
            status = peer.status()
            result.append(
                {
                    "client": spec["index"],
                    "seed": bool(spec.get("seed")),
                    "from_peers": int(status.total_payload_download),
                    "uploaded": int(status.total_payload_upload),
                }
            )
        return result

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        for _, peer in self.peers:
            await peer.aclose()


_MODES: dict[str, type[_HttpClients] | type[_PeerClients] | type[_LibtorrentClients]] = {
    "http": _HttpClients,
    "peer": _PeerClients,
    "libtorrent": _LibtorrentClients,
}


async def _serve(emit: Emit) -> None:
    lines = JobInput()
    job = await lines.job()
    if job is None:
        return
    runner = _MODES[job["mode"]](job)
    try:
        await runner.prepare()
        emit({"event": "ready"})
        start_at = await lines.start_at()
        if start_at is None:
            return
        await trio.sleep(max(0.0, start_at - time.time()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, start_at, emit)
            nursery.start_soon(report_progress, emit, lambda: {"bytes": runner.progress()})
            await lines.wait_closed()
            nursery.cancel_scope.cancel()
        emit({"event": "statistics", "clients": runner.statistics()})
    finally:
        runner.close()
        if isinstance(runner, _LibtorrentClients):
            with trio.CancelScope(shield=True):
                await runner.aclose()


def main() -> None:
    run_worker(_serve)


if __name__ == "__main__":
    main()
