"""``seedcast bench swarm``: a capped swarm against the P2P bound and against libtorrent.

What it measures (all in one run, on loopback):

1. **Seedcast swarm**: one seed and N leechers (virtual peers spread over
   worker processes, each with its own sockets, buckets and address
   127.0.40.k) share an F-byte file through the Seedcast tracker; seed
   upload u_s, peer upload u_i, download d. The figure is the last leecher's
   completion time, set beside the bound
   ``max(F/u_s, F/d_min, N*F/(u_s + sum u_i))`` (their ratio).
2. **libtorrent swarm**: the same swarm from libtorrent sessions with the same
   caps (``ignore_limits_on_local_network`` off so loopback peers are capped,
   ``allow_multiple_connections_per_ip`` on, IP overhead not charged, as ours
   doesn't), the same tracker.
3. **One-to-one throughput**, uncapped: a seed and a leecher, ours (two
   processes) and libtorrent's (two sessions), in MB/s.

Workers are ``python -m seedcast.bench.swarm`` processes started through
:func:`seedcast.bench._cluster.open_run_cluster` (stopped by PID at the end),
speaking :mod:`seedcast.bench._worker`'s line protocol: a JSON job on stdin,
completions as JSON lines, stop when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from seedcast.bench._cluster import open_run_cluster
from seedcast.bench._worker import Emit, JobInput, run_worker
from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError, UsageError
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.testing.libtorrent_peer import LibtorrentPeer
from seedcast.units import MiB, format_size, parse_rate, parse_size

__all__ = ["configure", "run"]

_ADDRESS_PREFIX = "127.0.40."
WORKER = "seedcast.bench.swarm"
"""The worker module: this one (``python -m seedcast.bench.swarm``)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--leechers",
        metavar="N",
        type=int,
        action="append",
        default=None,
        help="leechers in the swarm (repeatable: 8, 16, 32; default 8)",
    )
    parser.add_argument("--size", default="64MiB", help="file size F (default 64MiB)")
    parser.add_argument(
        "--piece-length",
        default="auto",
        help="piece length (default: what `seedcast torrent create` picks for F, 32 KiB for 64 MiB)",
    )
    parser.add_argument(
        "--seed-upload", default="4MiB/s", help="seed upload cap u_s (default 4MiB/s)"
    )
    parser.add_argument(
        "--peer-upload", default="1MiB/s", help="leecher upload cap u_i (default 1MiB/s)"
    )
    parser.add_argument(
        "--download", default="8MiB/s", help="leecher download cap d (default 8MiB/s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, os.cpu_count() or 1),
        help="worker processes for our peers",
    )
    parser.add_argument(
        "--throughput-size", default="256MiB", help="file size of the uncapped one-to-one test"
    )
    parser.add_argument("--no-libtorrent", action="store_true", help="skip the libtorrent runs")
    parser.add_argument("--no-throughput", action="store_true", help="skip the one-to-one test")
    parser.add_argument("--no-swarm", action="store_true", help="skip the swarm test")
    parser.add_argument(
        "--trace", action="store_true", help="print the swarm's total upload rate every 2 s"
    )
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the results as JSON"
    )
    parser.add_argument(
        "--workdir", metavar="DIR", default=None, help="scratch folder (default: a temp dir)"
    )


@dataclass(frozen=True, slots=True)
class SwarmResult:
    implementation: str
    leechers: int
    completions: tuple[float, ...]
    """Seconds from start to each leecher's completion (missing = timed out)."""
    timed_out: int

    @property
    def last(self) -> float:
        return max(self.completions) if self.completions else float("inf")


def bound(
    size: int, leechers: int, seed_upload: float, peer_upload: float, download: float
) -> float:
    """The P2P distribution bound in seconds."""
    return max(
        size / seed_upload,
        size / download if download else 0.0,
        leechers * size / (seed_upload + leechers * peer_upload),
    )


