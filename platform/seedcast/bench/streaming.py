"""``seedcast bench streaming``: V viewers arriving (Poisson or a flash crowd), cdn vs hybrid.

One sample video is made and published once per benchmark run (``seedcast
sample`` + ``seedcast publish`` into a scratch data dir; by default 60 s at
640x360 with a 600 and a 300 kbit/s rendition and 128 kbit/s audio). Then, for each
strategy, a real cluster of separate processes starts on its own loopback
block -- origin, E edges (``[[edges]] upload`` caps their egress), the
Seedcast DNS with health checks, and for hybrid a tracker -- and V viewers
join at the instants of one Poisson process (``--rate`` viewers per second,
drawn from ``random.Random(--seed)``), or all within ``--flash`` seconds
(``--arrivals flash``: a flash crowd, uniform instants); both strategies see
the same arrivals and regions:

- **cdn**: each viewer is the headless player streaming
  ``http://video.netcinema.test:<port>/<id>/manifest.mpd`` straight from the
  edge the DNS names for its region address;
- **hybrid**: each viewer is a viewer agent (its own swarm and HTTP server)
  plus the headless player pointed at it; the agent takes what is due soon
  from the edge and the rest from the other viewers.

Every viewer's ingress is capped by ``--download`` (one bucket for CDN and
peer bytes alike) and its swarm's upload by ``--upload``; players buffer at
most ``--max-buffer`` seconds ahead (12 s, dash.js's stable buffer). Viewers run as
virtual clients, several per worker process (``python -m
seedcast.bench._streaming_viewers``), each with its own addresses and
sockets. A viewer leaves when its player is done (``--linger`` keeps its
agent seeding a while longer).

Per strategy the record holds startup delay (the player's: manifest loaded
to first frame; median and p95) and join-to-play (arrival to first frame,
including the agent's start and the manifest), stall ratio (stall time /
play time), average bitrate, bytes by source as the players saw them, and
CDN egress read from the edges' (and origin's) ``/metrics``. For hybrid, each
viewer's agent reports the bytes it downloaded (peers' piece data plus the
edge's bodies) against the bytes its player played, and its wasted bytes by
reason; the record holds the worst and the median ratio. Results go to
``--out`` in the report format of ``seedcast bench distribution``
(results.json, results.csv, PNG plots, report.html), rewritten after each
strategy, so Ctrl-C keeps what finished. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError, UsageError
from seedcast.units import format_rate, format_size, parse_duration, parse_rate

__all__ = [
    "STRATEGIES",
    "StreamingOptions",
    "ViewerSpec",
    "configure",
    "flash_arrivals",
    "percentile",
    "plan_viewers",
    "poisson_arrivals",
    "run",
    "run_benchmark",
    "summarise_viewers",
]

TITLE = "Streaming: arriving viewers, CDN only vs hybrid CDN + P2P"
STRATEGIES = ("cdn", "hybrid")
ARRIVALS = ("poisson", "flash")
REGIONS = ("eu", "us")
MAX_VIEWERS = 240
GOAL_P2P_SHARE = 0.8
GOAL_STARTUP_S = 2.0
GOAL_STARTUP_RATIO = 1.2
GOAL_DOWNLOAD_RATIO = 1.02


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamingOptions:
    viewers: int = 50
    strategies: tuple[str, ...] = STRATEGIES
    rate: float = 1.0
    """Mean arrivals per second of the Poisson process."""
    arrivals: str = "poisson"
    """poisson (``rate``) or flash (every viewer within ``flash_seconds``)."""
    flash_seconds: float = 2.0
    video_seconds: float = 60.0
    """Length of the sample made and published for the run."""
    size: str = "640x360"
    ladder: str = "360p,240p"
    watch_seconds: float = 0.0
    """Media seconds each viewer watches; 0 = the whole video."""
    upload: float = 2_000_000 / 8
    """Each viewer's upload cap (bytes/s; 0 = none): 2 Mbit/s."""
    download: float = 8_000_000 / 8
    """Each viewer's download cap (bytes/s; 0 = none): 8 Mbit/s."""
    edges: int = 2
    edge_up: float = 0.0
    """Egress cap of each edge (bytes/s); 0 = none."""
    origin_up: float = 0.0
    abr: str = "bola"
    max_buffer: float = 12.0
    """Seconds a player buffers ahead at most (dash.js's stable buffer is 12 s)."""
    prefetch_seconds: float = 20.0
    urgent_seconds: float = 4.0
    max_connections: int = 20
    linger: float = 0.0
    """Seconds a hybrid viewer's agent keeps seeding after its player is done."""
    workers: int = 0
    """Viewer worker processes; 0 = one per 10 viewers (1 to 8)."""
    seed: int = 1
    block: int = 160
    """Loopback block: addresses 127.0.<block+1..block+8>.x."""
    port: int = 18080
    run_timeout: float = 0.0
    """Longest a strategy's run may take; 0 = last arrival + 2 x watch time + 60 s."""

    @property
    def watch_time(self) -> float:
        return self.watch_seconds or self.video_seconds

    def worker_count(self) -> int:
        if self.workers > 0:
            return max(1, min(self.workers, self.viewers))
        return max(1, min(8, math.ceil(self.viewers / 10)))

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["strategies"] = list(self.strategies)
        document["human"] = {
            "upload": format_rate(self.upload) if self.upload else "uncapped",
            "download": format_rate(self.download) if self.download else "uncapped",
            "edge_up": format_rate(self.edge_up) if self.edge_up else "uncapped",
            "origin_up": format_rate(self.origin_up) if self.origin_up else "uncapped",
        }
        return document


