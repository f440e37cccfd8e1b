"""Inputs of scripts/arm-check: the image set, one profile per bundle format, the plan.

Run with the host venv's python (it needs numpy and cv2, both semedge dependencies):

    prepare.py --bundle DIR --out DIR [--samples DIR]

Writes, under --out:

* ``images/synthetic/*.png``: deterministic uint8 and uint16 fields (dark noise with bright
  tiles, which a stage 1 flags; a non-multiple of the tile size; one smaller than a tile);
* ``images/samples/``: a copy of the shipped samples, when there are any;
* ``profiles/cmp-<format>.toml``: a target profile that forces one backend and format
  (the Raspberry Pi 4 profile's threads and batch, so x86 and ARM run the same settings);
* ``plan.json``: which formats to compare and which are skipped, and why.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

BACKEND_OF = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime",
              "tflite-int8": "tflite", "tflite-int8-full": "tflite"}
"""Format key → backend; the order is the order of the comparison table."""

REQUIRED_WHEN_PRESENT = {"onnx", "onnx-int8", "tflite-int8", "tflite-int8-full"}
"""Every format the bundle has is compared; none of them may be skipped."""

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".pnm"}


def synthetic_fields(size: int) -> dict[str, np.ndarray]:
    """A few deterministic fields around the bundle's tile size ``size``."""
    def field(rows: int, cols: int, bright: list[tuple[int, int]], dtype, seed: int,
              shape: tuple[int, int] | None = None, edge: bool = False) -> np.ndarray:
        rng = np.random.default_rng(seed)
        top = np.iinfo(dtype).max
        h, w = shape or (rows * size, cols * size)
        image = rng.integers(0, top * 100 // 255, (h, w), endpoint=True).astype(dtype)
        for r, c in bright:
            image[r * size:(r + 1) * size, c * size:(c + 1) * size] = top
        if edge:  # a line-like structure: a bright stripe with a gap (an "open")
            y = h // 2
            image[y - 6:y + 6, : w // 2 - 20] = top * 9 // 10
            image[y - 6:y + 6, w // 2 + 20:] = top * 9 // 10
        return image

    return {
        "u8-clean-3x3": field(3, 3, [], np.uint8, 11),
        "u8-bright-2x3": field(2, 3, [(0, 1), (1, 2)], np.uint8, 12),
        "u8-odd-size": field(0, 0, [(1, 1)], np.uint8, 13, shape=(size * 2 + 37, size * 3 + 5)),
        "u8-small": field(0, 0, [], np.uint8, 14, shape=(size // 2 + 3, size // 2 + 11)),
        "u8-stripe": field(2, 2, [], np.uint8, 15, edge=True),
        "u16-bright-2x2": field(2, 2, [(1, 0)], np.uint16, 16),
        "u16-clean-2x3": field(2, 3, [], np.uint16, 17),
    }


def profile_text(fmt: str, threads: int, batch: int) -> str:
    backend = BACKEND_OF[fmt]
    lines = [
        f'# arm-check: force {backend} {fmt} (same settings on x86 and on the emulated ARM CPUs)',
        f'name = "cmp-{fmt}"',
        f'description = "arm-check comparison profile: {backend} {fmt}"',
        f'backend = "{backend}"',
        f'formats = ["{fmt}"]',
    ]
    # The CPU only: onnxruntime's CPU provider, TFLite's XNNPACK (also for the full-int8
    # Edge TPU format, which otherwise requires the edgetpu delegate).
    lines.append('providers = ["CPUExecutionProvider"]' if backend == "onnxruntime"
                 else 'providers = ["cpu"]')
    lines += [f"threads = {threads}", f"batch = {batch}", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--samples", type=Path, default=None)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    import cv2

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    size = int(manifest["input"]["size"])
    files = manifest["files"]
    both = [f for f in files.get("stage1", {}) if f in files.get("stage2", {})]

    out = args.out
    images = out / "images"
    shutil.rmtree(images, ignore_errors=True)
    (images / "synthetic").mkdir(parents=True)
    for name, image in synthetic_fields(size).items():
        if not cv2.imwrite(str(images / "synthetic" / f"{name}.png"), image):
            raise SystemExit(f"cannot write {name}.png")
    n_samples = 0
    if args.samples is not None and args.samples.is_dir():
        for path in sorted(args.samples.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                dest = images / "samples" / path.relative_to(args.samples)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
                n_samples += 1

    profiles = out / "profiles"
    shutil.rmtree(profiles, ignore_errors=True)
    profiles.mkdir(parents=True)
    compare, skipped = [], {}
    for fmt in BACKEND_OF:
        if fmt in both:
            (profiles / f"cmp-{fmt}.toml").write_text(profile_text(fmt, args.threads, args.batch))
            compare.append({"format": fmt, "backend": BACKEND_OF[fmt],
                            "profile": f"cmp-{fmt}.toml"})
        elif fmt == "tflite-int8":
            skipped[fmt] = "skipped: bundle has no tflite-int8"
        elif fmt == "onnx-int8" or fmt == "onnx":
            skipped[fmt] = f"skipped: bundle has no {fmt}"
    unknown = sorted(set(both) - set(BACKEND_OF))
    plan = {
        "bundle": str(args.bundle),
        "bundle_name": manifest.get("name", "?"),
        "input_size": size,
        "formats_in_bundle": both,
        "unknown_formats": unknown,
        "compare": compare,
        "skipped": skipped,
        "images": {"synthetic": len(synthetic_fields(size)), "samples": n_samples},
        "has_tflite": any(f.startswith("tflite") for f in both),
        # decision boundaries, for compare.py's near-tie rule on int8 label flips
        "thresholds": {"stage1": float(manifest["stage1"]["threshold"]),
                       "unknown": float(manifest["stage2"]["unknown_threshold"])},
    }
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    print(json.dumps(plan))
    if not compare:
        print("arm-check: the bundle has no format this check knows", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
