"""The bench's held-out evaluation set, rendered deterministically by ``synth``.

``synth`` is a workstation package: :func:`make_evalset` reaches it through
:func:`edge._workstation.render_labelled`, only when it runs, never when ``edge`` is
imported. Where it is not installed the bench still runs and its accuracy columns carry
the reason (:class:`EvalSetUnavailable`).

Every image is one tile of the bundle's input size, normalized exactly as
``Cascade.classify`` normalizes an ``S×S`` image (percentile clip with the bundle's
``low``/``high`` over the tile, ``edge.preprocess.tile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge import _workstation, preprocess
from edge.classes import CLASSES

__all__ = ["EVAL_PER_CLASS", "EVAL_SEED", "EvalSet", "EvalSetUnavailable", "make_evalset"]

EVAL_SEED = 7_000_001
"""Run seed of the bench's images. Training renders its data with its recipe's seed
(0 by default); ``synth`` derives every image's seed from ``(seed, class, index)``
through ``numpy.random.SeedSequence``, so these images are not in the training data."""

EVAL_PER_CLASS = 50
"""Images per class (7 classes: 350 tiles), small enough to render on a Pi."""


class EvalSetUnavailable(RuntimeError):
    """The evaluation set cannot be made here; the message says why."""


@dataclass(frozen=True)
class EvalSet:
    """Labelled, normalized tiles.

    Attributes
    ----------
    batch : (N, 1, S, S) ndarray of float32
        Model inputs.
    labels : (N,) ndarray of int64
        Index into ``edge.classes.CLASSES`` (0 = normal).
    source : dict
        How it was made: generator, recipe (name and hash), seed, per_class, size.
    """

    batch: np.ndarray
    labels: np.ndarray
    source: dict[str, Any]

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def defective(self) -> np.ndarray:
        """``(N,)`` bool: the tile shows a defect (label ≠ normal)."""
        defective: np.ndarray = self.labels != 0
        return defective

    def counts(self) -> dict[str, int]:
        """Tiles per class name."""
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(CLASSES)}


def normalize_tiles(images: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """``(N, S, S)`` uint8/uint16 tiles → ``(N, 1, S, S)`` float32, each normalized alone."""
    n, h, w = images.shape
    if h != w:
        raise ValueError(f"tiles must be square, got {h}x{w}")
    out = np.empty((n, 1, h, w), np.float32)
    for i in range(n):
        preprocess.tile(images[i], size=h, stride=h, low=low, high=high, out=out[i:i + 1])
    return out


def make_evalset(*, size: int, low: float = 1.0, high: float = 99.0,
                 per_class: int = EVAL_PER_CLASS, seed: int = EVAL_SEED,
                 recipe: str = "default") -> EvalSet:
    """Render ``per_class`` images of each of the 7 classes with ``synth`` and normalize them.

    Raises
    ------
    EvalSetUnavailable
        ``synth`` (or its dependencies) is not installed, or rendering failed.
    ValueError
        ``per_class`` < 1.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    try:
        images, names, source = _workstation.render_labelled(
            CLASSES, recipe=recipe, per_class=per_class, seed=seed, size=size)
    except _workstation.WorkstationUnavailable as err:
        raise EvalSetUnavailable(f"no accuracy: {err}") from None
    except Exception as err:  # noqa: BLE001  (a generator in progress may fail any way)
        raise EvalSetUnavailable(f"synth could not render the evaluation set: "
                                 f"{type(err).__name__}: {err}") from None
    stack = np.stack(images)
    return EvalSet(
        batch=normalize_tiles(stack, low=low, high=high),
        labels=np.asarray([CLASSES.index(n) for n in names], np.int64),
        source={**source, "seed": seed, "per_class": per_class, "size": size,
                "bit_depth": int(stack.dtype.itemsize * 8)},
    )
