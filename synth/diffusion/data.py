"""Training tiles from an ImageFolder, read by the training pipeline's own rule
(``training.data.load_tile``: read, small images upscaled, large ones area-downscaled and
center-cropped, percentile-normalized to [0, 1]) at the model's resolution."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synth.diffusion.config import LABELS


@dataclass
class Tiles:
    """``x``: (N, 1, R, R) float32 in [0, 1]; ``y``: (N,) int64 index into ``LABELS``."""

    x: np.ndarray
    y: np.ndarray
    provenance: dict[str, Any]


def _folder_label(code: int) -> int | None:
    """``training.data.discover``'s label → index into ``LABELS`` (None: no class)."""
    from training.labels import OTHER_DEFECT

    if code >= 0:
        return code
    return LABELS.index("other_defect") if code == OTHER_DEFECT else None


def data_hash(root: Path, paths: list[str], labels: list[int]) -> str:
    """SHA-256 over every used file: relative path, label and the file's own SHA-256."""
    h = hashlib.sha256()
    for path, lab in zip(paths, labels):
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        rel = Path(os.path.relpath(path, root)).as_posix()
        h.update(f"{rel}\t{LABELS[lab]}\t{digest}\n".encode())
    return h.hexdigest()


def load_tiles(root: str | Path, resolution: int, progress: Any | None = None) -> Tiles:
    """Every image of the label folders in ``root`` as a tile of ``resolution`` px.

    Folder ``defective`` (a defect of no given class) cannot condition a class and is
    skipped (counted in the provenance); any folder that is not a label is an error
    (``training.data.DatasetError``, a ``ValueError``).
    """
    from training.data import discover, load_dataset, recipe_of

    root = Path(root)
    paths, codes = discover(root)
    keep = [(p, _folder_label(int(c))) for p, c in zip(paths, codes)]
    used = [(p, lab) for p, lab in keep if lab is not None]
    if not used:
        raise ValueError(f"{root}: no images in the label folders "
                         f"({', '.join(LABELS)}); 'defective' has no class to learn")
    use_paths, use_labels = [p for p, _ in used], [lab for _, lab in used]
    ds = load_dataset(use_paths, np.asarray(use_labels, np.int64), size=resolution,
                      workers=1, progress=progress, description="reading tiles")
    counts = {lab: use_labels.count(i) for i, lab in enumerate(LABELS)}
    provenance = {
        "path": str(root.resolve()), "images": len(use_paths), "per_label": counts,
        "skipped_defective": len(keep) - len(used),
        "sha256": data_hash(root, use_paths, use_labels),
        "synth_recipe": recipe_of(root) or None,
    }
    return Tiles(ds.x.astype(np.float32, copy=False),
                 np.asarray(use_labels, np.int64), provenance)
