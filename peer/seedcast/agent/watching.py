"""A viewer that watches: the headless player streaming through its own agent.

When ``peers.play_seconds`` is set (``seedcast up --demo`` does), each viewer
started by the launcher plays that much of the video through its agent, like
a person with a player pointed at ``http://<agent>/<id>/manifest.mpd``.
Viewer k joins ``(k - 1) * peers.play_stagger`` seconds after it is ready,
so later viewers find earlier ones already holding pieces.

Progress is published as scalar ``player_*`` figures in the agent's status
(state waiting|playing|done|failed, played seconds, startup, stalls, bitrate,
bytes by source), which ``seedcast status`` and the demo's table show.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError
from seedcast.http11 import HttpClient
from seedcast.player.abr import make_abr
from seedcast.player.session import PlayerOptions, PlayerReport, play

log = logging.getLogger("seedcast.agent.player")


def join_delay(name: str, stagger: float) -> float:
    """Viewer ``viewer-3`` waits 2 * stagger; names without a number don't wait."""
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) - 1) * stagger if match else 0.0


def player_status(report: PlayerReport | None, state: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"player_state": state}
    if report is not None:
        figures.update(
            player_played_s=report.played_seconds,
            player_startup_s=report.startup_delay_s,
            player_stalls=report.stall_count,
            player_stall_s=report.stall_seconds,
            player_bitrate_kbps=report.avg_bitrate_kbps,
            player_switches=report.switches,
            player_bytes_peers=report.bytes_from_peers,
            player_bytes_edges=report.bytes_from_edges,
            player_bytes_origin=report.bytes_from_origin,
        )
    return figures


async def watch_through_agent(
    manifest_url: str, config: ClusterConfig, name: str, status: dict[str, Any]
) -> None:
    """Play ``manifest_url`` as configured; keeps ``status`` current. Never raises."""
    status.update(player_status(None, "waiting"))
    await trio.sleep(join_delay(name, config.peers.play_stagger))
    status["player_state"] = "playing"

    def progress(report: PlayerReport) -> None:
        status.update(player_status(report, "playing"))

    options = PlayerOptions(seconds=config.peers.play_seconds)
    try:
        async with HttpClient(connect_timeout=3.0, read_timeout=30.0) as client:
            report = await play(
                manifest_url,
                make_abr(config.peers.abr),
                client,
                options=options,
                on_segment=progress,
            )
    except SeedcastError as error:
        log.warning("playback failed", extra={"fields": {"url": manifest_url, "error": str(error)}})
        status["player_state"] = "failed"
        status["player_error"] = str(error)
        return
    status.update(player_status(report, "done"))
    log.info(
        "playback finished",
        extra={
            "fields": {
                "played_s": report.played_seconds,
                "stalls": report.stall_count,
                "startup_s": report.startup_delay_s,
                "p2p_bytes": report.bytes_from_peers,
            }
        },
    )
