"""Tit-for-tat at swarm level (#19): a peer that never unchokes anyone finishes later."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from conftest import TorrentFixture, make_torrent
from seedcast.peer.swarm import Swarm, SwarmSettings
from seedcast.units import KiB, MiB

pytestmark = pytest.mark.slow
TIMEOUT = 120


async def finish_times(
    fixture: TorrentFixture, settings: SwarmSettings
) -> tuple[list[float], float]:
    """1 seed, 7 honest leechers and 1 free-rider that never unchokes anyone.

    Returns the seconds each took to complete: (honest, free-rider).
    """

    def peer(name: str, host: str, **changes: object) -> Swarm:
        own = replace(settings, local_address=host, **changes)  # type: ignore[arg-type]
        return fixture.swarm(
            fixture.seed_dir if name == "seed" else fixture.tmp / name,
            name=name,
            host=host,
            settings=own,
        )

    seed = peer("seed", "127.0.40.1", upload_rate=1 * MiB)
    honest = [peer(f"honest-{n}", f"127.0.40.{10 + n}") for n in range(7)]
    rider = peer("free-rider", "127.0.40.30", regular_unchokes=0, optimistic_unchokes=0)
    everyone = [seed, *honest, rider]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for swarm in everyone:
                await nursery.start(swarm.serve)
            for swarm in everyone[1:]:
                for other in everyone:
                    if other is not swarm:
                        assert other.listen_address is not None
                        swarm.add_peer(*other.listen_address)
            for swarm in everyone[1:]:
                await swarm.wait_complete()
            nursery.cancel_scope.cancel()
    assert rider.statistics().bytes_uploaded == 0
    times = [swarm.statistics().seconds_to_complete for swarm in everyone[1:]]
    finished = [value for value in times if value is not None]
    assert len(finished) == len(times)
    return finished[:-1], finished[-1]


async def test_a_free_rider_finishes_after_the_honest_peers(tmp_path: Path) -> None:
    fixture = make_torrent(tmp_path, sizes={"movie.bin": 4 * MiB}, piece_length=64 * KiB)
    settings = SwarmSettings(
        upload_rate=512 * KiB, download_rate=4 * MiB, regular_unchokes=2, retry_seconds=1.0
    )
    honest, rider = await finish_times(fixture, settings)
    print(f"honest {sorted(honest)} free-rider {rider}")
    assert rider > statistics.median(honest)
    fixture.assert_identical(tmp_path / "free-rider")
