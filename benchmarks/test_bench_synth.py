"""Throughput of `semedge synth` at 224x224 including PNG writing (measured, never asserted).

Run: pytest benchmarks/test_bench_synth.py --benchmark-only -s

Besides wall images/s it reports the CPU time per image (this process plus its finished worker
processes), which is far less sensitive to other jobs on the machine, and the 1-minute load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synth import load_recipe, write_dataset

PER_CLASS = 150  # x 8 labels = 1200 images per round (10 with --quick)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_synth_images_per_second(benchmark, tmp_path: Path, workers: int, quick: bool):
    recipe = load_recipe("default")
    per_class = 10 if quick else PER_CLASS
    n = per_class * len(recipe.labels)
    out = tmp_path / "ds"
    cpu: list[float] = []
    load: list[float] = []

    def run() -> None:
        load.append(os.getloadavg()[0])
        c0 = _cpu_s()
        write_dataset(out, per_class=per_class, seed=0, recipe=recipe, size=224,
                      workers=workers, overwrite=True)
        cpu.append(_cpu_s() - c0)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    ips = n / benchmark.stats.stats.min
    cpu_ms = 1e3 * min(cpu[1:] or cpu) / n
    benchmark.extra_info.update(images=n, workers=workers, images_per_s_best=round(ips, 1),
                                images_per_s_mean=round(n / benchmark.stats.stats.mean, 1),
                                cpu_ms_per_image=round(cpu_ms, 2), load1=round(max(load), 2))
    print(f"\nsynth workers={workers}: {ips:.0f} images/s (best of 3, {n} images, PNG written); "
          f"{cpu_ms:.2f} ms CPU/image; load1 {min(load):.2f}-{max(load):.2f}")
