"""TFLite int8 (XNNPACK, 1 and 2 threads) next to ONNX Runtime fp32 / int8, per tile.

Two sets of models. The shipped default bundle's own files, when it carries
``tflite-int8`` (needs only ai-edge-litert). And the training layouts
(``training.models.build_model``: stage 1 and stage 2 TileNets, BatchNorm statistics
randomised so nothing is degenerate), exported with the real pipeline: ``export_onnx``
(fp32), ``quantize_int8`` (ONNX Runtime QDQ) and ``convert_tflite`` (onnx2tf in the
TFLite environment), all calibrated on the same edge-preprocessed tiles. Every session goes through the product's backends
(``edge.backends``); the competitors are timed round-robin in one run
(``edge.bench.timing.measure_interleaved``), batches of ``BATCH`` tiles, and the medians
are reported per tile with each file's size. Nothing is asserted about speed: the
machines are shared; the numbers land in the benchmark JSON (``extra_info``).

The built set needs ``semedge[train]`` (torch, onnx), ai-edge-litert and the TFLite
environment (``scripts/setup-tflite``); each test skips with the reason otherwise.

Run: ``pytest benchmarks/test_bench_tflite.py -s``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 224
BATCH = 16
THREADS = (1, 2)


def _calibration(n_images: int = 8, seed: int = 0) -> np.ndarray:
    from edge.preprocess import tile

    rng = np.random.default_rng(seed)
    tiles = []
    for i in range(n_images):
        pitch = int(rng.integers(12, 40))
        img = np.where((np.arange(448) % pitch) < pitch // 2, 70.0, 170.0)[None, :]
        img = np.repeat(img, 448, axis=0) + rng.normal(0, 12, (448, 448))
        if i % 2:
            y, x = rng.integers(20, 428, 2)
            yy, xx = np.mgrid[:448, :448]
            img += 120.0 * (((yy - y) ** 2 + (xx - x) ** 2) < 400)
        tiles.append(tile(np.clip(img, 0, 255).astype(np.uint8), size=SIZE).batch)
    return np.concatenate(tiles)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, dict[str, Path]]:
    pytest.importorskip("torch", reason="needs semedge[train] (torch) to build the models")
    pytest.importorskip("ai_edge_litert", reason="needs ai-edge-litert (semedge[tflite])")
    from training.export.tflite import convert_tflite, tflite_env

    env = tflite_env()
    if not (env / "bin" / "python").exists():
        pytest.skip(f"no TFLite environment at {env}: create it with scripts/setup-tflite")
    import torch

    from training.export.onnx import export_onnx
    from training.export.quantize import quantize_int8
    from training.models import build_model

    out = tmp_path_factory.mktemp("bench-tflite")
    calib = _calibration()
    files: dict[str, dict[str, Path]] = {}
    torch.manual_seed(0)
    for stage in ("stage1", "stage2"):
        model = build_model(stage)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
        fp32 = export_onnx(model.eval(), out / f"{stage}.onnx", size=SIZE)
        int8 = quantize_int8(fp32, out / f"{stage}.int8.onnx", calib)
        conv = convert_tflite(fp32, out, calib, name=stage)
        files[stage] = {"onnx": fp32, "onnx-int8": int8, **conv.files}
    return files


def _sessions(files: dict[str, Path], stage: str) -> dict[str, object]:
    from edge.backends import create_backend
    from edge.bundle import STAGES, StageFile

    sessions = {}
    for threads in THREADS:
        ort = create_backend("onnxruntime", threads=threads)
        tfl = create_backend("tflite", threads=threads, providers=["cpu"])
        for fmt, backend in (("onnx", ort), ("onnx-int8", ort), ("tflite-int8", tfl)):
            sessions[f"{fmt} {threads}t"] = backend.open(
                StageFile(stage, fmt, files[fmt], ""), size=SIZE, outputs=STAGES[stage])
    return sessions


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, Path]]:
    """The shipped default bundle's ONNX fp32 / int8 and TFLite int8 files per stage."""
    pytest.importorskip("ai_edge_litert", reason="needs ai-edge-litert (semedge[tflite])")
    from edge.bundle import load_bundle

    bundle = load_bundle(None)
    if bundle.input_size != SIZE:
        pytest.skip(f"the shipped bundle takes {bundle.input_size}-px tiles, this benchmark {SIZE}")
    formats = ("onnx", "onnx-int8", "tflite-int8")
    lacking = [f"{stage} {fmt}" for stage in ("stage1", "stage2") for fmt in formats
               if fmt not in bundle.formats(stage)]
    if lacking:
        pytest.skip(f"the shipped bundle has no {', '.join(lacking)}")
    return {stage: {fmt: Path(bundle.file(stage, fmt).path) for fmt in formats}
            for stage in ("stage1", "stage2")}


def _per_tile(benchmark, files: dict[str, Path], stage: str, min_time_s: float,
              what: str) -> tuple[dict[str, float], dict[str, float]]:
    """Time every session round-robin; ``(ms per tile, top-1 agreement with ONNX fp32)``."""
    from edge.bench.timing import measure_interleaved

    x = _calibration(n_images=4, seed=1)[:BATCH]
    sessions = _sessions(files, stage)
    ref = sessions["onnx 1t"].run(x)
    timings = benchmark.pedantic(
        measure_interleaved,
        args=({name: (lambda s=s: s.run(x)) for name, s in sessions.items()},),
        kwargs={"min_time_s": min_time_s * len(sessions), "min_rounds": 3},
        rounds=1, iterations=1,
    )
    per_tile = {name: t.median_ms / len(x) for name, t in timings.items()}
    sizes = {fmt: path.stat().st_size for fmt, path in files.items()}
    agreement = {name: float((s.run(x).argmax(1) == ref.argmax(1)).mean()) if ref.shape[1] > 1
                 else float(((s.run(x)[:, 0] >= 0) == (ref[:, 0] >= 0)).mean())
                 for name, s in sessions.items()}
    benchmark.group = f"tflite-{what}-{stage}"
    benchmark.extra_info.update({"models": what, "ms_per_tile": per_tile, "size_bytes": sizes,
                                 "batch": len(x), "top1_agreement_vs_onnx": agreement})
    base = per_tile["onnx 2t"]
    print(f"\n{what} {stage}: ms per tile (batch {len(x)}), ratio to ONNX fp32 2 threads")
    for name, ms in per_tile.items():
        print(f"  {name:16s} {ms:7.3f} ms  {ms / base:5.2f}×  agreement {agreement[name]:.3f}")
    print("  sizes: " + ", ".join(f"{fmt} {b / 1024:.0f} KiB" for fmt, b in sizes.items()))
    return per_tile, agreement


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_tflite_vs_onnxruntime_per_tile(benchmark, models, stage, min_time_s):
    per_tile, _ = _per_tile(benchmark, models[stage], stage, min_time_s, "built")
    assert all(ms > 0 for ms in per_tile.values())


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_shipped_tflite_vs_onnxruntime_per_tile(benchmark, shipped, stage, min_time_s):
    per_tile, agreement = _per_tile(benchmark, shipped[stage], stage, min_time_s, "shipped")
    assert all(ms > 0 for ms in per_tile.values())
    # the timed files are the shipped models: at most one of the 16 tiles may flip (the
    # bundle's parity gate allows 1 % over 1,200 tiles)
    assert min(agreement.values()) >= 15 / 16, agreement
