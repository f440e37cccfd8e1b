"""Fixtures for the training tests: tiny ImageFolders drawn with numpy.

The drawings are crude but class-separable (lines with a gap, a bridge, a hole, wavy
edges, a crack; a via array with one wrong via), so a one-epoch run exercises the whole
pipeline in seconds without depending on ``synth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.classes import CLASSES


def _lines(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int, int]:
    pitch = int(rng.integers(16, 28))
    width = pitch // 2
    img = np.full((size, size), 60.0)
    offset = int(rng.integers(0, pitch))
    for x0 in range(offset - pitch, size, pitch):
        img[:, max(0, x0):max(0, x0 + width)] = 190.0
    return img, pitch, offset


def draw(label: str, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """One uint8 image of ``label`` (``other_defect`` too)."""
    if label == "malformed_via" or (label == "normal" and rng.random() < 0.3):
        img = np.full((size, size), 50.0)
        yy, xx = np.mgrid[:size, :size]
        pitch = 20
        bad = (int(rng.integers(1, size // pitch - 1)), int(rng.integers(1, size // pitch - 1)))
        for i in range(size // pitch):
            for j in range(size // pitch):
                r = 5.0
                if label == "malformed_via" and (i, j) == bad:
                    r = 9.0
                cy, cx = i * pitch + pitch / 2, j * pitch + pitch / 2
                img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200.0
    else:
        img, pitch, offset = _lines(rng, size)
        x0 = offset + pitch * int(rng.integers(1, 3))
        y0 = int(rng.integers(20, size - 30))
        w = pitch // 2
        if label == "open":
            img[y0:y0 + 10, x0:x0 + w] = 60.0
        elif label == "short":
            img[y0:y0 + 8, x0 + w:x0 + pitch] = 190.0
        elif label == "void":
            img[y0:y0 + 5, x0 + 2:x0 + w - 2] = 60.0
        elif label == "ler":
            for y in range(size):
                shift = int(round(3 * np.sin(y / 3.0 + rng.random())))
                img[y] = np.roll(img[y], shift)
        elif label == "crack":
            ys = np.arange(size)
            xs = np.clip((size / 2 + 15 * np.sin(ys / 9.0) + rng.normal(0, 1, size)).astype(int),
                         0, size - 1)
            img[ys, xs] = 10.0
            img[ys, np.clip(xs + 1, 0, size - 1)] = 10.0
        elif label == "other_defect":
            cy, cx = rng.integers(20, size - 20, 2)
            yy, xx = np.mgrid[:size, :size]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 255.0
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int, seed: int, size: int = 96,
                 other: bool = True) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    labels = [*CLASSES, *(["other_defect"] if other else [])]
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / label / f"{label}_{i}.png"), draw(label, rng, size))
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """7 classes + other_defect, 12 images each, 96×96 (upscaled to the tile size)."""
    return write_folder(tmp_path_factory.mktemp("tiny") / "data", per_class=12, seed=0)


@pytest.fixture(scope="session")
def tiny_eval_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("tiny_eval") / "data", per_class=6, seed=1)


# A training recipe small enough for tests: a few hundred samples per model.
TINY_RECIPE = """
seed = 3
size = 224
calibration_per_class = 8
max_recall_drop = 1.0
max_macro_f1_drop = 1.0
timing_seconds = 0.05
[split]
val = 0.25
[stage1]
epochs = 2
samples_per_epoch = 128
batch_size = 32
[stage2]
epochs = 2
samples_per_epoch = 128
batch_size = 32
[monolithic]
epochs = 1
samples_per_epoch = 64
batch_size = 32
"""
