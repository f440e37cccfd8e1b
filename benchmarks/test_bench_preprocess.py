"""Preprocessing on a 2048×2048 field, one thread: fused kernel vs numpy vs OpenCV vs the
memory-bandwidth bound, uint8 and uint16, stride 224 and 192.

    pytest benchmarks/test_bench_preprocess.py --benchmark-only

``test_ratios`` measures all four in one run and prints the ratios the preprocessing
targets name (docs/preprocess.md: fused within 2.5× of the bound, ≥ 1.5× faster than
OpenCV); they are recorded in the benchmark JSON (``extra_info``), not asserted: the
machines are shared and noisy.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge import preprocess
from edge.bench.preprocess import compare, competitors, sem_like_image

FIELD = (2048, 2048)
CASES = [(dtype, stride) for dtype in (np.uint8, np.uint16) for stride in (224, 192)]


@pytest.fixture(scope="module", params=[np.uint8, np.uint16], ids=["uint8", "uint16"])
def field(request) -> np.ndarray:
    return sem_like_image(FIELD, request.param)


@pytest.mark.parametrize("stride", [224, 192])
@pytest.mark.parametrize("name", ["fused", "numpy", "opencv"])
def test_tile(benchmark, field, name, stride, quick):
    import cv2

    cv2.setNumThreads(1)
    fn = competitors(224, stride)[name]
    benchmark.group = f"tile-{field.dtype}-stride{stride}"
    if quick:
        batch = benchmark.pedantic(fn, args=(field,), rounds=2, iterations=1)
    else:
        batch = benchmark(fn, field)
    np.testing.assert_allclose(batch, preprocess.tile(field, stride=stride).batch, atol=1e-6)


@pytest.mark.parametrize("dtype, stride", CASES, ids=[f"{d.__name__}-{s}" for d, s in CASES])
def test_ratios(benchmark, dtype, stride, min_time_s):
    image = sem_like_image(FIELD, dtype)
    result = benchmark.pedantic(
        compare, args=(image,), kwargs={"stride": stride, "min_time_s": min_time_s},
        rounds=1, iterations=1,
    )
    benchmark.group = "ratios"
    benchmark.extra_info.update(result.as_dict())
    print(
        f"\n{dtype.__name__} stride {stride}: fused {result.fused.median_ms:.2f} ms, "
        f"numpy {result.numpy.median_ms:.2f} ms, opencv {result.opencv.median_ms:.2f} ms, "
        f"bound {result.bound.bound_ms:.2f} ms  →  fused/bound {result.fused_over_bound:.2f}×, "
        f"opencv/fused {result.opencv_over_fused:.2f}×"
    )
    assert result.fused.median_ms > 0 and result.bound.bound_ms > 0
