"""Result types of the cascade and their JSON form.

The image-label rule (also in ``docs/runtime.md``):

* no tile flagged by stage 1 → ``normal``; score = 1 − the highest stage-1 score
  (the confidence that even the most suspicious tile is normal);
* otherwise the *decisive tile* is the flagged tile with the highest stage-1 score
  (ties: lowest tile index); the image takes its label (a defect class, or ``unknown``
  when its stage-2 top probability is under the bundle's threshold) and its score
  (that top probability). A bundle whose stage 2 has an output for defects outside the
  six classes (``Bundle.other_output``) also answers ``unknown`` when that output's
  probability (1 − the row sum of the six) is above every class's, scored with it.
  An image with a flagged tile is never ``normal``.
* a stage-1-only (binary) bundle has no stage 2: a flagged tile is ``defective`` with its
  stage-1 score, and so is the image its decisive tile decides.

Every ``score`` is the confidence in the label it stands next to.

An image without structure (its low and high clip percentiles are equal: constant, all
black, or nearly every pixel one value) is not shown to the models: it is ``unknown``
with score 0 and a ``warning`` saying why (:func:`blank_result`), never a defect class and
never ``normal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classes import CLASSES, DEFECT_CLASSES, DEFECTIVE, UNKNOWN

__all__ = ["ImageResult", "TileResult", "blank_result", "error_result", "image_label",
           "label_tiles", "stage2_decision"]

NORMAL = CLASSES[0]


@dataclass(frozen=True)
class TileResult:
    """One tile: its box ``(x0, y0, x1, y1)`` in image pixels, label and score."""

    index: int
    box: tuple[int, int, int, int]
    label: str
    score: float
    stage1_score: float
    flagged: bool
    probabilities: dict[str, float] | None

    def to_json(self) -> dict[str, Any]:
        """``{"box", "label", "score"}``."""
        return {"box": list(self.box), "label": self.label, "score": round(self.score, 6)}


@dataclass(frozen=True)
class ImageResult:
    """The cascade's answer for one image (or the error for one file).

    Attributes
    ----------
    path : str or None
        The file, when classified from a file.
    label : str
        ``normal``, a defect class or ``unknown`` (empty when ``error`` is set).
    score : float
        Confidence in ``label`` (see the module docstring).
    boxes : (N, 4) int64 ndarray
        Tile boxes ``x0, y0, x1, y1`` in the input image's pixels.
    stage1_scores : (N,) float32 ndarray
        P(defective) of every tile.
    flagged : (N,) bool ndarray
        Tiles whose stage-1 score reached the threshold (the only ones stage 2 saw).
    stage2_probs : (N, 6) float32 ndarray
        Calibrated stage-2 probabilities (``DEFECT_CLASSES`` order); NaN rows for
        unflagged tiles. With an other output a row sums to 1 − its probability.
    tile_labels : tuple of str
        Label of every tile.
    timings_ms : dict
        Milliseconds per step: ``read`` (files only), ``tile``, ``stage1``, ``stage2``,
        ``total``.
    backend : str
        ``runtime:provider:precision`` of stage 1 (and stage 2 when it differs).
    image_shape : tuple of int
        ``(height, width)`` of the input image.
    grid : tuple of int
        ``(rows, cols)`` of the tile grid.
    decisive_tile : int or None
        Index of the tile that gave the image label (None for ``normal``).
    error : str or None
        Why the file could not be classified; the other fields are then empty.
    warning : str or None
        Caveats on the answer, ``; ``-separated: why the label is not the models' answer
        (an image without structure), or how the file was read (only page 1 of a
        multi-page file, colour converted to luminance, a decoder's warning).
    """

    path: str | None
    label: str
    score: float
    boxes: npt.NDArray[np.int64]
    stage1_scores: npt.NDArray[np.float32]
    flagged: npt.NDArray[np.bool_]
    stage2_probs: npt.NDArray[np.float32]
    tile_labels: tuple[str, ...]
    timings_ms: dict[str, float]
    backend: str
    image_shape: tuple[int, int]
    grid: tuple[int, int]
    decisive_tile: int | None = None
    error: str | None = None
    tile_scores: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    warning: str | None = None

    @property
    def ok(self) -> bool:
        """True unless this is an error result."""
        return self.error is None

    @property
    def stage2_count(self) -> int:
        """Number of tiles stage 2 ran on."""
        return int(np.count_nonzero(self.flagged))

    @property
    def tiles(self) -> list[TileResult]:
        """Per-tile results, in tile order (row-major over ``grid``)."""
        out = []
        for i in range(len(self.tile_labels)):
            probs = None
            if self.flagged[i] and np.isfinite(self.stage2_probs[i]).all():
                probs = {c: float(p) for c, p in zip(DEFECT_CLASSES, self.stage2_probs[i])}
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            out.append(TileResult(
                index=i,
                box=(x0, y0, x1, y1),
                label=self.tile_labels[i],
                score=float(self.tile_scores[i]),
                stage1_score=float(self.stage1_scores[i]),
                flagged=bool(self.flagged[i]),
                probabilities=probs,
            ))
        return out

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object: ``path, label, score, tiles, timings_ms, backend``, and
        ``warning`` when set (``path, error`` for a failed file)."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        out = {
            "path": self.path,
            "label": self.label,
            "score": round(self.score, 6),
            "tiles": [t.to_json() for t in self.tiles],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "backend": self.backend,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        return out


def error_result(path: str | None, error: str, timings_ms: dict[str, float] | None = None,
                 backend: str = "") -> ImageResult:
    """An :class:`ImageResult` for a file that could not be classified."""
    return ImageResult(
        path=path, label="", score=float("nan"),
        boxes=np.zeros((0, 4), np.int64), stage1_scores=np.zeros(0, np.float32),
        flagged=np.zeros(0, bool), stage2_probs=np.zeros((0, len(DEFECT_CLASSES)), np.float32),
        tile_labels=(), timings_ms=dict(timings_ms or {}), backend=backend,
        image_shape=(0, 0), grid=(0, 0), error=error,
    )


def blank_result(path: str | None, warning: str, boxes: np.ndarray, *,
                 image_shape: tuple[int, int], grid: tuple[int, int],
                 timings_ms: dict[str, float], backend: str) -> ImageResult:
    """An image the models did not see (no structure): ``unknown``, score 0, every tile
    ``unknown`` with score 0 and a NaN stage-1 score, and ``warning`` saying why."""
    n = len(boxes)
    return ImageResult(
        path=path, label=UNKNOWN, score=0.0, boxes=boxes,
        stage1_scores=np.full(n, np.nan, np.float32), flagged=np.zeros(n, bool),
        stage2_probs=np.full((n, len(DEFECT_CLASSES)), np.nan, np.float32),
        tile_labels=(UNKNOWN,) * n, tile_scores=np.zeros(n, np.float32),
        timings_ms=dict(timings_ms), backend=backend, image_shape=image_shape, grid=grid,
        warning=warning,
    )


def stage2_decision(probs: np.ndarray, unknown_threshold: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2's rule on rows of the six classes' probabilities ``(M, 6)`` (a row sums to
    less than 1 with the other output): ``(best class index, score, unknown)``. A row
    is ``unknown`` when the other output's probability (1 − the row sum; ~0 without
    one) is above every class's, scored with it, or when its best class is under
    ``unknown_threshold``; otherwise the score is the best class's probability."""
    best, top = probs.argmax(axis=1), probs.max(axis=1)
    other = 1.0 - probs.sum(axis=1)
    by_other = other > top
    return best, np.where(by_other, other, top), by_other | (top < unknown_threshold)


def label_tiles(stage1_scores: np.ndarray, flagged: np.ndarray, probs: np.ndarray | None,
                unknown_threshold: float) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-tile labels and scores (pure; see the module docstring for the rule).

    ``probs`` is ``(N, 6)`` with any values in unflagged rows (a row may sum to less
    than 1: the rest is the other output's), or ``None`` for a stage-1-only bundle
    (flagged tiles are then ``defective``).
    """
    labels = [NORMAL] * len(stage1_scores)
    scores = (1.0 - np.asarray(stage1_scores)).astype(np.float32)
    idx = np.flatnonzero(flagged)
    if probs is None:
        for i in idx:
            labels[i] = DEFECTIVE
        scores[idx] = np.asarray(stage1_scores)[idx]
        return tuple(labels), scores
    best, score, unknown = stage2_decision(np.asarray(probs)[idx], unknown_threshold)
    for i, b, u in zip(idx, best, unknown):
        labels[i] = UNKNOWN if u else DEFECT_CLASSES[b]
    scores[idx] = score
    return tuple(labels), scores


def image_label(stage1_scores: np.ndarray, flagged: np.ndarray, tile_labels: tuple[str, ...],
                tile_scores: np.ndarray) -> tuple[str, float, int | None]:
    """``(label, score, decisive tile)`` of the image (pure; rule in the module docstring)."""
    if len(stage1_scores) == 0:
        raise ValueError("an image has at least one tile")
    if not flagged.any():
        return NORMAL, float(1.0 - stage1_scores.max()), None
    masked = np.where(flagged, stage1_scores, -np.inf)
    k = int(np.argmax(masked))
    return tile_labels[k], float(tile_scores[k]), k
