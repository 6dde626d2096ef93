"""Virtual viewers of the streaming benchmark: many per process, each with its own sockets.

``python -m seedcast.bench._streaming_viewers`` reads a job (one JSON line) on
stdin, loads the cluster config it names and prints ``{"event": "ready"}``;
then it waits for ``{"start_at": <unix time>}`` and starts viewer *k* at
``start_at + arrival_k`` (the arrivals are drawn by the parent, a Poisson
process). It prints one ``{"event": "done", ...}`` line per viewer with its
player's report (or ``"failed"`` with a reason and what was played so far),
and ``{"event": "progress", ...}`` twice a second. When stdin closes it
stops the viewers still running (each reported as failed, reason
``stopped``) and exits.

A viewer is, per ``job["strategy"]``:

- ``cdn``: the headless player alone, streaming
  ``http://video.netcinema.test:<port>/<id>/manifest.mpd``: the name is
  resolved through the Seedcast DNS from the viewer's region address (so the
  DNS steers it to its region's edge) and every connection leaves from that
  address.
- ``hybrid``: a viewer agent (:class:`~seedcast.agent.server.Agent`, its own
  HTTP listener and swarm on the viewer's peer address, CDN traffic from its
  region address through the DNS) plus the headless player pointed at the
  agent. The viewer leaves the swarm ``linger`` seconds after it finished
  watching.

Caps: a viewer's ingress (``download``, the access link) is one
:class:`~seedcast.ratelimit.TokenBucket` that every byte it receives pays
into, from the CDN (the HttpClient's ``download_limit``) and from peers alike (the
swarm's download bucket is the same object); ``upload`` caps what its swarm
sends. The player <-> agent hop is inside the viewer's machine and is not
capped.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio
from seedcast.bench._worker import Emit, JobInput, report_progress, run_worker
from seedcast.http11 import HttpClient
from seedcast.ratelimit import TokenBucket

__all__ = ["main"]


class _ViewerState:
    __slots__ = ("arrived_at", "join_to_play", "report", "spec", "state")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.state = "waiting"
        self.arrived_at: float | None = None
        self.join_to_play: float | None = None
        self.report: Any = None


class _Viewers:
    def __init__(self, job: dict[str, Any], emit: Emit) -> None:
        from seedcast.config import load_config

        self.job = job
        self.emit = emit
        self.config = load_config(Path(job["config"]))
        self.states = {int(spec["index"]): _ViewerState(spec) for spec in job["viewers"]}

    def played_seconds(self) -> float:
        return float(
            sum(state.report.played_seconds for state in self.states.values() if state.report)
        )

    async def run(self, start_at: float) -> None:
        async with (
            HttpClient(connect_timeout=3.0, read_timeout=15.0) as local_client,
            trio.open_nursery() as nursery,
        ):
            for index in self.states:
                nursery.start_soon(self._viewer, index, start_at, local_client)

    async def _viewer(self, index: int, start_at: float, local_client: HttpClient) -> None:
        from seedcast.errors import SeedcastError

        state = self.states[index]
        spec = state.spec
        await trio.sleep(max(0.0, start_at + float(spec["arrival"]) - time.time()))
        state.state = "joining"
        state.arrived_at = trio.current_time()
        self.emit({"event": "joined", "viewer": index})
        extra: dict[str, Any] = {}
        try:
            if self.job["strategy"] == "hybrid":
                await self._hybrid(state, local_client, extra)
            else:
                await self._cdn(state)
        except trio.Cancelled:
            self._finish(state, "failed", "stopped before the end", extra)
            raise
        except (SeedcastError, OSError, LookupError, ValueError) as error:
            self._finish(state, "failed", f"{type(error).__name__}: {error}", extra)
            return
        self._finish(state, "done", None, extra)

    def _finish(
        self, state: _ViewerState, outcome: str, reason: str | None, extra: dict[str, Any]
    ) -> None:
        if state.state in ("done", "failed"):
            return
        state.state = outcome
        message: dict[str, Any] = {
            "event": outcome,
            "viewer": int(state.spec["index"]),
            "region": state.spec["region"],
            "arrival_s": float(state.spec["arrival"]),
            "join_to_play_s": state.join_to_play,
            "report": state.report.as_json() if state.report is not None else None,
            **extra,
        }
        if reason is not None:
            message["reason"] = reason
        self.emit(message)

    def _options(self, state: _ViewerState, local_address: str | None) -> Any:
        from seedcast.player.session import PlayerOptions

        player = self.job.get("player", {})
        return PlayerOptions(
            seconds=player.get("seconds"),
            max_buffer_seconds=float(player.get("max_buffer_seconds", 20.0)),
            startup_seconds=float(player.get("startup_seconds", 2.0)),
            local_address=local_address,
        )

    def _on_segment(self, state: _ViewerState) -> Callable[[Any], None]:
        def on_segment(report: Any) -> None:
            state.report = report
            state.state = "playing"
            if (
                state.join_to_play is None
                and report.startup_delay_s is not None
                and state.arrived_at is not None
            ):
                state.join_to_play = trio.current_time() - state.arrived_at

        return on_segment

    async def _cdn(self, state: _ViewerState) -> None:
        from seedcast.player.abr import make_abr
        from seedcast.player.session import play
        from seedcast.resolver import StubResolver

        spec = state.spec
        source = spec["source"]
        bucket = TokenBucket(spec["download"]) if spec["download"] else None
        resolver = StubResolver(self.config.dns.server, local_address=source, timeout=1.0)
        url = f"{self.job['cdn_url']}/{self.job['video_id']}/manifest.mpd"
        async with HttpClient(
            download_limit=bucket, connect_timeout=3.0, read_timeout=10.0, local_address=source
        ) as client:
            state.report = await play(
                url,
                make_abr(self.job["abr"]),
                client,
                options=self._options(state, source),
                resolve=resolver.resolve_endpoint,
                on_segment=self._on_segment(state),
            )

    async def _hybrid(
        self, state: _ViewerState, local_client: HttpClient, extra: dict[str, Any]
    ) -> None:
        from seedcast.agent.server import Agent, agent_settings_from_config
        from seedcast.agent.sources import CdnClient
        from seedcast.player.abr import make_abr
        from seedcast.player.session import play
        from seedcast.resolver import StubResolver

        spec = state.spec
        job = self.job
        index = int(spec["index"])
        source = spec["source"]
        host = spec["peer_host"]
        bucket = TokenBucket(spec["download"]) if spec["download"] else None
        storage = _fresh_dir(Path(spec["storage"]))
        settings = agent_settings_from_config(
            self.config,
            storage,
            name=f"viewer-{index}",
            listen=f"{host}:0",
            peer_host=host,
            announce_urls=(job["tracker"],),
        )
        settings = replace(
            settings,
            swarm=replace(
                settings.swarm,
                upload_rate=float(spec["upload"]),
                download_rate=0.0,  # the viewer's shared bucket, set below
                local_address=host,
            ),
        )
        resolver = StubResolver(self.config.dns.server, local_address=source, timeout=1.0)
        agent: Agent | None = None
        async with HttpClient(
            download_limit=bucket,
            connect_timeout=2.0,
            read_timeout=settings.cdn_read_timeout,
            local_address=source,
        ) as http:
            cdn = CdnClient(job["cdn_url"], http=http, resolver=resolver, local_address=source)
            agent = Agent(settings, cdn, rng=random.Random(int(job["seed"]) * 100_003 + index))
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(agent.serve)
                    session = await agent.open_video(job["video_id"])
                    session.swarm.download_bucket = bucket
                    url = f"{agent.url}/{job['video_id']}/manifest.mpd"
                    try:
                        state.report = await play(
                            url,
                            make_abr(job["abr"]),
                            local_client,
                            options=self._options(state, None),
                            on_segment=self._on_segment(state),
                        )
                        await trio.sleep(float(job.get("linger", 0.0)))
                    finally:
                        extra["agent"] = _agent_figures(agent)
                    nursery.cancel_scope.cancel()
            finally:
                agent.close()
                shutil.rmtree(storage, ignore_errors=True)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _agent_figures(agent: Any) -> dict[str, Any]:
    statistics = agent.statistics()
    return {
        "fetched": dict(statistics.fetched_bytes),
        "served": dict(statistics.served_bytes),
        "uploaded": statistics.bytes_up,
        "downloaded_from_peers": statistics.bytes_down,
        "edge_runs": statistics.edge_runs,
        "edge_failures": statistics.edge_failures,
        "hash_failures": statistics.edge_hash_failures + statistics.peer_hash_failures,
        "bans": statistics.bans,
        "peers": statistics.peers,
        "downloaded": statistics.downloaded_bytes,
        "played": statistics.played_bytes,
        "wasted": dict(statistics.wasted_bytes),
    }


async def _serve(emit: Emit) -> None:
    lines = JobInput()
    job = await lines.job()
    if job is None:
        return
    viewers = _Viewers(job, emit)
    emit({"event": "ready"})
    start_at = await lines.start_at()
    if start_at is None:
        return

    def progress() -> dict[str, Any]:
        states = viewers.states.values()
        return {
            "played": round(viewers.played_seconds(), 2),
            "active": sum(s.state in ("joining", "playing") for s in states),
        }

    async with trio.open_nursery() as nursery:

        async def run_viewers() -> None:
            await viewers.run(start_at)
            emit({"event": "finished"})

        nursery.start_soon(run_viewers)
        nursery.start_soon(report_progress, emit, progress)
        await lines.wait_closed()
        nursery.cancel_scope.cancel()


def main() -> None:
    from seedcast.logs import setup_logging

    setup_logging("bench", "streaming-viewers", level="WARNING")
    run_worker(_serve)


if __name__ == "__main__":
    main()