@dataclass(frozen=True, slots=True)
class ViewerSpec:
    index: int
    """1-based; viewer k uses the k-th address of its region and of the peer block."""
    region: str
    arrival: float
    """Seconds after the run's start."""


def poisson_arrivals(count: int, rate: float, rng: random.Random) -> list[float]:
    """Arrival instants of ``count`` viewers of a Poisson process of ``rate`` per second.

    Inter-arrival times are exponential with mean 1/rate; the first viewer
    arrives at 0 (the process is memoryless, so starting the clock at the
    first arrival changes nothing else).
    """
    if count < 0 or rate <= 0:
        raise ValueError("count must be >= 0 and rate > 0")
    arrivals: list[float] = []
    clock = 0.0
    for number in range(count):
        if number:
            clock += rng.expovariate(rate)
        arrivals.append(round(clock, 3))
    return arrivals


def flash_arrivals(count: int, seconds: float, rng: random.Random) -> list[float]:
    """A flash crowd: ``count`` instants uniform in ``[0, seconds]``, sorted, the first at 0."""
    if count < 0 or seconds < 0:
        raise ValueError("count and seconds must be >= 0")
    instants = sorted(rng.uniform(0.0, seconds) for _ in range(count))
    return [round(instant - instants[0], 3) for instant in instants]


def plan_viewers(options: StreamingOptions) -> list[ViewerSpec]:
    """The viewers of every strategy's run: same arrivals, same regions (seeded)."""
    rng = random.Random(options.seed)
    if options.arrivals == "flash":
        arrivals = flash_arrivals(options.viewers, options.flash_seconds, rng)
    else:
        arrivals = poisson_arrivals(options.viewers, options.rate, rng)
    return [
        ViewerSpec(index=number + 1, region=rng.choice(REGIONS), arrival=arrival)
        for number, arrival in enumerate(arrivals)
    ]


def run_timeout(options: StreamingOptions, viewers: Sequence[ViewerSpec]) -> float:
    if options.run_timeout > 0:
        return options.run_timeout
    last = max((viewer.arrival for viewer in viewers), default=0.0)
    return last + 2 * options.watch_time + 60.0


