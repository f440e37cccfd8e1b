"""Training steps on one thread, batch 64: stage 1's augmentation against its forward +
backward pass, the beam blur against a dense blur matrix, and crop training's samples per
second against whole tiles for stage 1 and stage 2.

    pytest benchmarks/test_bench_training.py --benchmark-only

The augmentation runs on the training core beside the network, so its share of a step
is what more stage-1 samples per build minute depend on (docs/training-results.md). Ratios are
measured in one run and recorded in the benchmark JSON (``extra_info``), not asserted:
the machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from training.augment import _blur_taps, _gaussian_blur, augment_batch_with_masks  # noqa: E402
from training.models import build_model  # noqa: E402
from training.recipe import load_recipe  # noqa: E402
from training.train_loop import crop_batch  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "training/recipes/default.toml"

BATCH, SIZE = 64, 224


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as the default build trains stage 1; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def stage1_setup():
    recipe = load_recipe(RECIPE)
    config = recipe.augment.with_overrides(recipe.stage1.augment)
    gen = torch.Generator().manual_seed(0)
    tiles = torch.rand(BATCH, 1, SIZE, SIZE, generator=gen).half()
    cells = torch.zeros(BATCH, 1, SIZE // 16, SIZE // 16, dtype=torch.uint8)
    model = build_model("stage1").to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = (torch.rand(BATCH, generator=gen) > 0.5).float()

    def augment():
        return augment_batch_with_masks(tiles, gen, config, cells)[0]

    augmented = augment().contiguous(memory_format=torch.channels_last)

    def forward_backward():
        out = model.forward_training(augmented)[0]
        loss = F.binary_cross_entropy_with_logits(out[:, 0], labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return augment, forward_backward


def _blur_matrix(n: int, sigma: float):
    """The baseline's ``(n, n)`` matrix: the same taps, reflect-101 borders."""
    radius, taps = _blur_taps(sigma)
    m = torch.zeros(n, n)
    rows = torch.arange(n)
    for off, weight in zip(range(-radius, radius + 1), taps):
        cols = (rows + off).abs()
        cols = torch.where(cols >= n, 2 * (n - 1) - cols, cols)
        m.index_put_((rows, cols), torch.full((n,), weight), accumulate=True)
    return m


def _median_ms(fn, min_time_s: float) -> float:
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


@pytest.mark.parametrize("part", ["augment", "forward_backward"])
def test_stage1_step_part(benchmark, stage1_setup, part, quick):
    fn = dict(zip(("augment", "forward_backward"), stage1_setup))[part]
    benchmark.group = "stage1-step"
    if quick:
        benchmark.pedantic(fn, rounds=2, iterations=1)
    else:
        benchmark(fn)


def test_stage1_step_ratio(benchmark, stage1_setup, min_time_s):
    augment, forward_backward = stage1_setup

    def measure() -> dict[str, float]:
        aug = _median_ms(augment, min_time_s)
        net = _median_ms(forward_backward, min_time_s)
        return {"augment_ms": aug, "forward_backward_ms": net,
                "augment_share": aug / (aug + net)}

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "ratios"
    benchmark.extra_info.update(result)
    print(f"\nstage 1, batch {BATCH}, one thread: augmentation {result['augment_ms']:.1f} ms, "
          f"forward + backward {result['forward_backward_ms']:.1f} ms → augmentation "
          f"{result['augment_share']:.0%} of a step")
    assert result["augment_ms"] > 0 and result["forward_backward_ms"] > 0


@pytest.mark.parametrize("sigma", [0.5, 1.5, 2.5])
def test_blur_against_dense_matrix(benchmark, sigma, min_time_s):
    x = torch.rand(16, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    m = _blur_matrix(SIZE, sigma)  # built once, as the old code cached it

    def _dense_blur(x, sigma):
        return m @ x @ m.T

    torch.testing.assert_close(_gaussian_blur(x, sigma), _dense_blur(x, sigma),
                               atol=2e-6, rtol=0)

    def measure() -> dict[str, float]:
        shifted = _median_ms(lambda: _gaussian_blur(x, sigma), min_time_s)
        dense = _median_ms(lambda: _dense_blur(x, sigma), min_time_s)
        return {"shifted_ms": shifted, "dense_ms": dense, "dense_over_shifted": dense / shifted}

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "ratios"
    benchmark.extra_info.update(result)
    print(f"\nblur sigma {sigma}, 16 tiles: shifted multiply-adds {result['shifted_ms']:.2f} ms, "
          f"dense matrices {result['dense_ms']:.2f} ms → {result['dense_over_shifted']:.1f}×")
    assert result["shifted_ms"] > 0


def _training_step(name: str, crop: int):
    """One whole training step of ``name`` as the default recipe runs it: sample a batch
    of cached float16 tiles, window it (``crop`` px; 0: whole tiles), augment, forward +
    backward, AdamW."""
    recipe = load_recipe(RECIPE)
    config = recipe.augment.with_overrides(getattr(recipe, name).augment)
    gen = torch.Generator().manual_seed(0)
    tiles = torch.rand(BATCH, 1, SIZE, SIZE, generator=gen).half()
    cells = torch.zeros(BATCH, 1, SIZE // 32, SIZE // 32, dtype=torch.uint8)
    cells[::2, 0, 3, 3] = 1  # half the batch defective, one defect cell each
    model = build_model(name).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = torch.arange(BATCH) % model.arch.outputs

    def step():
        x, m = (crop_batch(tiles, cells, crop, gen) if crop else (tiles, cells))
        x = augment_batch_with_masks(x, gen, config, m)[0].contiguous(
            memory_format=torch.channels_last)
        out = model(x)
        loss = (F.cross_entropy(out, labels) if out.shape[1] > 1
                else F.binary_cross_entropy_with_logits(out[:, 0], (labels % 2).float()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_crop_training_samples_per_second(benchmark, name, min_time_s):
    recipe = getattr(load_recipe(RECIPE), name)
    whole, windows = _training_step(name, 0), _training_step(name, recipe.crop)

    def measure() -> dict[str, float]:
        whole_ms = _median_ms(whole, min_time_s)
        crop_ms = _median_ms(windows, min_time_s)
        share = recipe.crop_share  # the recipe's schedule: windows first, whole tiles last
        schedule_ms = share * crop_ms + (1 - share) * whole_ms
        return {"whole_tiles_per_s": BATCH / whole_ms * 1e3,
                "windows_per_s": BATCH / crop_ms * 1e3,
                "schedule_samples_per_s": BATCH / schedule_ms * 1e3,
                "schedule_over_whole": whole_ms / schedule_ms}

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "ratios"
    benchmark.extra_info.update(result)
    print(f"\n{name}, batch {BATCH}, one thread, whole training step: "
          f"{result['whole_tiles_per_s']:.0f} whole {SIZE}-px tiles/s, "
          f"{result['windows_per_s']:.0f} {recipe.crop}-px windows/s; the recipe's schedule "
          f"({recipe.crop_share:.0%} windows) {result['schedule_samples_per_s']:.0f} samples/s"
          f" = {result['schedule_over_whole']:.2f}× whole tiles")
    assert result["windows_per_s"] > 0 and result["whole_tiles_per_s"] > 0
