"""The labelling queue of ``semedge eval --queue N``: the images a person should look at
next, as a CSV that ``semedge train --labels`` reads back.

Order: the wrong answers first (the most confident first: a confident mistake teaches
the most, and its label may be the thing that is wrong), then the right answers the
bundle was least sure of. How sure a right answer is: its score when stage 1 flagged
the image (stage 2's confidence, or the ``unknown`` answer's), and for ``normal``
answers how far the highest stage-1 score stayed under the threshold, as a share of the
threshold (0 at the threshold, 1 at a score of 0).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.classes import CLASSES
from edge.evaluation import NORMAL, Prediction, mistake_kind

__all__ = ["CSV_HEADER", "OTHER_DEFECT", "QueueItem", "label_queue", "write_queue_csv"]

CSV_HEADER = ("path", "label", "answer", "score", "why")
"""The queue CSV's columns; ``semedge train --labels`` reads the first two."""
OTHER_DEFECT = "other_defect"
"""The training label of a defect outside the taxonomy (any other ``eval`` folder)."""


@dataclass(frozen=True)
class QueueItem:
    """One image to label: the prediction and why it is in the queue."""

    prediction: Prediction
    why: str  # a mistake kind of ``edge.evaluation.mistake_kind``, or "unsure"
    sureness: float  # 0 (no idea) .. 1 (certain) for right answers; nan for mistakes


def _sureness(p: Prediction, threshold: float) -> float:
    if p.label != NORMAL:
        return p.score
    return max(0.0, threshold - p.stage1_score) / threshold if threshold > 0 else 1.0


def label_queue(predictions: Sequence[Prediction], n: int, threshold: float
                ) -> list[QueueItem]:
    """The ``n`` images to label next (unreadable files are never queued)."""
    wrong, right = [], []
    for p in predictions:
        if not p.ok:
            continue
        kind = mistake_kind(p.truth, p.label)
        if kind is not None:
            wrong.append(QueueItem(p, kind, math.nan))
        else:
            right.append(QueueItem(p, "unsure", _sureness(p, threshold)))
    wrong.sort(key=lambda q: (-q.prediction.score, q.prediction.path))
    right.sort(key=lambda q: (q.sureness, q.prediction.path))
    return (wrong + right)[:n]


def write_queue_csv(items: Sequence[QueueItem], data_root: str | os.PathLike[str],
                    path: str | os.PathLike[str]) -> Path:
    """Write the queue as ``path,label,answer,score,why`` (``label`` pre-filled with the
    folder the image is in, for a person to confirm or correct; paths relative to the
    CSV's folder; a folder outside the taxonomy becomes ``other_defect``). An existing
    file is never overwritten (``FileExistsError``)."""
    path = Path(path)
    base = path.resolve().parent
    with path.open("x", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER)
        for q in items:
            p = q.prediction
            label = p.truth if p.truth in CLASSES else OTHER_DEFECT
            out.writerow([_relative(Path(data_root) / p.path, base), label, p.label,
                          f"{p.score:.4f}", q.why])
    return path


def _relative(image: Path, base: Path) -> str:
    """``image`` relative to ``base`` (POSIX), or absolute where no relative path exists
    (another drive)."""
    try:
        return Path(os.path.relpath(image.resolve(), base)).as_posix()
    except ValueError:
        return image.resolve().as_posix()
