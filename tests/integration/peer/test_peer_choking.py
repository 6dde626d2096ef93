"""Tit-for-tat at swarm level (#19): a peer that never unchokes anyone falls behind."""

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


async def progress_when_the_first_finishes(
    fixture: TorrentFixture, settings: SwarmSettings
) -> tuple[list[int], int]:
    """1 seed, 7 honest leechers and 1 free-rider that never unchokes anyone.

    Returns the pieces each leecher had when the first honest one completed:
    (honest, free-rider). Everyone runs to completion.
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
    snapshot: list[int] = []

    def on_piece(_: object) -> None:
        if not snapshot and any(swarm.complete for swarm in honest):
            snapshot.extend(swarm.picker.have_count for swarm in everyone[1:])

    for swarm in honest:
        swarm.add_piece_listener(on_piece)
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
    assert all(swarm.complete for swarm in everyone)
    return snapshot[:-1], snapshot[-1]


async def test_a_free_rider_falls_behind_the_honest_peers(tmp_path: Path) -> None:
    fixture = make_torrent(tmp_path, sizes={"movie.bin": 4 * MiB}, piece_length=64 * KiB)
    settings = SwarmSettings(
        upload_rate=512 * KiB, download_rate=4 * MiB, regular_unchokes=2, retry_seconds=1.0
    )
    honest, rider = await progress_when_the_first_finishes(fixture, settings)
    print(
        f"pieces when the first honest peer completed: honest {sorted(honest)}, free-rider {rider}"
    )
    # Tit-for-tat: while everyone still downloads, the peer that gives nothing
    # back is behind the honest ones. (Finish times converge once honest peers
    # seed; `seedcast bench swarm --free-riders 1` prints their ratio.)
    assert rider < statistics.median(honest)
    fixture.assert_identical(tmp_path / "free-rider")
