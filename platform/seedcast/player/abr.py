"""Adaptive bitrate: which representation to fetch next.

Three classic rules, each a plain object whose ``choose`` is a pure function
of the ladder (bits per second, lowest first) and an :class:`AbrObservation`
(buffer level, recent throughput, current choice). No clock, no I/O.

* :class:`ThroughputAbr` — the highest bitrate under a safety factor times
  the harmonic mean of the last few download throughputs.
* :class:`BbaAbr` — BBA-0 of Huang et al. (SIGCOMM 2014): below the
  reservoir take the lowest rate, above reservoir + cushion the highest, in
  between follow a linear rate map, changing rate only when the map crosses
  the next rate up or falls below the current one (hysteresis).
* :class:`BolaAbr` — BOLA-BASIC of Spiteri et al. (INFOCOM 2016): pick the
  rate maximising ``(V * (utility + gamma_p) - buffer) / size`` with
  logarithmic utilities; V and gamma_p are set so the lowest rate wins at
  the minimum buffer and the highest at the buffer target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AbrObservation:
    buffer_seconds: float
    segment_seconds: float
    throughput_bps: tuple[float, ...] = ()
    """Measured download throughputs, bits per second, newest last."""
    current: int | None = None
    """Index of the representation fetched last, None before the first."""


class Abr(Protocol):
    name: str

    def choose(self, bitrates: Sequence[int], observation: AbrObservation) -> int: ...


def harmonic_mean(samples: Sequence[float]) -> float:
    positive = [sample for sample in samples if sample > 0]
    if not positive:
        return 0.0
    return len(positive) / sum(1 / sample for sample in positive)


@dataclass(slots=True)
class ThroughputAbr:
    safety: float = 0.9
    window: int = 5
    name: str = "throughput"

    def choose(self, bitrates: Sequence[int], observation: AbrObservation) -> int:
        estimate = harmonic_mean(observation.throughput_bps[-self.window :])
        if estimate <= 0:
            return 0  # nothing measured yet: start low, like most players
        budget = estimate * self.safety
        best = 0
        for index, bitrate in enumerate(bitrates):
            if bitrate <= budget:
                best = index
        return best


@dataclass(slots=True)
class BbaAbr:
    reservoir_seconds: float = 4.0
    cushion_seconds: float = 10.0
    name: str = "bba"

    def choose(self, bitrates: Sequence[int], observation: AbrObservation) -> int:
        top = len(bitrates) - 1
        buffer = observation.buffer_seconds
        current = 0 if observation.current is None else min(observation.current, top)
        if buffer <= self.reservoir_seconds:
            return 0
        if buffer >= self.reservoir_seconds + self.cushion_seconds:
            return top
        lowest, highest = bitrates[0], bitrates[top]
        mapped = lowest + (buffer - self.reservoir_seconds) / self.cushion_seconds * (
            highest - lowest
        )
        rate_up = bitrates[min(current + 1, top)]
        rate_down = bitrates[max(current - 1, 0)]
        if mapped >= rate_up and current < top:
            # Step up to the highest rate still under the map.
            return max(index for index, bitrate in enumerate(bitrates) if bitrate <= mapped)
        if mapped <= rate_down and current > 0:
            # Step down to the lowest rate above the map (never below it).
            candidates = [index for index, bitrate in enumerate(bitrates) if bitrate > mapped]
            return min(candidates) if candidates else top
        return current


@dataclass(slots=True)
class BolaAbr:
    minimum_buffer_seconds: float = 4.0
    buffer_target_seconds: float = 16.0
    name: str = "bola"

    def choose(self, bitrates: Sequence[int], observation: AbrObservation) -> int:
        if len(bitrates) == 1:
            return 0
        # Utilities ln(S_m / S_1) + 1, so the lowest rate has utility 1.
        utilities = [math.log(bitrate / bitrates[0]) + 1 for bitrate in bitrates]
        target = max(
            self.buffer_target_seconds, self.minimum_buffer_seconds + observation.segment_seconds
        )
        gamma_p = (utilities[-1] - 1) / (target / self.minimum_buffer_seconds - 1)
        control = self.minimum_buffer_seconds / gamma_p
        best, best_score = 0, -math.inf
        for index, (bitrate, utility) in enumerate(zip(bitrates, utilities, strict=True)):
            score = (control * (utility + gamma_p) - observation.buffer_seconds) / bitrate
            if score >= best_score:
                best, best_score = index, score
        if observation.throughput_bps and observation.current is not None:
            # BOLA-O's guard against oscillation: don't step up past what the
            # network has shown it can carry.
            sustainable = harmonic_mean(observation.throughput_bps[-5:])
            if best > observation.current and bitrates[best] > sustainable:
                best = max(
                    observation.current,
                    max(
                        (index for index, bitrate in enumerate(bitrates) if bitrate <= sustainable),
                        default=0,
                    ),
                )
        return best


ABR_RULES: dict[str, type[ThroughputAbr] | type[BbaAbr] | type[BolaAbr]] = {
    "throughput": ThroughputAbr,
    "bba": BbaAbr,
    "bola": BolaAbr,
}


def make_abr(name: str) -> Abr:
    try:
        return ABR_RULES[name]()
    except KeyError:
        raise ValueError(f"unknown ABR rule {name!r} (known: {', '.join(ABR_RULES)})") from None
