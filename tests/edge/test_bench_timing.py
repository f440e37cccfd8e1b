"""edge.bench.timing: statistics and repetition control on known inputs (fake clocks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.bench.timing import (
    Timing,
    measure,
    measure_interleaved,
    repetitions_for,
    sigma_clip,
)


class FakeClock:
    """A clock that advances by a scripted amount on every call to the timed function."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


def test_percentiles_on_known_samples():
    t = Timing(first_ms=9.0, samples_ms=tuple(float(x) for x in range(1, 101)))
    assert t.median_ms == pytest.approx(50.5)
    assert t.p95_ms == pytest.approx(95.05)
    assert t.p99_ms == pytest.approx(99.01)
    assert t.min_ms == 1.0 and t.max_ms == 100.0
    assert t.mean_ms == pytest.approx(50.5)
    assert t.repetitions == 100
    s = t.summary()
    assert s["p50_ms"] == pytest.approx(50.5) and s["first_ms"] == 9.0
    assert s["outliers"] == 0


def test_sigma_clip_drops_a_stray_sample_and_keeps_order():
    data = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 10.1, 10.0, 9.9, 10.2, 250.0]
    kept = sigma_clip(data, sigma=3.0)
    np.testing.assert_array_equal(kept, data[:-1])
    t = Timing(first_ms=1.0, samples_ms=tuple(data))
    assert t.outliers == 1
    assert t.trimmed().max_ms == pytest.approx(10.2)
    assert t.trimmed().first_ms == 1.0


def test_sigma_clip_keeps_equal_or_too_few_samples():
    np.testing.assert_array_equal(sigma_clip([5.0] * 10), [5.0] * 10)
    np.testing.assert_array_equal(sigma_clip([1.0, 100.0]), [1.0, 100.0])


def test_sigma_clip_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sigma_clip([1.0, 2.0, 3.0], sigma=0)
    with pytest.raises(ValueError):
        sigma_clip([[1.0]])


def test_scaled_divides_every_sample():
    t = Timing(first_ms=16.0, samples_ms=(8.0, 16.0)).scaled(1 / 8)
    assert t.first_ms == 2.0 and t.samples_ms == (1.0, 2.0)


@pytest.mark.parametrize("first_s, expected", [(0.1, 10), (0.001, 100), (10.0, 3), (0.0, 100)])
def test_repetitions_fill_the_minimum_time_within_bounds(first_s, expected):
    assert repetitions_for(first_s, min_time_s=1.0, min_reps=3, max_reps=100) == expected


def test_repetitions_reject_inconsistent_bounds():
    with pytest.raises(ValueError):
        repetitions_for(0.1, min_time_s=1.0, min_reps=0, max_reps=10)
    with pytest.raises(ValueError):
        repetitions_for(0.1, min_time_s=1.0, min_reps=5, max_reps=4)


def test_measure_records_first_call_apart_warms_up_and_fills_min_time():
    # durations are powers of two so the float arithmetic is exact:
    # first call 2^-4 s (cold), then 2^-7 s each; 2^-4 s / 2^-7 s = 8 timed runs
    clock = FakeClock(itertools.chain([2.0**-4], itertools.repeat(2.0**-7)))
    t = measure(clock.work, warmup=2, min_time_s=2.0**-4, min_reps=3, max_reps=1000,
                clock=clock)
    assert t.first_ms == pytest.approx(62.5)
    assert t.repetitions == 8
    assert clock.calls == 1 + 2 + 8
    assert t.median_ms == pytest.approx(1000 * 2.0**-7)


def test_measure_respects_max_reps():
    clock = FakeClock(itertools.repeat(1e-6))
    t = measure(clock.work, warmup=0, min_time_s=10.0, min_reps=1, max_reps=7, clock=clock)
    assert t.repetitions == 7


def test_measure_interleaved_runs_rounds_in_order_and_times_each_step():
    log: list[str] = []
    now = [0.0]
    cost = {"a": 2.0**-10, "b": 3 * 2.0**-10}  # exact in binary

    def step(name):
        def run():
            log.append(name)
            now[0] += cost[name]
        return run

    t = measure_interleaved({"a": step("a"), "b": step("b")}, warmup=1,
                            min_time_s=20 * 2.0**-10, min_rounds=2, max_rounds=50,
                            clock=lambda: now[0])
    # a round costs 4 units: 20 / 4 = 5 rounds, after one first call and one warm-up round
    assert t["a"].repetitions == t["b"].repetitions == 5
    assert log == ["a", "b"] * (1 + 1 + 5)
    assert t["a"].median_ms == pytest.approx(1000 * 2.0**-10)
    assert t["b"].median_ms == pytest.approx(3000 * 2.0**-10)
    assert list(t) == ["a", "b"]


def test_measure_interleaved_settle_runs_untimed_calls_before_each_timed_one():
    log: list[str] = []
    now = [0.0]
    cost = {"a": 2.0**-10, "b": 3 * 2.0**-10}

    def step(name):
        def run():
            log.append(name)
            now[0] += cost[name] * (2 if log[-2:-1] != [name] else 1)  # slow after another
        return run

    t = measure_interleaved({"a": step("a"), "b": step("b")}, warmup=0, min_time_s=0.0,
                            min_rounds=3, max_rounds=3, settle=1, clock=lambda: now[0])
    assert log == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert t["a"].median_ms == pytest.approx(1000 * 2.0**-10)  # not the doubled cost
    assert t["b"].median_ms == pytest.approx(3000 * 2.0**-10)
    with pytest.raises(ValueError, match="settle"):
        measure_interleaved({"a": step("a")}, settle=-1)


def test_measure_interleaved_needs_a_step():
    with pytest.raises(ValueError):
        measure_interleaved({})