# -- the command ---------------------------------------------------------------


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    try:
        size = parse_size(args.size)
        piece_length = None if args.piece_length == "auto" else parse_size(args.piece_length)
        seed_upload = parse_rate(args.seed_upload)
        peer_upload = parse_rate(args.peer_upload)
        download = parse_rate(args.download)
        throughput_size = parse_size(args.throughput_size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not seed_upload or not peer_upload:
        raise UsageError("the swarm test needs upload caps (the bound divides by them)")
    counts = args.leechers or [8]
    if any(count < 1 or count > 250 for count in counts):
        raise UsageError("--leechers must be 1..250")
    console = Console()
    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="seedcast-swarm-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "size": size,
        "piece_length": piece_length,
        "swarms": [],
        "throughput": None,
    }
    try:
        source = _make_file(workdir / "source", "movie", "movie.bin", size)
        if not args.no_swarm:
            for count in counts:
                limit = bound(size, count, seed_upload, peer_upload, download)
                caps = (seed_upload, peer_upload, download)
                console.print(
                    f"[bold]swarm[/] N={count}, F={format_size(size)}, bound {limit:.1f} s: Seedcast ..."
                )
                ours = trio.run(
                    _seedcast_swarm,
                    config,
                    workdir,
                    source,
                    count,
                    piece_length,
                    caps,
                    limit,
                    args.workers,
                    args.trace,
                )
                theirs = None
                if not args.no_libtorrent:
                    console.print(f"[bold]swarm[/] N={count}: libtorrent ...")
                    theirs = trio.run(
                        _libtorrent_swarm, config, workdir, source, count, piece_length, caps, limit
                    )
                results["swarms"].append(_swarm_entry(count, limit, ours, theirs))
        if not args.no_throughput:
            console.print(
                f"[bold]one-to-one[/], uncapped, {format_size(throughput_size)}, best of 3 ..."
            )
            big = _make_file(workdir / "source-big", "big", "big.bin", throughput_size)
            # Best of three, alternating, so a noisy neighbour hurts neither side alone.
            ours_runs: list[float] = []
            theirs_runs: list[float] = []
            for _ in range(3):
                ours_runs.append(trio.run(_seedcast_throughput, workdir, big))
                if not args.no_libtorrent:
                    theirs_runs.append(trio.run(_libtorrent_throughput, workdir, big))
            ours_rate = max(ours_runs)
            theirs_rate = max(theirs_runs) if theirs_runs else None
            results["throughput"] = {
                "size": throughput_size,
                "seedcast_mb_s": ours_rate,
                "libtorrent_mb_s": theirs_rate,
            }
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    if results["swarms"]:
        table = Table(title="Swarm: last leecher's completion vs the P2P bound")
        for column in (
            "N",
            "bound s",
            "Seedcast s",
            "ratio",
            "libtorrent s",
            "ratio",
            "ours/theirs",
        ):
            table.add_column(column, justify="right")
        for entry in results["swarms"]:
            theirs_s = entry.get("libtorrent_last_s")
            table.add_row(
                str(entry["leechers"]),
                f"{entry['bound_s']:.1f}",
                _seconds(entry["seedcast_last_s"], entry["seedcast_timed_out"]),
                f"{entry['seedcast_ratio']:.2f}",
                "-" if theirs_s is None else _seconds(theirs_s, entry["libtorrent_timed_out"]),
                "-" if theirs_s is None else f"{entry['libtorrent_ratio']:.2f}",
                "-"
                if theirs_s is None or entry["libtorrent_timed_out"]
                else f"{entry['seedcast_last_s'] / theirs_s:.2f}",
            )
        console.print(table)
    if results["throughput"]:
        throughput = results["throughput"]
        table = Table(title="One-to-one loopback throughput, uncapped")
        for column in ("Seedcast MB/s", "libtorrent MB/s", "ratio"):
            table.add_column(column, justify="right")
        theirs_rate = throughput["libtorrent_mb_s"]
        table.add_row(
            f"{throughput['seedcast_mb_s']:.0f}",
            "-" if theirs_rate is None else f"{theirs_rate:.0f}",
            "-" if theirs_rate is None else f"{throughput['seedcast_mb_s'] / theirs_rate:.2f}",
        )
        console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _seconds(value: float, timed_out: int) -> str:
    text = f"{value:.1f}"
    return f"{text} ({timed_out} unfinished)" if timed_out else text


