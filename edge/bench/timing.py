"""Timing done right: warm-up, repetitions up to a minimum measured time, percentiles."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Latency statistics of one measured callable, in milliseconds."""

    first_ms: float
    samples_ms: tuple[float, ...]

    @property
    def repetitions(self) -> int:
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the samples (linear interpolation)."""
        return float(np.percentile(self.samples_ms, q))

    @property
    def median_ms(self) -> float:
        return self.percentile(50)

    @property
    def p95_ms(self) -> float:
        return self.percentile(95)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)

    @property
    def min_ms(self) -> float:
        return float(min(self.samples_ms))

    def summary(self) -> dict[str, float]:
        """A JSON-ready dictionary of the statistics (samples left out)."""
        return {
            "first_ms": self.first_ms,
            "p50_ms": self.median_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "min_ms": self.min_ms,
            "repetitions": self.repetitions,
        }

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def repetitions_for(first_s: float, *, min_time_s: float, min_reps: int, max_reps: int) -> int:
    """How many timed runs fill ``min_time_s`` given one run's time, within the bounds."""
    if min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"need 1 <= min_reps <= max_reps, got {min_reps}, {max_reps}")
    if first_s <= 0:
        return max_reps
    return int(min(max_reps, max(min_reps, np.ceil(min_time_s / first_s))))


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    min_time_s: float = 0.5,
    min_reps: int = 5,
    max_reps: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn``: one first call (recorded apart), warm-up calls, then enough repetitions
    to fill ``min_time_s`` (at least ``min_reps``, at most ``max_reps``), each timed with a
    monotonic clock."""
    start = clock()
    fn()
    first = clock() - start
    for _ in range(warmup):
        fn()
    warm_start = clock()
    fn()
    one = clock() - warm_start
    reps = repetitions_for(one, min_time_s=min_time_s, min_reps=min_reps, max_reps=max_reps)
    samples = [one * 1e3]
    for _ in range(reps - 1):
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1e3)
    return Timing(first_ms=first * 1e3, samples_ms=tuple(samples))