# -- figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise_viewers(
    strategy: str,
    results: Sequence[dict[str, Any]],
    *,
    viewers: int,
    edge_egress: int | None = None,
    origin_egress: int | None = None,
) -> dict[str, Any]:
    """A strategy's record from its viewers' ``done``/``failed`` messages and the CDN's counters.

    Bytes by source are what the players received (an agent's response says
    how many of its bytes came from peers, edges, the origin). CDN egress is
    the edges' response bytes (their ``/metrics``) plus what the origin
    served to viewers directly; without edge counters, the players' CDN bytes.
    """
    reports = [result["report"] for result in results if result.get("report")]
    finished = [result for result in results if result.get("event") == "done"]
    startups = [float(r["startup_delay_s"]) for r in reports if r["startup_delay_s"] is not None]
    joins = [
        float(result["join_to_play_s"])
        for result in results
        if result.get("join_to_play_s") is not None
    ]
    played = sum(float(r["played_seconds"]) for r in reports)
    stalled = sum(float(r["stall_seconds"]) for r in reports)
    by_source = {
        source: sum(int(r[f"bytes_from_{source}"]) for r in reports)
        for source in ("peers", "edges", "origin")
    }
    total = sum(by_source.values())
    weighted = sum(float(r["avg_bitrate_kbps"]) * float(r["played_seconds"]) for r in reports)
    agents = [result["agent"] for result in results if result.get("agent")]
    from_origin = (
        sum(int(agent["fetched"].get("origin", 0)) for agent in agents)
        if agents
        else by_source["origin"]
    )
    if edge_egress is not None:
        cdn_egress = edge_egress + from_origin
        egress_from = "edge metrics"
    else:
        cdn_egress = by_source["edges"] + by_source["origin"]
        egress_from = "players"
    record: dict[str, Any] = {
        "kind": "streaming",
        "strategy": strategy,
        "viewers": viewers,
        "finished": len(finished),
        "failed": viewers - len(finished),
        "failures": sorted({str(r.get("reason")) for r in results if r.get("event") != "done"})[:5],
        "startup_median_s": percentile(startups, 50),
        "startup_p90_s": percentile(startups, 90),
        "startup_p95_s": percentile(startups, 95),
        "join_median_s": percentile(joins, 50),
        "join_p95_s": percentile(joins, 95),
        "played_s": round(played, 3),
        "stall_s": round(stalled, 3),
        "stall_count": sum(int(r["stall_count"]) for r in reports),
        "stalled_viewers": sum(1 for r in reports if int(r["stall_count"]) > 0),
        "stall_ratio": stalled / played if played > 0 else None,
        "avg_bitrate_kbps": weighted / played if played > 0 else None,
        "switches": sum(int(r["switches"]) for r in reports),
        "bytes": {**by_source, "total": total},
        "p2p_share": by_source["peers"] / total if total else None,
        "cdn_egress_bytes": cdn_egress,
        "cdn_egress_from": egress_from,
        "edge_egress_bytes": edge_egress,
        "origin_egress_bytes": origin_egress,
        "cdn_offload": 1 - cdn_egress / total if total else None,
    }
    if agents:
        record["agents"] = {
            "uploaded": sum(int(agent["uploaded"]) for agent in agents),
            "fetched_from_peers": sum(int(agent["fetched"].get("peer", 0)) for agent in agents),
            "fetched_from_edges": sum(int(agent["fetched"].get("edge", 0)) for agent in agents),
            "fetched_from_origin": from_origin,
            "edge_runs": sum(int(agent["edge_runs"]) for agent in agents),
            "edge_failures": sum(int(agent["edge_failures"]) for agent in agents),
            "hash_failures": sum(int(agent["hash_failures"]) for agent in agents),
            "bans": sum(int(agent["bans"]) for agent in agents),
            "downloaded": sum(int(agent.get("downloaded", 0)) for agent in agents),
            "played": sum(int(agent.get("played", 0)) for agent in agents),
        }
        wasted: dict[str, int] = {}
        for agent in agents:
            for reason, count in (agent.get("wasted") or {}).items():
                wasted[reason] = wasted.get(reason, 0) + int(count)
        record["wasted_bytes"] = wasted
        ratios = [
            int(agent.get("downloaded", 0)) / int(agent["played"])
            for agent in agents
            if agent.get("played")
        ]
        record["download_ratio_max"] = max(ratios, default=None)
        record["download_ratio_median"] = percentile(ratios, 50)
    record["per_viewer"] = [_viewer_row(result) for result in results]
    return record