def _swarm_entry(
    count: int, limit: float, ours: SwarmResult, theirs: SwarmResult | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "leechers": count,
        "bound_s": limit,
        "seedcast_last_s": ours.last,
        "seedcast_ratio": ours.last / limit,
        "seedcast_timed_out": ours.timed_out,
        "seedcast_completions_s": list(ours.completions),
    }
    if theirs is not None:
        entry |= {
            "libtorrent_last_s": theirs.last,
            "libtorrent_ratio": theirs.last / limit,
            "libtorrent_timed_out": theirs.timed_out,
            "libtorrent_completions_s": list(theirs.completions),
        }
    return entry


def _make_file(root: Path, name: str, filename: str, size: int) -> Path:
    """``root/name/filename`` with ``size`` random bytes; returns ``root`` (a download dir)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if not path.exists() or path.stat().st_size != size:
        with path.open("wb") as handle:
            remaining = size
            while remaining:
                chunk = min(remaining, 4 * MiB)
                handle.write(random.randbytes(chunk))
                remaining -= chunk
    return root


def _torrent(source: Path, announce: str, piece_length: int | None) -> bytes:
    (folder,) = [path for path in source.iterdir() if path.is_dir()]
    files = [path.name for path in folder.iterdir()]
    return create_torrent(
        folder, files, announce=announce, name=folder.name, piece_length=piece_length
    )


async def _start_tracker(config: ClusterConfig, nursery: trio.Nursery) -> str:
    import dataclasses

    # The tracker (+50 ms) loads when the run starts:
    # `seedcast bench` imports every mode module for its --help (see seedcast.bench.commands).
    from seedcast.tracker.server import TrackerService

    tracker_config = dataclasses.replace(config.tracker, allowlist=(), udp=False)
    service = TrackerService(dataclasses.replace(config, tracker=tracker_config), "bench-tracker")
    (address,) = await nursery.start(
        lambda task_status: service.serve(["127.0.30.1:0"], task_status=task_status)
    )
    return f"http://{address}/announce"


# -- Seedcast swarm: workers ------------------------------------------------------


async def _seedcast_swarm(
    config: ClusterConfig,
    workdir: Path,
    source: Path,
    count: int,
    piece_length: int | None,
    caps: tuple[float, float, float],
    limit: float,
    workers: int,
    trace: bool = False,
) -> SwarmResult:
    seed_upload, peer_upload, download = caps
    run_dir = workdir / f"seedcast-{count}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    async with trio.open_nursery() as nursery:
        announce = await _start_tracker(config, nursery)
        torrent = run_dir / "swarm.torrent"
        torrent.write_bytes(_torrent(source, announce, piece_length))
        peers = [
            {"index": 1, "dir": str(source), "seed": True, "upload": seed_upload, "download": 0.0}
        ] + [
            {
                "index": 1 + number,
                "dir": str(run_dir / f"leecher-{number}"),
                "seed": False,
                "upload": peer_upload,
                "download": download,
            }
            for number in range(1, count + 1)
        ]
        jobs: list[list[dict[str, Any]]] = [[] for _ in range(max(1, min(workers, len(peers))))]
        for position, peer in enumerate(peers):
            jobs[position % len(jobs)].append(peer)
        start_at = time.time() + 2.0 + 0.05 * count
        completions: list[float] = []
        uploaded: dict[int, int] = {}
        done = trio.Event()

        def on_message(message: dict[str, Any]) -> None:
            if message.get("event") == "uploaded":
                slot = round((message["time"] - start_at) / 2)
                uploaded[slot] = uploaded.get(slot, 0) + message["bytes"]
            elif message.get("event") == "complete" and not message.get("seed"):
                completions.append(message["time"] - start_at)
                if len(completions) == count:
                    done.set()

        # Leaving the run cluster closes the workers' stdin and waits for them (then kills).
        async with open_run_cluster(run_dir / "logs") as cluster:
            for number, job in enumerate(jobs, 1):
                work = {"torrent": str(torrent), "peers": job, "start_at": start_at, "trace": trace}
                await cluster.start_worker(f"swarm-{number}", work, on_message, module=WORKER)
            with trio.move_on_after(start_at - time.time() + 5 * limit + 30):
                await done.wait()
        nursery.cancel_scope.cancel()
    shutil.rmtree(run_dir, ignore_errors=True)
    if trace:
        capacity = (seed_upload + count * peer_upload) / MiB
        for slot in sorted(uploaded)[1:]:
            previous = uploaded.get(slot - 1, 0)
            rate = (uploaded[slot] - previous) / 2 / MiB
            print(
                f"  t={2 * slot:4d} s  upload {rate:6.2f} MiB/s of {capacity:.0f}", file=sys.stderr
            )
    return SwarmResult("seedcast", count, tuple(sorted(completions)), count - len(completions))


async def _worker(report: Emit) -> None:
    """Run the virtual peers of one job (the first line on stdin) until stdin closes."""
    lines = JobInput()
    job = await lines.job()
    if job is None:
        return
    if job.get("pair"):
        await _pair_worker(job, lines, report)
        return
    # The swarm (+38 ms) loads in the worker processes only: this module is also the mode
    # module, and `seedcast bench` imports every mode module for its --help
    # (see seedcast.bench.commands).
    from seedcast.peer.storage import Storage
    from seedcast.peer.swarm import Swarm, SwarmSettings

    metainfo = Metainfo.parse(await trio.Path(job["torrent"]).read_bytes())
    swarms = []
    for peer in job["peers"]:
        storage = Storage(metainfo, Path(peer["dir"]))
        have = storage.check() if peer["seed"] else []
        host = f"{_ADDRESS_PREFIX}{peer['index']}"
        swarm = Swarm(
            metainfo,
            storage,
            settings=SwarmSettings(
                upload_rate=peer["upload"], download_rate=peer["download"], local_address=host
            ),
            listen=(host, 0),
            rng=random.Random(peer["index"]),
            name=f"peer-{peer['index']}",
            have=have,
        )
        swarms.append((peer, swarm))

    async def watch(peer: dict[str, Any], swarm: Swarm) -> None:
        await swarm.wait_complete()
        report(
            {"event": "complete", "peer": peer["index"], "seed": peer["seed"], "time": time.time()}
        )

    async def trace() -> None:
        # Cumulative bytes uploaded by this worker's peers, every 2 s from the start.
        tick = job["start_at"]
        while True:
            tick += 2.0
            await trio.sleep(max(0.0, tick - time.time()))
            total = sum(swarm.bytes_uploaded for _, swarm in swarms)
            report({"event": "uploaded", "time": tick, "bytes": total})

    async with trio.open_nursery() as nursery:
        await trio.sleep(max(0.0, job["start_at"] - time.time()))
        for peer, swarm in swarms:
            await nursery.start(swarm.serve)
            if not peer["seed"]:
                nursery.start_soon(watch, peer, swarm)
        if job.get("trace"):
            nursery.start_soon(trace)
        await lines.wait_closed()
        nursery.cancel_scope.cancel()
    for peer, swarm in swarms:
        statistics = swarm.statistics()
        report(
            {
                "event": "statistics",
                "peer": peer["index"],
                "uploaded": statistics.bytes_uploaded,
                "downloaded": statistics.bytes_downloaded,
                "errors": statistics.protocol_errors,
            }
        )
        swarm.storage.close()


# -- libtorrent swarm ------------------------------------------------------------------


async def _libtorrent_swarm(
    config: ClusterConfig,
    workdir: Path,
    source: Path,
    count: int,
    piece_length: int | None,
    caps: tuple[float, float, float],
    limit: float,
) -> SwarmResult:

    seed_upload, peer_upload, download = caps
    run_dir = workdir / f"libtorrent-{count}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    extra = {"rate_limit_ip_overhead": False}
    completions: list[float] = []
    async with trio.open_nursery() as nursery:
        announce = await _start_tracker(config, nursery)
        torrent = _torrent(source, announce, piece_length)
        seed = LibtorrentPeer(
            torrent,
            source,
            host=f"{_ADDRESS_PREFIX}1",
            upload_rate=seed_upload,
            extra_settings=extra,
        )
        # The seed stays up (a pause would announce "stopped", and libtorrent then
        # waits the tracker's min interval before announcing again); it is in the
        # tracker before the leechers start, so their first announce finds it.
        await seed.wait_checked()
        with trio.move_on_after(10):
            while not seed.announces:
                await seed.wait_announced()
        leechers = [
            LibtorrentPeer(
                torrent,
                run_dir / f"leecher-{number}",
                host=f"{_ADDRESS_PREFIX}{1 + number}",
                upload_rate=peer_upload,
                download_rate=download,
                extra_settings=extra,
                paused=True,  # no announce before the start: libtorrent would back off
            )
            for number in range(1, count + 1)
        ]
        start = time.monotonic()
        for peer in leechers:
            peer.release()
        pending = set(range(count))
        with trio.move_on_after(5 * limit + 30):
            while pending:
                await trio.sleep(0.05)  # polling libtorrent's status: it has no trio API
                for number in list(pending):
                    if leechers[number].is_seeding():
                        completions.append(time.monotonic() - start)
                        pending.discard(number)
        if pending:
            status = seed.status()
            print(
                f"  libtorrent seed: state={status.state} peers={status.num_peers} "
                f"paused={status.paused} errors={seed.errors[-3:]}",
                file=sys.stderr,
            )
        for number in sorted(pending):
            status = leechers[number].status()
            print(
                f"  libtorrent leecher {number + 1} unfinished: state={status.state} "
                f"progress={status.progress:.2f} peers={status.num_peers} "
                f"tracker={status.current_tracker!r} errors={leechers[number].errors[-3:]}",
                file=sys.stderr,
            )
        for peer in [seed, *leechers]:
            await peer.aclose()
        nursery.cancel_scope.cancel()
    shutil.rmtree(run_dir, ignore_errors=True)
    return SwarmResult("libtorrent", count, tuple(sorted(completions)), len(pending))


# -- one-to-one throughput ------------------------------------------------------------


async def _seedcast_throughput(workdir: Path, source: Path) -> float:
    """A seed process and a leecher process, uncapped: MB/s of the leecher's download."""
    run_dir = workdir / "throughput-seedcast"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    torrent = run_dir / "big.torrent"
    torrent_bytes = _torrent(source, "", 1 * MiB)
    torrent.write_bytes(torrent_bytes)
    size = _payload_size(torrent_bytes)
    start_at = time.time() + 1.5
    seed_job = {
        "torrent": str(torrent),
        "peers": [{"index": 101, "dir": str(source), "seed": True, "upload": 0.0, "download": 0.0}],
        "start_at": start_at - 1.0,
    }
    leech_job = {
        "torrent": str(torrent),
        "peers": [
            {
                "index": 102,
                "dir": str(run_dir / "leecher"),
                "seed": False,
                "upload": 0.0,
                "download": 0.0,
            }
        ],
        "start_at": start_at,
        "connect": [f"{_ADDRESS_PREFIX}101"],
    }
    elapsed = await _direct_pair(seed_job, leech_job, run_dir / "logs")
    shutil.rmtree(run_dir, ignore_errors=True)
    return size / elapsed / 1e6


