"""Defect visibility bands, and stage-1 recall counted per band.

``semedge synth`` writes, for every rendered defect, its visibility ``k`` (the Rose
criterion: the defect's signal over the image noise, ``synth/visibility.py``) into the
``visibility`` field of the folder's ``manifest.jsonl``. A defect a person could not see
cannot be a target, so recall targets and the stage-1 threshold are stated on visible
defects; the other bands are reported beside them. Images without a ``k`` (real or
user-labelled images, normal images) are "unrated": they count as targets.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BANDS",
    "MARGINAL",
    "UNRATED",
    "VISIBLE",
    "band_of",
    "counts_as_target",
    "read_visibility",
    "recall_by_band",
]

MARGINAL = 3.0
"""``k`` from which a defect is marginal (below: sub-visible)."""
VISIBLE = 5.0
"""``k`` from which a defect is visible (Rose's threshold)."""
BANDS = ("sub-visible", "marginal", "visible")
"""Band names, in order of increasing ``k``."""
UNRATED = "unrated"
"""The band of a defect without a visibility number."""


def band_of(k: float | None) -> str:
    """``"sub-visible"`` (k < 3), ``"marginal"`` (3 ≤ k < 5), ``"visible"`` (k ≥ 5), or
    ``"unrated"`` (``None`` or NaN: no number known)."""
    if k is None or math.isnan(k):
        return UNRATED
    if k < MARGINAL:
        return BANDS[0]
    return BANDS[1] if k < VISIBLE else BANDS[2]


def counts_as_target(defective: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Which images a recall target is stated on: every normal image, and every defect
    that is visible or unrated (``k`` NaN). Sub-visible and marginal defects are left out
    (neither positives nor negatives)."""
    defective = np.asarray(defective, bool)
    k = np.asarray(k, np.float64)
    target: np.ndarray = ~defective | np.isnan(k) | (k >= VISIBLE)
    return target


def recall_by_band(defective: np.ndarray, flagged: np.ndarray, k: np.ndarray
                   ) -> dict[str, dict[str, Any]]:
    """Per band (``BANDS`` then ``UNRATED``, bands without defects left out): how many
    defects, how many flagged, and the recall."""
    defective = np.asarray(defective, bool)
    flagged = np.asarray(flagged, bool)
    bands = np.array([band_of(float(v)) for v in np.asarray(k, np.float64)], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for band in (*BANDS, UNRATED):
        members = defective & (bands == band)
        n = int(members.sum())
        if n:
            hits = int((flagged & members).sum())
            out[band] = {"defects": n, "flagged": hits, "recall": hits / n}
    return out


def read_visibility(root: str | os.PathLike[str],
                    paths: Sequence[str | os.PathLike[str]] | None = None
                    ) -> np.ndarray | dict[str, float]:
    """The ``visibility`` numbers of ``root/manifest.jsonl``.

    Without ``paths``: ``{absolute image path: k}`` for the records that carry one. With
    ``paths``: a float array aligned with them, NaN where no number is known (no
    manifest, a normal image, or an image the manifest does not list).
    """
    root = Path(root)
    table: dict[str, float] = {}
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        with open(manifest, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{manifest}:{line_no}: not JSON ({err.msg})") from None
                k = row.get("visibility") if isinstance(row, dict) else None
                if isinstance(k, (int, float)) and row.get("path"):
                    table[os.path.abspath(root / row["path"])] = float(k)
    if paths is None:
        return table
    return np.array([table.get(os.path.abspath(p), math.nan) for p in paths], np.float64)
