"""A test bundle for scripts/arm-check --test-bundle: every backend, no trained model.

    test_bundle.py OUT_DIR        (run from the source tree; needs onnx, pytest, ai-edge-litert)

* ``onnx`` and ``onnx-int8``: ``tests/edge/bundle_factory.make_bundle(realistic=True)``,
  random TileNet bodies of the training layouts (real convolution work for the ARM
  kernels) whose answers follow the mean brightness of a tile (bright tiles are flagged,
  stage 2 answers ``short``);
* ``tflite-int8`` (float I/O) and ``tflite-int8-full`` (int8 I/O): the same brightness rule
  as int8 TFLite graphs (QUANTIZE, MEAN, FULLY_CONNECTED, DEQUANTIZE), written with the
  flatbuffers schema by ``tests/edge/test_tflite_backend.tflite_model``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path.cwd()
sys.path[:0] = [str(ROOT / "tests" / "edge"), str(ROOT)]

from bundle_factory import make_bundle, read_manifest, sha256, write_manifest  # noqa: E402
from test_tflite_backend import tflite_model  # noqa: E402

STAGE1_SLOPE, STAGE1_CENTER = 40.0, 0.75
STAGE2_BIAS = (0.0, 0.0, 3.0, 0.0, 0.0, 0.0)


def main() -> int:
    out = Path(sys.argv[1])
    make_bundle(out, formats=("onnx", "onnx-int8"), realistic=True, seed=3,
                stage1_slope=STAGE1_SLOPE, stage1_center=STAGE1_CENTER, stage2_bias=STAGE2_BIAS)
    manifest = read_manifest(out)
    size = manifest["input"]["size"]
    specs = {"stage1": (1, STAGE1_SLOPE, -STAGE1_SLOPE * STAGE1_CENTER),
             "stage2": (6, 0.0, STAGE2_BIAS)}
    for stage, (outputs, slope, bias) in specs.items():
        for fmt, suffix, full in (("tflite-int8", "int8", False),
                                  ("tflite-int8-full", "int8-full", True)):
            path = tflite_model(out / f"{stage}.{suffix}.tflite", outputs=outputs, slope=slope,
                                bias=bias, size=size, full=full)
            manifest["files"][stage][fmt] = {"path": path.name, "sha256": sha256(path),
                                             "format": fmt}
    for fmt in ("tflite-int8", "tflite-int8-full"):
        manifest["metrics"][fmt] = {"note": "brightness test model"}
    manifest["name"] = "arm-check-test"
    write_manifest(out, manifest)
    print(f"test bundle at {out}: {sorted(manifest['files']['stage1'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