async def _direct_pair(seed_job: dict[str, Any], leech_job: dict[str, Any], log_dir: Path) -> float:
    """Run a seed worker and a leecher worker; the leecher connects to the seed's port."""
    got: dict[str, Any] = {}
    listening, finished = trio.Event(), trio.Event()

    def on_message(message: dict[str, Any]) -> None:
        if message.get("event") == "listening":
            got["port"] = message["port"]
        elif message.get("event") == "complete":
            got["elapsed"] = message["time"] - message["started"]
        elif message.get("event") != "exit":
            return
        # An early exit wakes the waiter too: it reports the worker's last lines.
        (listening if message.get("worker") == "pair-seed" else finished).set()

    async with open_run_cluster(log_dir) as cluster:
        seed = {**seed_job, "pair": "seed"}
        await cluster.start_worker("pair-seed", seed, on_message, module=WORKER)
        with trio.fail_after(300):
            await listening.wait()
        if "port" not in got:
            raise SeedcastError(f"the seed worker exited: {' | '.join(cluster.tail('pair-seed'))}")
        leecher = {**leech_job, "pair": "leecher", "seed_port": got["port"]}
        await cluster.start_worker("pair-leecher", leecher, on_message, module=WORKER)
        with trio.fail_after(300):
            await finished.wait()
        if "elapsed" not in got:
            tail = " | ".join(cluster.tail("pair-leecher"))
            raise SeedcastError(f"the leecher worker exited: {tail}")
    return float(got["elapsed"])


