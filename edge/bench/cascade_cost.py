"""Cost of the cascade against the monolithic model, per field and per tile.

The construction (``docs/bench.md``):

* A ``side × side`` uint8 field (2048² by default) is tiled by ``Cascade.tile`` (fused
  normalize + tile, reflect padding: 100 tiles of 224 for 2048²).
* At defect rate ``r`` the cascade costs ``tile + stage 1 on all N tiles + stage 2 on
  round(r·N) tiles`` (the flagged tiles are gathered into a contiguous batch, as
  ``classify`` does); the monolithic model costs ``tile + monolithic on all N tiles``.
  Both in the cascade's format, threads and batch size.
* The steps are timed round-robin (:func:`edge.bench.timing.measure_interleaved`); one
  round holds one sample of every step, so each round gives one field cost and the
  percentiles are over rounds. Each timed call follows an untimed call of the same step
  (``SETTLE``), as in a deployment that runs it image after image. Speed-up =
  monolithic median / cascade median, same run.
* Stage 1 is not perfect: the flag rate it really produces at defect rate ``r`` is
  ``r·recall + (1 − r)·(1 − specificity)``, from its scores on the evaluation set
  mixed to that rate. The cost with stage 2 on round(flag rate · N) tiles is reported
  beside the nominal one.

The same code backs ``benchmarks/test_bench_cascade.py`` (:func:`classify_overhead`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge.backends import Session, create_backend
from edge.bench.timing import Timing, measure_interleaved
from edge.cascade import Cascade
from edge.classes import CLASSES

__all__ = [
    "DEFECT_RATES",
    "FIELD_SIDE",
    "CostRow",
    "bright_field",
    "classify_overhead",
    "field_costs",
    "flag_rate",
    "open_monolithic",
]

FIELD_SIDE = 2048
DEFECT_RATES = (0.02, 0.1, 0.5)
SETTLE = 1
"""Untimed calls before each timed one: a step right after the monolithic model ran
~25 % slower on x86 (caches and clock left by the larger model), a cost no deployment,
which runs one of the two image after image, pays."""


def bright_field(side: int = FIELD_SIDE, tile: int = 224,
                 bright: Sequence[tuple[int, int]] = ((2, 3), (7, 6)), seed: int = 0
                 ) -> np.ndarray:
    """A dark noisy uint8 field with the ``(row, col)`` tiles bright (what the test
    bundles' stage 1 flags)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 100, (side, side), endpoint=True).astype(np.uint8)
    for r, c in bright:
        image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = 255
    return image


def open_monolithic(cascade: Cascade) -> Session:
    """The bundle's monolithic model in the cascade's format, on the cascade's runtime.

    Raises
    ------
    edge.bundle.BundleError
        The bundle has no monolithic model in that format.
    """
    fmt = cascade.stage1.format
    runtime, _ = cascade.profile.choose_runtime()
    if fmt not in runtime.formats:  # the cascade was loaded with a forced format
        runtime = replace(runtime, formats=(fmt,))
    backend = create_backend(runtime.backend, **runtime.options(cascade.threads))
    return backend.open(cascade.bundle.file("monolithic", fmt), size=cascade.size,
                        outputs=len(CLASSES))


def flag_rate(recall: float, specificity: float, defect_rate: float) -> float:
    """Fraction of tiles stage 1 flags when ``defect_rate`` of them are defective."""
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect rate must be in [0, 1], got {defect_rate}")
    return defect_rate * recall + (1.0 - defect_rate) * (1.0 - specificity)


def _run_all(session: Session, batch: np.ndarray, size: int) -> None:
    for i in range(0, len(batch), size):
        session.run(batch[i:i + size])


def _sum(timings: Sequence[Timing]) -> Timing:
    """Per-round sums of interleaved timings (one field per round)."""
    samples = np.sum([t.samples_ms for t in timings], axis=0)
    return Timing(first_ms=float(sum(t.first_ms for t in timings)),
                  samples_ms=tuple(float(x) for x in samples))


@dataclass(frozen=True)
class CostRow:
    """Cost of one field at one defect rate (times in ms; ``monolithic`` None when the
    bundle has no monolithic model)."""

    defect_rate: float
    tiles: int
    stage2_tiles: int
    cascade: Timing
    monolithic: Timing | None
    tile: Timing
    stage1: Timing
    stage2: Timing
    flag_rate: float | None = None
    stage2_tiles_at_flag_rate: int | None = None
    cascade_at_flag_rate: Timing | None = None

    @property
    def speedup(self) -> float | None:
        """Monolithic over cascade time with a perfect gate (None: no monolithic model)."""
        if self.monolithic is None:
            return None
        return self.monolithic.median_ms / self.cascade.median_ms

    def as_row(self) -> dict[str, Any]:
        """The JSON row (see ``docs/bench.md``)."""
        mono, at_flag = self.monolithic, self.cascade_at_flag_rate
        return {
            "defect_rate": self.defect_rate,
            "tiles": self.tiles,
            "stage2_tiles": self.stage2_tiles,
            "tile_ms": self.tile.median_ms,
            "stage1_ms": self.stage1.median_ms,
            "stage2_ms": self.stage2.median_ms,
            "cascade_ms_per_field": self.cascade.median_ms,
            "cascade_ms_per_field_p95": self.cascade.p95_ms,
            "monolithic_ms_per_field": None if mono is None else mono.median_ms,
            "monolithic_ms_per_field_p95": None if mono is None else mono.p95_ms,
            "cascade_ms_per_tile": self.cascade.median_ms / self.tiles,
            "monolithic_ms_per_tile": None if mono is None else mono.median_ms / self.tiles,
            "speedup": self.speedup,
            "flag_rate": self.flag_rate,
            "stage2_tiles_at_flag_rate": self.stage2_tiles_at_flag_rate,
            "cascade_ms_per_field_at_flag_rate": None if at_flag is None else at_flag.median_ms,
            "speedup_at_flag_rate": (None if at_flag is None or mono is None
                                     else mono.median_ms / at_flag.median_ms),
            "rounds": self.cascade.repetitions,
        }


def field_costs(cascade: Cascade, monolithic: Session | None, image: np.ndarray,
                defect_rates: Sequence[float], *,
                flag_rates: Sequence[float | None] | None = None,
                min_time_s: float = 1.0, min_rounds: int = 5, max_rounds: int = 200
                ) -> list[CostRow]:
    """Time the cascade and the monolithic model on ``image`` at each defect rate.

    ``flag_rates`` (one per defect rate, or None): stage 1's measured flag rate there;
    the cost with stage 2 on that many tiles is added to the row. ``monolithic`` None:
    the cascade alone.
    """
    for r in defect_rates:
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"defect rate must be in [0, 1], got {r}")
    flags = list(flag_rates) if flag_rates is not None else [None] * len(defect_rates)
    if len(flags) != len(defect_rates):
        raise ValueError("flag_rates needs one entry per defect rate")
    tiles = cascade.tile(image)
    n = len(tiles)
    nominal = [int(round(r * n)) for r in defect_rates]
    measured = [None if f is None else int(round(f * n)) for f in flags]
    counts = sorted({k for k in (*nominal, *measured) if k is not None})
    rng = np.random.default_rng(0)
    order = rng.permutation(n)  # which tiles are "flagged": spread over the field

    def stage2_step(k: int) -> Callable[[], np.ndarray]:
        idx = np.sort(order[:k])
        return lambda: cascade.stage2_probs(np.ascontiguousarray(tiles.batch[idx]))

    steps = {"tile": lambda: cascade.tile(image),
             "stage1": lambda: cascade.stage1_scores(tiles.batch)}
    if monolithic is not None:
        steps["monolithic"] = lambda: _run_all(monolithic, tiles.batch, cascade.batch)
    for k in counts:
        steps[f"stage2:{k}"] = stage2_step(k)
    t = measure_interleaved(steps, min_time_s=min_time_s, min_rounds=min_rounds,
                            max_rounds=max_rounds, settle=SETTLE)
    rows = []
    for r, k, f, km in zip(defect_rates, nominal, flags, measured):
        s2 = t[f"stage2:{k}"]
        rows.append(CostRow(
            defect_rate=float(r), tiles=n, stage2_tiles=k,
            cascade=_sum([t["tile"], t["stage1"], s2]),
            monolithic=_sum([t["tile"], t["monolithic"]]) if monolithic is not None else None,
            tile=t["tile"], stage1=t["stage1"], stage2=s2,
            flag_rate=f, stage2_tiles_at_flag_rate=km,
            cascade_at_flag_rate=(None if km is None
                                  else _sum([t["tile"], t["stage1"], t[f"stage2:{km}"]])),
        ))
    return rows


