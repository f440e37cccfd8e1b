"""ImageFolder discovery, the training-side tile transform, an in-memory cache and splits.

Every image is normalized **once**, with the same csrc kernel the edge runs
(``edge.preprocess.tile``), and kept in memory; augmentation then works on tensors
(``training.augment``). The per-image rule (documented in ``docs/training.md``):

1. ``edge.preprocess.read_image`` (8/16-bit, any size);
2. ``edge.preprocess.prepare_small`` — an image smaller than a tile is upscaled
   (``INTER_LINEAR``) so its shorter side equals the tile: the bundle's ``small_image:
   "upscale"`` rule, identical in ``classify`` and ``eval``;
3. ``edge.preprocess.downscale_large`` — an image larger than a tile is resized
   (``INTER_AREA``) so its shorter side equals the tile, then center-cropped to a
   square: one labelled image gives one labelled tile (tiling it would give tiles without
   the defect but with its label). A bundle trained on such images records
   ``preprocess.large_image: "resize"`` and the edge downscales the same way before it
   tiles (a square image is then exactly the training tile);
4. ``edge.preprocess.tile(image, size=S, low, high)`` → one ``[1, S, S]`` float32 tile.

Folder ``other_defect`` (a real defect outside the six classes) gets label
:data:`OTHER_DEFECT` (-1) and folder ``defective`` (class not given) label -2
(``training.labels.DEFECTIVE``): both are defective for stage 1, no class for stage 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from training.labels import (
    IMAGE_SUFFIXES,
    LABEL_NAMES,
    LABELS,
    OTHER_DEFECT,
    OTHER_DEFECT_FOLDER,
    DatasetError,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "OTHER_DEFECT",
    "OTHER_DEFECT_FOLDER",
    "Dataset",
    "DatasetError",
    "balanced_subset",
    "discover",
    "load_dataset",
    "load_tile",
    "manifest_rows",
    "recipe_of",
    "stratified_split",
]

PathLike = Union[str, os.PathLike]

@dataclass
class Dataset:
    """Normalized tiles in memory.

    Attributes
    ----------
    x : (N, 1, S, S) ndarray
        float32 (exact edge output) or float16 (compact training cache).
    y : (N,) int64 ndarray
        Index into ``CLASSES``; ``OTHER_DEFECT`` (-1) for out-of-taxonomy defects.
    paths : list of str
    """

    x: np.ndarray
    y: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray) -> Dataset:
        """The images at ``index`` (labels and paths alike)."""
        index = np.asarray(index, dtype=np.int64)
        return Dataset(self.x[index], self.y[index], [self.paths[i] for i in index])

    def counts(self) -> dict[str, int]:
        """Images per label name."""
        names = LABEL_NAMES
        values, counts = np.unique(self.y, return_counts=True)
        return {names[int(v)]: int(c) for v, c in zip(values, counts)}


def discover(root: PathLike) -> tuple[list[str], np.ndarray]:
    """List the images of ImageFolder ``root`` and their labels (sorted, deterministic).

    Folders named after ``CLASSES``, ``other_defect`` and ``defective`` are read; any
    other folder is an error (a misspelt label must not be silently dropped). The full
    pre-flight check (hashes, unreadable files, empty folders) is ``training.ingest.scan``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    allowed = LABELS
    paths: list[str] = []
    labels: list[int] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.startswith("."):
            continue
        if sub.name not in allowed:
            raise DatasetError(
                f"{sub}: folder name is not a label; expected one of "
                f"{', '.join(allowed)}"
            )
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(str(p) for p in files)
        labels.extend([allowed[sub.name]] * len(files))
    if not paths:
        raise DatasetError(f"{root}: no images in label folders ({', '.join(allowed)})")
    return paths, np.asarray(labels, dtype=np.int64)


def load_tile(path: PathLike, *, size: int = 224, low: float = 1.0,
              high: float = 99.0) -> np.ndarray:
    """One image file → one ``(1, size, size)`` float32 tile, by the rule above."""
    from edge import preprocess

    image = preprocess.read_image(path)
    return image_to_tile(image, size=size, low=low, high=high)