def _payload_size(torrent: bytes) -> int:
    return sum(entry.length for entry in Metainfo.parse(torrent).real_files)


async def _pair_worker(job: dict[str, Any], lines: JobInput, report: Emit) -> None:
    # The swarm (+38 ms) loads in the worker processes only: this module is also the mode
    # module, and `seedcast bench` imports every mode module for its --help
    # (see seedcast.bench.commands).
    from seedcast.peer.storage import Storage
    from seedcast.peer.swarm import Swarm, SwarmSettings

    metainfo = Metainfo.parse(await trio.Path(job["torrent"]).read_bytes())
    (peer,) = job["peers"]
    storage = Storage(metainfo, Path(peer["dir"]))
    host = f"{_ADDRESS_PREFIX}{peer['index']}"
    swarm = Swarm(
        metainfo,
        storage,
        settings=SwarmSettings(local_address=host),
        listen=(host, 0),
        rng=random.Random(peer["index"]),
        have=storage.check() if peer["seed"] else [],
    )
    async with trio.open_nursery() as nursery:
        await trio.sleep(max(0.0, job["start_at"] - time.time()))
        await nursery.start(swarm.serve)
        assert swarm.listen_address is not None
        if job["pair"] == "seed":
            report({"event": "listening", "port": swarm.listen_address[1]})
        else:
            started = time.time()
            swarm.add_peer(job["connect"][0], job["seed_port"])
            await swarm.wait_complete()
            report({"event": "complete", "started": started, "time": time.time()})
        await lines.wait_closed()
        nursery.cancel_scope.cancel()
    storage.close()


async def _libtorrent_throughput(workdir: Path, source: Path) -> float:
    run_dir = workdir / "throughput-libtorrent"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    torrent = _torrent(source, "", 1 * MiB)
    size = _payload_size(torrent)
    seed = LibtorrentPeer(torrent, source, host=f"{_ADDRESS_PREFIX}101")
    await seed.wait_checked()
    leecher = LibtorrentPeer(torrent, run_dir / "leecher", host=f"{_ADDRESS_PREFIX}102")
    await leecher.wait_checked()
    start = time.monotonic()
    leecher.connect(f"{_ADDRESS_PREFIX}101", seed.port)
    with trio.fail_after(300):
        await leecher.wait_seeding()
    elapsed = time.monotonic() - start
    await leecher.aclose()
    await seed.aclose()
    shutil.rmtree(run_dir, ignore_errors=True)
    return size / elapsed / 1e6


def main() -> None:
    run_worker(_worker)


if __name__ == "__main__":
    main()