def _viewer_row(result: dict[str, Any]) -> dict[str, Any]:
    report = result.get("report") or {}
    received = {
        source: int(report.get(f"bytes_from_{source}", 0))
        for source in ("peers", "edges", "origin")
    }
    agent = result.get("agent") or {}
    played = int(agent.get("played", 0))
    return {
        "viewer": result.get("viewer"),
        "region": result.get("region"),
        "arrival_s": result.get("arrival_s"),
        "outcome": result.get("event"),
        "startup_s": report.get("startup_delay_s"),
        "join_s": result.get("join_to_play_s"),
        "played_s": report.get("played_seconds", 0.0),
        "stall_s": report.get("stall_seconds", 0.0),
        "stalls": report.get("stall_count", 0),
        "bitrate_kbps": report.get("avg_bitrate_kbps", 0.0),
        **{f"bytes_{source}": count for source, count in received.items()},
        "renditions": report.get("renditions", []),
        "downloaded": int(agent.get("downloaded", 0)) if agent else None,
        "download_ratio": int(agent.get("downloaded", 0)) / played if played else None,
        "wasted": sum(int(n) for n in (agent.get("wasted") or {}).values()) if agent else None,
    }


def goal_sentences(records: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's goal, checked on the largest V that has both strategies."""
    by_strategy: dict[tuple[str, int], dict[str, Any]] = {
        (str(r["strategy"]), int(r["viewers"])): r for r in records
    }
    common = sorted(
        v for (s, v) in by_strategy if s == "hybrid" and ("cdn", v) in by_strategy
    ) or sorted(v for (s, v) in by_strategy if s == "hybrid")
    if not common:
        return []
    viewers = common[-1]
    hybrid = by_strategy[("hybrid", viewers)]
    cdn = by_strategy.get(("cdn", viewers))
    sentences = []
    share = hybrid.get("p2p_share")
    if share is not None:
        verdict = "met" if share >= GOAL_P2P_SHARE else "NOT met"
        sentences.append(
            f"P2P share at V={viewers}: hybrid carried {share:.1%} of the video bytes over "
            f"P2P (goal >= {GOAL_P2P_SHARE:.0%}: {verdict})."
        )
    if cdn is not None and hybrid.get("stall_ratio") is not None:
        ours, theirs = hybrid["stall_ratio"], cdn.get("stall_ratio")
        if theirs is not None:
            verdict = "met" if ours <= theirs else "NOT met"
            sentences.append(
                f"Stall ratio at V={viewers}: hybrid {ours:.2%} vs cdn-only {theirs:.2%} "
                f"(goal: no worse: {verdict})."
            )
    if cdn is not None and cdn.get("cdn_egress_bytes"):
        sentences.append(
            f"CDN egress at V={viewers}: hybrid {format_size(hybrid['cdn_egress_bytes'])} = "
            f"{hybrid['cdn_egress_bytes'] / cdn['cdn_egress_bytes']:.3f}x cdn-only's "
            f"{format_size(cdn['cdn_egress_bytes'])} (the baseline, measured in the same run)."
        )
    worst = hybrid.get("download_ratio_max")
    if worst is not None:
        verdict = "met" if worst <= GOAL_DOWNLOAD_RATIO else "NOT met"
        sentences.append(
            f"Downloaded / played at V={viewers}: worst viewer {worst:.3f}, median "
            f"{hybrid['download_ratio_median']:.3f} (goal <= {GOAL_DOWNLOAD_RATIO}: {verdict}); "
            f"wasted {format_size(sum((hybrid.get('wasted_bytes') or {}).values()))}."
        )
    if cdn is not None:
        for key, what in (("startup_median_s", "median"), ("startup_p90_s", "p90")):
            ours, theirs = hybrid.get(key), cdn.get(key)
            if ours is not None and theirs:
                verdict = "met" if ours <= GOAL_STARTUP_RATIO * theirs else "NOT met"
                sentences.append(
                    f"Startup {what} at V={viewers}: hybrid {ours:.2f} s = {ours / theirs:.2f}x "
                    f"cdn-only's {theirs:.2f} s (goal <= {GOAL_STARTUP_RATIO}x: {verdict})."
                )
    startup = hybrid.get("startup_median_s")
    if startup is not None:
        verdict = "met" if startup < GOAL_STARTUP_S else "NOT met"
        join = hybrid.get("join_median_s")
        join_text = f"; arrival to first frame, agent start included: {join:.2f} s" if join else ""
        sentences.append(
            f"Median startup at V={viewers}: hybrid {startup:.2f} s (goal < "
            f"{GOAL_STARTUP_S:g} s: {verdict}{join_text})."
        )
    return sentences


# -- the command ----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = StreamingOptions()
    parser.add_argument(
        "--viewers", type=int, default=defaults.viewers, help="viewers V per strategy (default 50)"
    )
    parser.add_argument(
        "--strategy",
        "--strategies",
        dest="strategies",
        default=",".join(STRATEGIES),
        help="cdn, hybrid, or both comma-separated (default cdn,hybrid)",
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="mean arrivals per second (default 1)"
    )
    parser.add_argument(
        "--arrivals",
        choices=ARRIVALS,
        default=defaults.arrivals,
        help="poisson (at --rate) or flash: every viewer within --flash seconds (default poisson)",
    )
    parser.add_argument("--flash", default="2s", help="span of a flash crowd's arrivals (2s)")
    parser.add_argument(
        "--video-seconds",
        type=float,
        default=defaults.video_seconds,
        help="length of the sample published for the run (default 60)",
    )
    parser.add_argument("--size", default=defaults.size, help="sample picture size (640x360)")
    parser.add_argument(
        "--ladder", default=defaults.ladder, help="renditions published (default 360p,240p)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="media seconds each viewer watches (default 0 = the whole video)",
    )
    parser.add_argument(
        "--upload", default="2Mbit/s", help="each viewer's upload cap (default 2Mbit/s; 0 = none)"
    )
    parser.add_argument(
        "--download",
        default="8Mbit/s",
        help="each viewer's download cap, CDN and peers together (default 8Mbit/s; 0 = none)",
    )
    parser.add_argument("--edges", type=int, default=defaults.edges, help="CDN edges (default 2)")
    parser.add_argument("--edge-up", default="0", help="egress cap of each edge (default 0 = none)")
    parser.add_argument("--origin-up", default="0", help="origin's egress cap (default 0 = none)")
    parser.add_argument(
        "--abr", default=defaults.abr, help="ABR rule: throughput | bba | bola (default bola)"
    )
    parser.add_argument(
        "--max-buffer", type=float, default=defaults.max_buffer, help="player buffer, s (12)"
    )
    parser.add_argument(
        "--prefetch", default="20s", help="agents' prefetch window from peers (default 20s)"
    )
    parser.add_argument(
        "--urgent", default="4s", help="agents' urgent window served by the edge (default 4s)"
    )
    parser.add_argument(
        "--max-connections", type=int, default=defaults.max_connections, help="per agent (20)"
    )
    parser.add_argument(
        "--linger",
        default="0",
        help="how long a hybrid viewer keeps seeding after it finished (default 0)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="viewer worker processes (default 0 = one per 10 viewers, 1 to 8)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (arrivals, regions)")
    parser.add_argument(
        "--block",
        type=int,
        default=defaults.block,
        help="loopback block: the run uses 127.0.<block+1..block+8>.x (default 160)",
    )
    parser.add_argument(
        "--run-timeout",
        default="0",
        help="time bound of each strategy's run (default 0 = last arrival + 2 x watch + 60 s)",
    )
    parser.add_argument("--out", default="bench-streaming", metavar="DIR", help="output folder")
    parser.add_argument(
        "--workdir", metavar="DIR", default=None, help="scratch folder (default: a temp dir)"
    )


def options_from_args(args: argparse.Namespace) -> StreamingOptions:
    try:
        options = StreamingOptions(
            viewers=args.viewers,
            strategies=tuple(part.strip() for part in args.strategies.split(",") if part.strip()),
            rate=args.rate,
            arrivals=args.arrivals,
            flash_seconds=parse_duration(args.flash),
            video_seconds=args.video_seconds,
            size=args.size,
            ladder=args.ladder,
            watch_seconds=args.seconds,
            upload=parse_rate(args.upload),
            download=parse_rate(args.download),
            edges=args.edges,
            edge_up=parse_rate(args.edge_up),
            origin_up=parse_rate(args.origin_up),
            abr=args.abr,
            max_buffer=args.max_buffer,
            prefetch_seconds=parse_duration(args.prefetch),
            urgent_seconds=parse_duration(args.urgent),
            max_connections=args.max_connections,
            linger=parse_duration(args.linger),
            workers=args.workers,
            seed=args.seed,
            block=args.block,
            run_timeout=parse_duration(args.run_timeout),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_options(options)
    return options


def check_options(options: StreamingOptions) -> None:
    """Raise UsageError for options no run could use."""
    from seedcast.player.abr import ABR_RULES

    unknown = [name for name in options.strategies if name not in STRATEGIES]
    if unknown or not options.strategies:
        raise UsageError(
            f"--strategy: unknown {', '.join(unknown) or '(none given)'} "
            f"(known: {', '.join(STRATEGIES)})"
        )
    if not 1 <= options.viewers <= MAX_VIEWERS:
        raise UsageError(f"--viewers must be 1..{MAX_VIEWERS}")
    if options.rate <= 0 or math.isnan(options.rate):
        raise UsageError("--rate must be > 0 viewers per second")
    if options.arrivals not in ARRIVALS:
        raise UsageError(f"--arrivals: unknown {options.arrivals!r} (known: {', '.join(ARRIVALS)})")
    if not 0 <= options.flash_seconds <= 600:
        raise UsageError("--flash must be 0..600 seconds")
    if options.video_seconds < 2:
        raise UsageError("--video-seconds must be at least one 2 s segment")
    if not 1 <= options.edges <= 8:
        raise UsageError("--edges must be 1..8")
    if options.abr not in ABR_RULES:
        raise UsageError(f"--abr: unknown {options.abr!r} (known: {', '.join(ABR_RULES)})")
    if not 1 <= options.block <= 246:
        raise UsageError("--block must be 1..246 (the run uses the 8 /24s above it)")
    if options.watch_seconds < 0 or options.max_buffer <= 2:
        raise UsageError("--seconds must be >= 0 and --max-buffer > 2")


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console

    options = options_from_args(args)
    console = Console(stderr=True)
    out = Path(args.out)
    records, interrupted = run_benchmark(
        options, out, workdir=Path(args.workdir) if args.workdir else None, console=console
    )
    print_table(console, records)
    for sentence in goal_sentences([r for r in records if "error" not in r]):
        console.print(sentence)
    console.print(f"results in {out}/ (report.html, results.json, results.csv, *.png)")
    if interrupted:
        console.print("[yellow]interrupted: the report holds the strategies that finished")
        return 130
    return 0 if all("error" not in record for record in records) else 1


Progress = Callable[[int, int, float], None]
"""``progress(viewers_joined, viewers_finished, media_seconds_played)`` while a run goes."""


def run_benchmark(
    options: StreamingOptions,
    out: Path,
    *,
    workdir: Path | None = None,
    console: Any = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Publish the video, run each strategy; returns (records, interrupted).

    The report is rewritten after each strategy. Records of runs that could
    not be measured carry ``error``.
    """
    import trio
    from seedcast.bench._streaming_run import run_strategy
    from seedcast.bench.report import progress_bar as new_progress_bar
    from seedcast.bench.report import write_results
    from seedcast.testing.streaming import published_library

    check_options(options)
    out.mkdir(parents=True, exist_ok=True)
    scratch = workdir or Path(tempfile.mkdtemp(prefix="seedcast-streaming-"))
    scratch.mkdir(parents=True, exist_ok=True)
    viewers = plan_viewers(options)
    records: list[dict[str, Any]] = []
    config_echo = {
        **options.to_json(),
        "arrivals_s": [viewer.arrival for viewer in viewers],
        "regions": [viewer.region for viewer in viewers],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "loadavg_at_start": os.getloadavg()[0],
        },
        "definitions": {
            "startup": "player: manifest loaded -> playback starts (2 s buffered)",
            "join": "viewer arrives -> playback starts (agent start, torrent, manifest included)",
            "stall_ratio": "sum of stall time / sum of played time, over all viewers",
            "p2p_share": "bytes the players got from peers / all bytes the players got",
            "cdn_egress": "edges' response bytes (their /metrics) + origin bytes to viewers",
        },
    }
    interrupted = False
    progress_bar = new_progress_bar(console)
    total_media = options.viewers * options.watch_time
    try:
        with progress_bar:
            publishing = progress_bar.add_task(
                "publishing the sample",
                total=None,
                detail=f"{options.video_seconds:g} s, {options.size}, {options.ladder}",
            )
            library = published_library(
                scratch / "library",
                seconds=options.video_seconds,
                size=options.size,
                ladder=options.ladder,
            )
            progress_bar.remove_task(publishing)
            overall = progress_bar.add_task("strategies", total=len(options.strategies), detail="")
            for strategy in options.strategies:
                task = progress_bar.add_task(
                    f"{strategy} V={options.viewers}", total=total_media, detail="starting"
                )

                def update(joined: int, done: int, played: float, task: Any = task) -> None:
                    progress_bar.update(
                        task,
                        completed=min(played, total_media),
                        detail=f"joined {joined}/{options.viewers}, done {done}",
                    )

                try:
                    record = _run_sync(
                        trio.run,
                        run_strategy,
                        strategy,
                        options,
                        viewers,
                        library,
                        scratch / strategy,
                        out / "logs" / strategy,
                        update,
                    )
                except SeedcastError as error:
                    record = {
                        "kind": "streaming",
                        "strategy": strategy,
                        "viewers": options.viewers,
                        "error": str(error),
                    }
                    if console is not None:
                        console.print(f"[red]{strategy}: {error}")
                progress_bar.remove_task(task)
                records.append(record)
                _write(write_results, out, config_echo, records)
                progress_bar.advance(overall)
                if console is not None and "error" not in record:
                    console.print(line(record))
    except KeyboardInterrupt:
        interrupted = True
        _write(write_results, out, config_echo, records)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return records, interrupted


def _run_sync(runner: Callable[..., Any], *args: Any) -> Any:
    """``runner(*args)`` (``trio.run``) with errors out of their nurseries' groups.

    A Ctrl-C anywhere becomes one KeyboardInterrupt; a group of SeedcastErrors
    becomes its first one, so callers can catch them by type.
    """
    try:
        return runner(*args)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            raise KeyboardInterrupt from None
        if leaves and all(isinstance(leaf, SeedcastError) for leaf in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


def _write(
    write_results: Any, out: Path, config: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    finished = [record for record in records if "error" not in record]
    errors = [f"{r['strategy']} V={r['viewers']}: {r['error']}" for r in records if "error" in r]
    write_results(out, config, finished, title=TITLE, errors=errors)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def line(record: dict[str, Any]) -> str:
    share = record.get("p2p_share")
    ratio = record.get("stall_ratio")
    return (
        f"{record['strategy']:>7} V={record['viewers']:<3} startup median "
        f"{_seconds(record['startup_median_s'])} s p90 {_seconds(record.get('startup_p90_s'))} s "
        f"p95 {_seconds(record['startup_p95_s'])} s, "
        f"stall ratio {'-' if ratio is None else f'{ratio:.2%}'}, "
        f"P2P {'-' if share is None else f'{share:.0%}'}, "
        f"CDN egress {format_size(record['cdn_egress_bytes'])}, "
        f"{record['failed']} failed"
    )


def print_table(console: Any, records: Sequence[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    finished = [record for record in records if "error" not in record]
    if not finished:
        return
    table = Table(
        title=TITLE,
        caption="startup / p90: manifest to first frame, median / 90th percentile (s); "
        "join: arrival to first frame, median (s); stalls: stall time / play time; "
        "dl/played: bytes an agent downloaded per byte its player played (worst viewer); "
        "wasted: downloaded bytes not needed (duplicates, hash failures, skipped)",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for column in (
        "strategy",
        "V",
        "startup",
        "p90",
        "join",
        "stalls",
        "kbit/s",
        "P2P",
        "CDN egress",
        "dl/played",
        "wasted",
        "done",
    ):
        table.add_column(column, justify="right")
    for record in finished:
        share = record.get("p2p_share")
        ratio = record.get("stall_ratio")
        bitrate = record.get("avg_bitrate_kbps")
        worst = record.get("download_ratio_max")
        wasted = record.get("wasted_bytes")
        table.add_row(
            record["strategy"],
            str(record["viewers"]),
            _seconds(record["startup_median_s"]),
            _seconds(record.get("startup_p90_s")),
            _seconds(record["join_median_s"]),
            "-" if ratio is None else f"{ratio:.2%}",
            "-" if bitrate is None else f"{bitrate:.0f}",
            "-" if share is None else f"{share:.1%}",
            format_size(record["cdn_egress_bytes"]),
            "-" if worst is None else f"{worst:.3f}",
            "-" if wasted is None else format_size(sum(wasted.values())),
            f"{record['finished']}/{record['viewers']}",
        )
    console.print(table)
