"""Streaming viewers under a virtual clock: cdn vs hybrid, 10^5 viewers on one core.

Each viewer is a row of numpy arrays (segment bytes left, buffer, playhead,
throughput samples, bytes by source), advanced in steps of ``dt``:

* **Arrivals**: the streaming bench's Poisson process
  (:func:`seedcast.bench.streaming.poisson_arrivals`, same seed, same
  instants) or a flash crowd (everyone within ``flash_seconds``).
* **Player**: fetches one segment at a time (DASH, 2 s segments of the
  ladder's renditions plus audio), buffers at most ``max_buffer`` seconds,
  starts playing when the first segment is in (startup delay = arrival to
  first frame), stalls when the buffer runs dry. The rendition of each
  segment is the product's ABR rule (:func:`seedcast.player.abr.make_abr`) --
  evaluated once per (buffer, throughput, current rendition) cell of a table,
  so 10^5 players make vectorised look-ups instead of 10^7 Python calls.
* **Edges**: each viewer's edge is the DNS's round-robin answer
  (:func:`seedcast.nameserver.policies.round_robin` in arrival order, or
  :func:`~seedcast.nameserver.policies.rendezvous` by address); an
  edge's egress (``edge_up``, unlimited by default) is shared max-min fair
  among its viewers, each limited by its download cap.
* **Hybrid**: the agent scheduler's rule (:class:`seedcast.agent.scheduler.
  SchedulerSettings`): a segment the player will need within
  ``urgent_seconds`` comes from the edge; one further ahead comes from peers
  when some viewer present has it (viewers who arrived earlier are ahead in
  the video). The peers' upload (each viewer's ``upload`` cap, while it is
  present) is pooled and shared max-min fair among the viewers fetching from
  peers. A viewer leaves when its video ends.

What this leaves out: per-piece exchange and choking (the piece-level model
of :mod:`seedcast.sim.swarm` has them, for file distribution), and the
locality of who holds which segment. It is a flow model of the streaming
bench's scenario, not a run of the agent's code.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from seedcast.agent.scheduler import SchedulerSettings
from seedcast.nameserver.policies import Edge, rendezvous, round_robin
from seedcast.player.abr import AbrObservation, make_abr
from seedcast.sim.fluid import water_fill

__all__ = ["StreamSettings", "abr_table", "simulate_streaming"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AUDIO_BPS = 128_000
SEGMENT_SECONDS = 2.0
_BUFFER_BINS = np.arange(0.0, 60.5, 0.5)
_THROUGHPUT_BINS = np.geomspace(50_000, 2e9, 160)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    viewers: int = 50
    strategy: str = "hybrid"
    arrivals: str = "poisson"
    """``poisson`` (``rate`` per second) or ``flash`` (uniform within ``flash_seconds``)."""
    rate: float = 1.0
    flash_seconds: float = 10.0
    video_seconds: float = 60.0
    bitrates: tuple[int, ...] = (300_000, 600_000)
    """Video renditions, bits per second, lowest first (audio is added)."""
    upload: float = 2_000_000 / 8
    download: float = 8_000_000 / 8
    edges: int = 2
    edge_up: float = 0.0
    abr: str = "bola"
    max_buffer: float = 12.0
    urgent_seconds: float = SchedulerSettings().urgent_seconds
    efficiency: float = 1.0
    """Share of the pooled peer upload that reaches viewers (calibrate like the fluid's)."""
    start_seconds: float = 0.0
    """Fixed cost from arrival to the first request (agent start, manifest)."""
    dt: float = 0.1
    seed: int = 1
    policy: str = "round-robin"
    """The DNS edge policy: ``round-robin`` or ``consistent-hash`` (rendezvous per viewer)."""


def abr_table(name: str, bitrates: Sequence[int]) -> npt.NDArray[np.int8]:
    """The rule's choice for each (buffer bin, throughput bin, current rendition + 1) cell."""
    rule = make_abr(name)
    table = np.zeros((len(_BUFFER_BINS), len(_THROUGHPUT_BINS) + 1, len(bitrates) + 1), np.int8)
    for b, buffer in enumerate(_BUFFER_BINS):
        for t in range(len(_THROUGHPUT_BINS) + 1):
            samples = () if t == 0 else (float(_THROUGHPUT_BINS[t - 1]),)
            for current in range(len(bitrates) + 1):
                observation = AbrObservation(
                    buffer_seconds=float(buffer),
                    segment_seconds=SEGMENT_SECONDS,
                    throughput_bps=samples,
                    current=None if current == 0 else current - 1,
                )
                table[b, t, current] = rule.choose(list(bitrates), observation)
    return table


def _arrivals(settings: StreamSettings) -> FloatArray:
    from seedcast.bench.streaming import poisson_arrivals

    rng = random.Random(settings.seed)
    if settings.arrivals == "flash":
        return np.sort(
            np.array([rng.uniform(0, settings.flash_seconds) for _ in range(settings.viewers)])
        )
    if settings.viewers <= 100_000:
        return np.array(poisson_arrivals(settings.viewers, settings.rate, rng))
    generator = np.random.default_rng(settings.seed)
    gaps = generator.exponential(1 / settings.rate, settings.viewers)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def _edges_of(settings: StreamSettings, pool: Sequence[Edge]) -> IntArray:
    """Each viewer's edge: the DNS policy's answer for it (round-robin: in arrival order,
    which repeats every len(pool) viewers; consistent-hash: by the viewer's address)."""
    count = settings.viewers
    if settings.policy == "consistent-hash":
        # Distinct addresses, 10.x.y.z; a /24 per 256 viewers.
        names = (f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}" for k in range(count))
        return np.array([pool.index(rendezvous(pool, name, 1)[0]) for name in names])
    cycle = [pool.index(round_robin(pool, 1, k)[0]) for k in range(min(count, len(pool)))]
    return np.resize(np.array(cycle, dtype=np.int64), count)


def simulate_streaming(settings: StreamSettings) -> dict[str, Any]:
    """Run one strategy; returns per-viewer arrays and totals (see :func:`viewer_results`)."""
    count = settings.viewers
    segments = max(1, math.ceil(settings.video_seconds / SEGMENT_SECONDS))
    rates = np.array(settings.bitrates, dtype=np.float64) + AUDIO_BPS
    segment_bytes = rates * SEGMENT_SECONDS / 8
    table = abr_table(settings.abr, settings.bitrates)
    arrive = _arrivals(settings) + settings.start_seconds
    pool = [Edge(f"edge-{n + 1}", f"127.0.20.{n + 1}", "any", 4) for n in range(settings.edges)]
    edge_of = _edges_of(settings, pool)
    edge_cap = settings.edge_up if settings.edge_up > 0 else math.inf
    down = settings.download if settings.download > 0 else math.inf
    hybrid = settings.strategy == "hybrid"

    next_segment = np.zeros(count, dtype=np.int64)
    left = np.zeros(count)
    fetching = np.zeros(count, dtype=bool)
    fetch_start = np.zeros(count)
    current = np.full(count, -1, dtype=np.int64)
    buffer = np.zeros(count)
    played = np.zeros(count)
    playing = np.zeros(count, dtype=bool)
    first_frame = np.full(count, math.nan)
    stall = np.zeros(count)
    stalls = np.zeros(count, dtype=np.int64)
    in_stall = np.zeros(count, dtype=bool)
    switches = np.zeros(count, dtype=np.int64)
    bits_played = np.zeros(count)
    from_peer_now = np.zeros(count, dtype=bool)
    by_source = {"peers": np.zeros(count), "edges": np.zeros(count)}
    throughput = np.full((count, 5), math.nan)
    samples = np.zeros(count, dtype=np.int64)
    gone = np.zeros(count, dtype=bool)
    furthest = 0  # the furthest segment any present viewer holds (availability from peers)

    now = 0.0
    dt = settings.dt
    end = float(arrive.max()) + settings.video_seconds * 3 + 60
    while now < end and not gone.all():
        present = (arrive <= now) & ~gone
        # Start the next segment where the buffer has room.
        idle = (
            present
            & ~fetching
            & (next_segment < segments)
            & (buffer + SEGMENT_SECONDS <= settings.max_buffer + 1e-9)
        )
        if idle.any():
            who = np.flatnonzero(idle)
            valid = np.isfinite(throughput[who])
            with np.errstate(divide="ignore", invalid="ignore"):
                harmonic = valid.sum(axis=1) / np.where(valid, 1 / throughput[who], 0).sum(axis=1)
            t_bin = np.where(
                samples[who] > 0,
                np.searchsorted(_THROUGHPUT_BINS, np.nan_to_num(harmonic), side="right"),
                0,
            )
            t_bin = np.clip(t_bin, 0, len(_THROUGHPUT_BINS))
            b_bin = np.clip(
                np.searchsorted(_BUFFER_BINS, buffer[who], side="right") - 1,
                0,
                len(_BUFFER_BINS) - 1,
            )
            choice = table[b_bin, t_bin, current[who] + 1].astype(np.int64)
            switches[who] += (current[who] >= 0) & (choice != current[who])
            current[who] = choice
            left[who] = segment_bytes[choice]
            fetching[who] = True
            fetch_start[who] = now
            if hybrid:
                # Urgent (within urgent_seconds of its play time, or not playing yet): edge.
                relaxed = playing[who] & (buffer[who] >= settings.urgent_seconds)
                from_peer_now[who] = relaxed & (next_segment[who] < furthest)
        active = fetching & present
        moved = np.zeros(count)
        peer_fetch = active & from_peer_now
        edge_fetch = active & ~from_peer_now
        if peer_fetch.any():
            who = np.flatnonzero(peer_fetch)
            supply = settings.efficiency * settings.upload * float(present.sum() - 1)
            moved[who] = water_fill(np.full(len(who), down), supply) * dt
        if edge_fetch.any():
            who = np.flatnonzero(edge_fetch)
            if math.isinf(edge_cap):
                moved[who] = down * dt
            else:
                for edge in range(settings.edges):
                    mine = who[edge_of[who] == edge]
                    if len(mine):
                        moved[mine] = water_fill(np.full(len(mine), down), edge_cap) * dt
        moved = np.minimum(moved, left)
        left -= moved
        by_source["peers"] += np.where(peer_fetch, moved, 0.0)
        by_source["edges"] += np.where(edge_fetch, moved, 0.0)
        done = active & (left <= 1e-9)
        if done.any():
            who = np.flatnonzero(done)
            took = np.maximum(now + dt - fetch_start[who], dt)
            bps = segment_bytes[current[who]] * 8 / took
            throughput[who, samples[who] % 5] = bps
            samples[who] += 1
            fetching[who] = False
            buffer[who] += SEGMENT_SECONDS
            bits_played[who] += rates[current[who]] * SEGMENT_SECONDS
            next_segment[who] += 1
            furthest = max(furthest, int(next_segment[who].max()))
            starting = who[~playing[who]]
            playing[starting] = True
            first_frame[starting] = now + dt
            in_stall[who] = False
        # Playback.
        watching = present & playing
        drained = watching & (buffer <= 1e-9) & (next_segment < segments)
        new_stalls = drained & ~in_stall
        stalls += new_stalls
        in_stall |= drained
        stall += np.where(drained, dt, 0.0)
        step = np.minimum(buffer, dt) * watching
        buffer -= step
        played += step
        finished = watching & (next_segment >= segments) & (buffer <= 1e-9)
        gone |= finished
        now += dt

    startup = first_frame - arrive
    return {
        "arrival_s": arrive - settings.start_seconds,
        "startup_s": startup + settings.start_seconds,
        "played_s": played,
        "stall_s": stall,
        "stalls": stalls,
        "switches": switches,
        "bitrate_kbps": np.where(played > 0, bits_played / np.maximum(played, 1e-9) / 1000, 0.0),
        "bytes_peers": by_source["peers"],
        "bytes_edges": by_source["edges"],
        "finished": gone,
        "edge_of": edge_of,
    }


def viewer_results(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-viewer dicts in the shape the streaming bench's workers report
    (:func:`seedcast.bench.streaming.summarise_viewers` reads them)."""
    results = []
    for k in range(len(outcome["arrival_s"])):
        startup = float(outcome["startup_s"][k])
        known = math.isfinite(startup)
        results.append(
            {
                "viewer": k + 1,
                "region": "any",
                "arrival_s": round(float(outcome["arrival_s"][k]), 3),
                "event": "done" if outcome["finished"][k] else "failed",
                "reason": None
                if outcome["finished"][k]
                else "did not finish in the simulated time",
                "join_to_play_s": startup if known else None,
                "report": {
                    "startup_delay_s": startup if known else None,
                    "played_seconds": float(outcome["played_s"][k]),
                    "stall_seconds": float(outcome["stall_s"][k]),
                    "stall_count": int(outcome["stalls"][k]),
                    "avg_bitrate_kbps": float(outcome["bitrate_kbps"][k]),
                    "switches": int(outcome["switches"][k]),
                    "bytes_from_peers": int(outcome["bytes_peers"][k]),
                    "bytes_from_edges": int(outcome["bytes_edges"][k]),
                    "bytes_from_origin": 0,
                    "renditions": [],
                },
            }
        )
    return results
