"""Where the defect is, per feature cell: dense targets for stage 1's training-only head.

``semedge synth`` records each defect's pixel mask in its folder's ``manifest.jsonl``
(``mask_rle``). A binary label says only "something is wrong somewhere in these 50,000
pixels"; a cell map says which 32×32 block, which is much easier to learn from. The map
matches the model's last feature map (a ``g × g`` grid over the tile, ``g`` dividing the
tile size): a cell is positive when the mask covers at least ``min_pixels`` of it (the
most-covered cell at least, so a masked defect always has one positive cell).

Values: 0 (no defect in the cell), 1 (defect), :data:`UNKNOWN` (no mask known: a real
image labelled only as a whole, or a mask of another size) — the loss skips those cells.
A ``normal`` image has no defect anywhere, whatever its source, so its cells are 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data import manifest_rows

__all__ = ["UNKNOWN", "cell_targets", "read_masks"]

UNKNOWN = 255


def read_masks(root: str | os.PathLike) -> dict[str, dict]:
    """``{absolute image path: mask_rle}`` from ``root/manifest.jsonl`` (empty if none)."""
    root = Path(root)
    return {os.path.abspath(root / row["path"]): row["mask_rle"] for row in manifest_rows(root)
            if isinstance(row.get("mask_rle"), dict) and "path" in row}


def cell_targets(paths: Sequence[str], labels: np.ndarray, masks: dict[str, dict], *,
                 size: int, grid: int, min_pixels: int = 8) -> np.ndarray:
    """``uint8 [N, grid, grid]`` cell maps for ``paths`` (label 0 = normal)."""
    from synth.compose import rle_decode  # synth imports OpenCV

    if size % grid:
        raise ValueError(f"a {grid}×{grid} cell grid does not divide a {size}-px tile")
    cell = size // grid
    out = np.full((len(paths), grid, grid), UNKNOWN, dtype=np.uint8)
    labels = np.asarray(labels)
    for i, path in enumerate(paths):
        if labels[i] == 0:
            out[i] = 0
            continue
        rle = masks.get(os.path.abspath(path))
        if rle is None or list(rle.get("size", [])) != [size, size]:
            continue
        cover = rle_decode(rle).reshape(grid, cell, grid, cell).sum(axis=(1, 3))
        if cover.max() == 0:
            continue
        out[i] = (cover >= min(min_pixels, cover.max())).astype(np.uint8)
    return out