def classify_overhead(cascade: Cascade, monolithic: Session, image: np.ndarray, *,
                      rounds: int = 9) -> dict[str, Any]:
    """End-to-end ``classify`` against its parts timed alone, and against the monolithic
    model on every tile (the developer benchmark's measurement).

    Returns a JSON-ready dict: ``tiles``, ``flagged``, ``median_ms`` per step
    (``classify``, ``tile``, ``stage1``, ``stage2``, ``monolithic``), ``overhead_ratio``
    (classify / sum of parts) and ``speedup_vs_monolithic`` ((tile + monolithic) /
    classify: the monolithic model needs the same tiles).
    """
    first = cascade.classify(image)
    tiles = cascade.tile(image)
    flagged = np.ascontiguousarray(tiles.batch[first.flagged])
    steps = {
        "classify": lambda: cascade.classify(image),
        "tile": lambda: cascade.tile(image),
        "stage1": lambda: cascade.stage1_scores(tiles.batch),
        "stage2": lambda: cascade.stage2_probs(flagged),
        "monolithic": lambda: _run_all(monolithic, tiles.batch, cascade.batch),
    }
    t = measure_interleaved(steps, min_time_s=0.0, min_rounds=rounds, max_rounds=rounds,
                            settle=SETTLE)
    ms = {k: v.median_ms for k, v in t.items()}
    parts = ms["tile"] + ms["stage1"] + ms["stage2"]
    return {
        "tiles": len(tiles), "flagged": int(first.flagged.sum()),
        "median_ms": {k: round(v, 2) for k, v in ms.items()},
        "overhead_ratio": round(ms["classify"] / parts, 3),
        "speedup_vs_monolithic": round((ms["tile"] + ms["monolithic"]) / ms["classify"], 2),
    }
