"""Throughput of `semedge synth` at 224x224 including PNG writing (measured, never asserted).

Run: pytest benchmarks/test_bench_synth.py --benchmark-only -s
"""

from __future__ import annotations

from pathlib import Path

import pytest

from synth import load_recipe, write_dataset

PER_CLASS = 150  # x 8 labels = 1200 images per round


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_synth_images_per_second(benchmark, tmp_path: Path, workers: int):
    recipe = load_recipe("default")
    n = PER_CLASS * len(recipe.labels)
    out = tmp_path / "ds"

    def run() -> None:
        write_dataset(out, per_class=PER_CLASS, seed=0, recipe=recipe, size=224,
                      workers=workers, overwrite=True)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    ips = n / benchmark.stats.stats.min
    benchmark.extra_info.update(images=n, workers=workers, images_per_s_best=round(ips, 1),
                                images_per_s_mean=round(n / benchmark.stats.stats.mean, 1))
    print(f"\nsynth workers={workers}: {ips:.0f} images/s (best of 3, {n} images, PNG written)")