def image_to_tile(image: np.ndarray, *, size: int = 224, low: float = 1.0,
                  high: float = 99.0) -> np.ndarray:
    """A raw 2-D uint8/uint16 image → one ``(1, size, size)`` float32 tile."""
    from edge import preprocess

    image = preprocess.prepare_small(preprocess.validate_image(image), size)
    image = preprocess.downscale_large(image, size)  # the bundle's large_image: "resize"
    h, w = image.shape
    if (h, w) != (size, size):
        y0, x0 = (h - size) // 2, (w - size) // 2
        image = np.ascontiguousarray(image[y0:y0 + size, x0:x0 + size])
    return preprocess.tile(image, size=size, low=low, high=high).batch[0]


def load_dataset(paths: Sequence[str], labels: np.ndarray, *, size: int = 224,
                 low: float = 1.0, high: float = 99.0, dtype: type = np.float32,
                 workers: int = 2, progress: object | None = None,
                 description: str = "loading") -> Dataset:
    """Read and normalize every image once into an in-memory ``Dataset``.

    ``workers`` threads share the files (decoding and the csrc kernels release the GIL).
    ``progress`` is an optional ``rich.progress.Progress``.
    """
    n = len(paths)
    x = np.empty((n, 1, size, size), dtype=dtype)
    task = progress.add_task(description, total=n) if progress is not None else None

    def work(i: int) -> None:
        x[i] = load_tile(paths[i], size=size, low=low, high=high)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(work, range(n)):
            if task is not None:
                progress.advance(task)
    return Dataset(x, np.asarray(labels, dtype=np.int64).copy(), list(paths))


def stratified_split(labels: np.ndarray, fractions: Sequence[float], *,
                     seed: int) -> list[np.ndarray]:
    """Split indices into ``len(fractions)`` parts, per label, deterministically.

    The last part takes the remainder, so ``fractions`` need not sum to 1.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        rng.shuffle(index)
        start = 0
        for k, frac in enumerate(fractions):
            if k == len(fractions) - 1:
                stop = len(index)
            else:
                stop = start + int(round(frac * len(index)))
            parts[k].extend(index[start:stop].tolist())
            start = stop
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def balanced_subset(labels: np.ndarray, per_class: int, *, seed: int) -> np.ndarray:
    """Up to ``per_class`` indices of each label (the int8 calibration set)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        chosen.append(rng.permutation(index)[:per_class])
    return np.sort(np.concatenate(chosen))


def recipe_of(root: PathLike) -> dict[str, object]:
    """Recipe name/sha256/seed recorded by ``semedge synth`` in ``root`` (if any).

    Reads ``root/recipe.json`` or the first line of ``root/manifest.jsonl`` carrying a
    ``recipe`` key; returns ``{}`` for a folder that synth did not write.
    """
    root = Path(root)
    found: dict[str, object] = {}
    for name in ("recipe.json", "dataset.json"):
        p = root / name
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                found.update(_recipe_keys(data))
    if not found:
        for row in manifest_rows(root):
            found.update(_recipe_keys(row))
            if found:
                break
    return found


def manifest_rows(root: PathLike) -> Iterator[dict]:
    """The JSON objects of ``root/manifest.jsonl`` (written by ``semedge synth``), one per
    image; unparsable lines are skipped, a missing file yields nothing."""
    manifest = Path(root) / "manifest.jsonl"
    if not manifest.is_file():
        return
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


def _recipe_keys(data: dict) -> dict[str, object]:
    out: dict[str, object] = {}
    recipe = data.get("recipe")
    if isinstance(recipe, dict):
        data = {**data, **{f"recipe_{k}": v for k, v in recipe.items()}}
        recipe = recipe.get("name")
    if isinstance(recipe, str):
        out["recipe"] = recipe
    for key in ("recipe_sha256", "recipe_hash", "sha256"):
        if isinstance(data.get(key), str):
            out["recipe_sha256"] = data[key]
            break
    if isinstance(data.get("seed"), int):
        out["seed"] = data["seed"]
    return out
