"""Timing done right: warm-up, repetitions up to a minimum measured time, percentiles.

``measure`` times one callable; ``measure_interleaved`` times several round-robin (one call
of each per round) so that drift on a shared machine hits every competitor alike, which is
what a same-run ratio needs. Both use a monotonic clock (``time.perf_counter``) and return
:class:`Timing` values; nothing here prints.

Percentiles are taken over *all* samples (tail latency is what p95/p99 are for); the
sigma-clipped view (:meth:`Timing.trimmed`, :func:`sigma_clip`, Ultralytics' outlier
trimming) is there for central estimates that must ignore a stray preemption.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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
        """Number of timed calls."""
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the samples (linear interpolation)."""
        return float(np.percentile(self.samples_ms, q))

    @property
    def median_ms(self) -> float:
        """Median call time in milliseconds."""
        return self.percentile(50)

    @property
    def p95_ms(self) -> float:
        """95th percentile call time in milliseconds."""
        return self.percentile(95)

    @property
    def p99_ms(self) -> float:
        """99th percentile call time in milliseconds."""
        return self.percentile(99)

    @property
    def min_ms(self) -> float:
        """Fastest call in milliseconds."""
        return float(min(self.samples_ms))

    @property
    def max_ms(self) -> float:
        """Slowest call in milliseconds."""
        return float(max(self.samples_ms))

    @property
    def mean_ms(self) -> float:
        """Mean call time in milliseconds."""
        return float(np.mean(self.samples_ms))

    def trimmed(self, sigma: float = 3.0, iterations: int = 3) -> Timing:
        """The same timing with outliers removed by :func:`sigma_clip` (first call kept)."""
        kept = sigma_clip(self.samples_ms, sigma=sigma, iterations=iterations)
        return Timing(first_ms=self.first_ms, samples_ms=tuple(float(x) for x in kept))

    @property
    def outliers(self) -> int:
        """Samples :meth:`trimmed` drops (3 sigma, 3 iterations)."""
        return self.repetitions - self.trimmed().repetitions

    def scaled(self, factor: float) -> Timing:
        """Every sample (and the first call) multiplied by ``factor``, e.g. per tile."""
        return Timing(first_ms=self.first_ms * factor,
                      samples_ms=tuple(x * factor for x in self.samples_ms))

    def summary(self) -> dict[str, float]:
        """A JSON-ready dictionary of the statistics (samples left out)."""
        return {
            "first_ms": self.first_ms,
            "p50_ms": self.median_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "min_ms": self.min_ms,
            "repetitions": self.repetitions,
            "trimmed_mean_ms": self.trimmed().mean_ms,
            "outliers": self.outliers,
        }

    def as_dict(self) -> dict[str, object]:
        """All fields as a JSON-ready dict."""
        return asdict(self)


def sigma_clip(samples: Sequence[float], *, sigma: float = 3.0, iterations: int = 3
               ) -> np.ndarray:
    """Iteratively drop samples farther than ``sigma`` standard deviations from the mean.

    Parameters
    ----------
    samples : (N,) sequence of float
    sigma : float
        Clip distance in standard deviations (> 0).
    iterations : int
        At most this many passes; stops early when a pass drops nothing.

    Returns
    -------
    (M,) ndarray of float64
        The kept samples, in their original order (all of them if fewer than 3 or
        if they are all equal).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    data = np.asarray(samples, np.float64)
    if data.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {data.shape}")
    keep = np.ones(data.size, bool)
    for _ in range(iterations):
        kept = data[keep]
        if kept.size < 3:
            break
        mean, std = kept.mean(), kept.std()
        if std == 0:
            break
        new = keep & (np.abs(data - mean) <= sigma * std)
        if new.sum() == keep.sum():
            break
        keep = new
    return data[keep]


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


def measure_interleaved(
    steps: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 1,
    min_time_s: float = 0.5,
    min_rounds: int = 5,
    max_rounds: int = 200,
    settle: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time several callables round-robin: each round calls every step once, in order.

    ``settle`` untimed calls of a step run right before each of its timed calls, so a
    step is not charged for the state its predecessor left (caches and clock speed after
    a larger model): the timed call then sees what repeated calls of that step see.

    The first call of each step is recorded apart (``first_ms``), then ``warmup`` more
    rounds run untimed, then one timed round sets the number of rounds needed to fill
    ``min_time_s`` (at least ``min_rounds``, at most ``max_rounds``). Ratios of the
    medians are then fair on a shared machine: a slow spell hits every step alike.

    Returns
    -------
    dict
        step name → :class:`Timing`, in the order of ``steps``.
    """
    if not steps:
        raise ValueError("measure_interleaved needs at least one step")
    if settle < 0:
        raise ValueError(f"settle must be >= 0, got {settle}")
    names = list(steps)
    first: dict[str, float] = {}
    for name in names:
        t0 = clock()
        steps[name]()
        first[name] = (clock() - t0) * 1e3
    for _ in range(warmup):
        for name in names:
            steps[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}

    def one_round() -> float:
        total = 0.0
        for name in names:
            for _ in range(settle):
                steps[name]()
            t0 = clock()
            steps[name]()
            dt = clock() - t0
            samples[name].append(dt * 1e3)
            total += dt
        return total

    rounds = repetitions_for(one_round(), min_time_s=min_time_s, min_reps=min_rounds,
                             max_reps=max_rounds)
    for _ in range(rounds - 1):
        one_round()
    return {name: Timing(first_ms=first[name], samples_ms=tuple(samples[name]))
            for name in names}
