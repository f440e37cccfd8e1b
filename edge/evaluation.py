"""``semedge eval``: the scorecard of a bundle on a labelled folder.

Three steps, each usable alone:

1. :func:`scan_data` — a folder of class folders → :class:`EvalData` (labelled paths).
   A folder named like a class of ``docs/classes.md`` holds that class; any other folder name
   holds defects *outside the taxonomy* (``other_defect``, ``particle``…).
2. :func:`predict` — run a :class:`~edge.cascade.Cascade` over the paths with
   ``classify_files`` (streamed; an unreadable file becomes an error prediction, the run
   goes on) → one :class:`Prediction` per image.
3. :func:`compute_scorecard` — pure: predictions → :class:`Scorecard` (stage-1
   recall/precision/specificity, stage-2 macro-F1 end to end and given flagged,
   out-of-taxonomy handling, confusion matrix, worst mistakes).

The definitions are in ``docs/eval.md``. Images smaller than a tile are upscaled exactly
as ``classify`` does (``edge.preprocess.prepare_small``), because :func:`predict` goes
through ``Cascade.classify_files``. Nothing here imports matplotlib, torch or
``training/``; the terminal table, JSON and PNGs are in :mod:`edge.eval_report`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from edge import metrics
from edge.classes import CLASSES, DEFECT_CLASSES, DEFECTIVE, UNKNOWN
from edge.files import IMAGE_SUFFIXES
from edge.jsonsafe import json_safe
from edge.visibility import read_visibility, recall_by_band

if TYPE_CHECKING:
    from edge.cascade import Cascade
    from edge.results import ImageResult

__all__ = [
    "MISTAKE_KINDS",
    "SCHEMA",
    "EvalData",
    "LabelledImage",
    "Prediction",
    "Scorecard",
    "compute_scorecard",
    "evaluate",
    "mistake_kind",
    "predict",
    "scan_data",
    "stage1_scores",
]

PathLike = Union[str, "os.PathLike[str]"]

SCHEMA = "semedge.eval/1"
"""``schema`` value of the scorecard JSON; bumped when a key changes meaning."""

NORMAL = CLASSES[0]

MISTAKE_KINDS: tuple[str, ...] = (
    "missed", "false_alarm", "wrong_class", "unknown", "out_of_taxonomy_as_class",
)
"""How an image can be wrong (see :func:`mistake_kind`)."""

_STAGE2_COLUMNS: tuple[str, ...] = (*DEFECT_CLASSES, NORMAL, UNKNOWN)
"""Columns of the stage-2 confusion matrices: the six classes, then ``normal`` (a defect
stage 1 missed) and ``unknown``; rows are the six classes."""


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LabelledImage:
    """One image file and the folder (true label) it sits in."""

    path: Path
    truth: str

    @property
    def in_taxonomy(self) -> bool:
        """True when ``truth`` is one of the seven classes of ``docs/classes.md``."""
        return self.truth in CLASSES


@dataclass(frozen=True)
class EvalData:
    """A labelled folder, scanned.

    Attributes
    ----------
    root : Path
        The folder given.
    images : tuple of LabelledImage
        Every image, sorted by folder (``CLASSES`` order, then other folders by name),
        then by path.
    folders : dict of str to int
        Images per class folder, in the same order; an empty folder counts 0.
    ignored : tuple of Path
        Image files directly under ``root`` (in no class folder), not evaluated.
    """

    root: Path
    images: tuple[LabelledImage, ...]
    folders: dict[str, int]
    ignored: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def out_of_taxonomy(self) -> tuple[str, ...]:
        """Folder names that are not classes of ``docs/classes.md``."""
        return tuple(f for f in self.folders if f not in CLASSES)


def _folder_order(name: str) -> tuple[int, str]:
    return (CLASSES.index(name), "") if name in CLASSES else (len(CLASSES), name)


def scan_data(root: PathLike) -> EvalData:
    """Scan ``root``: every sub-folder is a label, every image below it (recursively)
    an example of that label.

    Parameters
    ----------
    root : path
        A folder of folders named after the classes (``normal``, ``ler``, ``open``,
        ``short``, ``void``, ``malformed_via``, ``crack``); any other folder name is a
        defect outside the taxonomy. Hidden folders (``.name``) are skipped.

    Returns
    -------
    EvalData

    Raises
    ------
    ValueError
        ``root`` is not a folder, holds no image in any sub-folder, or a folder name
        differs from a class name only by case or ``-``/space (``Normal``,
        ``malformed-via``): such a folder would silently count as out-of-taxonomy.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder (expected a folder of class folders: "
                         f"{', '.join(CLASSES)}, or any other name for out-of-taxonomy "
                         "defects)")
    canonical = {c.lower(): c for c in CLASSES}
    folders: dict[str, list[Path]] = {}
    ignored = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                ignored.append(entry)
            continue
        if not entry.is_dir():
            continue
        name = entry.name
        near = canonical.get(name.lower().replace("-", "_").replace(" ", "_"))
        if near is not None and near != name:
            raise ValueError(f"{entry}: folder {name!r} looks like class {near!r}; class "
                             f"folders are spelled exactly as in docs/classes.md "
                             f"({', '.join(CLASSES)}). Rename it, or it would count as a "
                             "defect outside the taxonomy")
        folders[name] = sorted(p for p in entry.rglob("*")
                               if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                               and not any(part.startswith(".")
                                           for part in p.relative_to(entry).parts))
    order = sorted(folders, key=_folder_order)
    images = tuple(LabelledImage(p, name) for name in order for p in folders[name])
    if not images:
        found = ", ".join(order) or "no sub-folders"
        raise ValueError(f"{root}: no images in any class folder (found: {found}); "
                         f"suffixes read: {' '.join(sorted(IMAGE_SUFFIXES))}")
    return EvalData(root=root, images=images,
                    folders={name: len(folders[name]) for name in order},
                    ignored=tuple(ignored))


# --------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Prediction:
    """The cascade's answer for one labelled image.

    Attributes
    ----------
    path : str
        The file, relative to the data root (POSIX separators).
    truth : str
        Its folder: a class of ``docs/classes.md`` or an out-of-taxonomy folder name.
    label : str
        ``normal``, a defect class or ``unknown``; ``""`` when ``error`` is set.
    score : float
        Confidence in ``label`` (``ImageResult.score``); nan on error.
    stage1_score : float
        Highest stage-1 score over the image's tiles (P(defective)); nan on error.
    tiles, flagged_tiles : int
        Tiles of the image and how many stage 1 flagged.
    shape : tuple of int
        ``(height, width)`` of the image as read.
    error : str or None
        Why the file could not be classified.
    """

    path: str
    truth: str
    label: str
    score: float
    stage1_score: float
    tiles: int = 0
    flagged_tiles: int = 0
    shape: tuple[int, int] = (0, 0)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was read and classified (no ``error``)."""
        return self.error is None

    @property
    def in_taxonomy(self) -> bool:
        """Whether the true label is one of the seven classes (not ``other_defect``)."""
        return self.truth in CLASSES

    @property
    def defective(self) -> bool:
        """Ground truth for stage 1: every folder but ``normal`` holds defects."""
        return self.truth != NORMAL

    @property
    def flagged(self) -> bool:
        """Stage 1 flagged the image (its label is not ``normal``)."""
        return self.label != NORMAL

    @classmethod
    def from_result(cls, result: ImageResult, truth: str, rel_path: str) -> Prediction:
        """Build from an :class:`~edge.results.ImageResult` (error results included)."""
        if not result.ok:
            return cls(path=rel_path, truth=truth, label="", score=math.nan,
                       stage1_score=math.nan, error=result.error)
        s1 = result.stage1_scores
        return cls(path=rel_path, truth=truth, label=result.label, score=float(result.score),
                   stage1_score=float(s1.max()) if len(s1) else math.nan,
                   tiles=len(s1), flagged_tiles=int(np.count_nonzero(result.flagged)),
                   shape=(int(result.image_shape[0]), int(result.image_shape[1])))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def predict(cascade: Cascade, data: EvalData,
            on_result: Callable[[Prediction], None] | None = None) -> list[Prediction]:
    """Classify every image of ``data`` with ``cascade.classify_files``.

    Parameters
    ----------
    cascade : Cascade
    data : EvalData
    on_result : callable, optional
        Called with each :class:`Prediction` as it arrives (progress bars).

    Returns
    -------
    list of Prediction
        In the order of ``data.images``; unreadable files give error predictions.
    """
    out = []
    results = cascade.classify_files([item.path for item in data.images])
    for item, result in zip(data.images, results):
        pred = Prediction.from_result(result, item.truth, _relative(item.path, data.root))
        out.append(pred)
        if on_result is not None:
            on_result(pred)
    return out


# ----------------------------------------------------------------------- scorecard


def mistake_kind(truth: str, label: str) -> str | None:
    """How an answer is wrong, or None when it is right.

    =============================  ==============================================
    ``missed``                     a defect (any folder but ``normal``) → ``normal``
    ``false_alarm``                ``normal`` → a defect class or ``unknown``
    ``wrong_class``                a taxonomy defect → another defect class
    ``unknown``                    a taxonomy defect → ``unknown``
    ``out_of_taxonomy_as_class``   an out-of-taxonomy defect → one of the six classes
    =============================  ==============================================

    An out-of-taxonomy defect answered ``unknown`` is right, and so is any defect answered
    ``defective`` (a stage-1-only bundle's answer).
    """
    if truth == label:
        return None
    if label == DEFECTIVE:
        return "false_alarm" if truth == NORMAL else None
    if truth == NORMAL:
        return "false_alarm"
    if label == NORMAL:
        return "missed"
    if truth not in CLASSES:
        return None if label == UNKNOWN else "out_of_taxonomy_as_class"
    return "unknown" if label == UNKNOWN else "wrong_class"


@dataclass(frozen=True)
class Scorecard:
    """Every number of ``semedge eval``; :meth:`to_json` gives the JSON document.

    Ratios that are undefined (no image to compute them on) are ``nan`` here and
    ``null`` in the JSON. ``data``, ``stage1``, ``stage2``, ``cascade``,
    ``out_of_taxonomy`` and ``confusion`` are plain dicts in their JSON form; see
    ``docs/eval.md`` for each key.
    """

    data: dict[str, Any]
    stage1: dict[str, Any]
    stage2: dict[str, Any]
    cascade: dict[str, Any]
    out_of_taxonomy: dict[str, Any]
    confusion: dict[str, Any]
    worst: list[Prediction]
    predictions: list[Prediction]
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Prediction]:
        """The predictions of images that could not be read or classified."""
        return [p for p in self.predictions if not p.ok]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (``schema`` = :data:`SCHEMA`); nan → ``null``."""
        from edge import __version__

        doc = {
            "schema": SCHEMA,
            "semedge_version": __version__,
            "run": self.run,
            "data": self.data,
            "stage1": self.stage1,
            "stage2": self.stage2,
            "cascade": self.cascade,
            "out_of_taxonomy": self.out_of_taxonomy,
            "confusion": self.confusion,
            "worst_mistakes": [_prediction_json(p, kind=True) for p in self.worst],
            "errors": [{"path": p.path, "truth": p.truth, "error": p.error}
                       for p in self.errors],
            "predictions": [_prediction_json(p) for p in self.predictions],
        }
        safe: dict[str, Any] = json_safe(doc)
        return safe


def _prediction_json(p: Prediction, kind: bool = False) -> dict[str, Any]:
    if not p.ok:
        return {"path": p.path, "truth": p.truth, "error": p.error}
    out = {"path": p.path, "truth": p.truth, "label": p.label, "score": round(p.score, 6),
           "stage1_score": round(p.stage1_score, 6), "tiles": p.tiles,
           "flagged_tiles": p.flagged_tiles, "shape": list(p.shape)}
    if kind:
        out["kind"] = mistake_kind(p.truth, p.label)
    return out


def _share(num: float, den: float) -> float:
    return num / den if den else math.nan


def _class_table(cm: np.ndarray, rows: Sequence[str]) -> tuple[dict[str, Any], float,
                                                               list[str]]:
    """Per-class precision/recall/F1 of the first ``len(rows)`` classes of ``cm``,
    their macro-F1 over the classes with samples, and those classes."""
    precision, recall, f1 = metrics.precision_recall_f1(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = [c for i, c in enumerate(rows) if support[i] > 0]
    macro = metrics.macro_f1(cm, classes=np.arange(len(rows)))
    table = {}
    for i, c in enumerate(rows):
        table[c] = {
            "support": int(support[i]), "predicted": int(predicted[i]),
            "precision": float(precision[i]), "recall": float(recall[i]),
            # a present class never predicted has recall 0 and F1 0 (as in macro_f1)
            "f1": 0.0 if support[i] > 0 and predicted[i] == 0 else float(f1[i]),
        }
    return table, macro, present


def _stage2_block(preds: Sequence[Prediction]) -> dict[str, Any]:
    """Stage-2 numbers over taxonomy-defect predictions (rows: the six classes;
    columns: six classes, ``normal`` = missed, ``unknown``)."""
    index = {c: i for i, c in enumerate(_STAGE2_COLUMNS)}
    y_true = np.array([index[p.truth] for p in preds], np.int64)
    y_pred = np.array([index[p.label] for p in preds], np.int64)
    cm = metrics.confusion_matrix(y_true, y_pred, len(_STAGE2_COLUMNS))
    table, macro, present = _class_table(cm, DEFECT_CLASSES)
    correct = int(np.trace(cm))
    return {
        "images": len(preds),
        "classes": present,
        "macro_f1": macro,
        "accuracy": _share(correct, len(preds)),
        "unknown": int(cm[:, index[UNKNOWN]].sum()),
        "unknown_share": _share(int(cm[:, index[UNKNOWN]].sum()), len(preds)),
        "missed": int(cm[:, index[NORMAL]].sum()),
        "per_class": {c: table[c] for c in present},
        "confusion": {"rows": list(DEFECT_CLASSES), "columns": list(_STAGE2_COLUMNS),
                      "matrix": cm[:len(DEFECT_CLASSES)].tolist()},
    }


RANKING_RECALLS = (0.90, 0.95, 0.99)
"""Recalls at which ``stage1.ranking`` reports the threshold that keeps them and the
specificity it gives."""


def stage1_scores(preds: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray]:
    """``(defective, stage1_score)`` arrays of the predictions with a finite score."""
    scored = [p for p in preds if p.ok and math.isfinite(p.stage1_score)]
    return (np.array([p.defective for p in scored], bool),
            np.array([p.stage1_score for p in scored], np.float64))


def _stage1_ranking(ok: Sequence[Prediction]) -> dict[str, Any]:
    """Threshold-free stage-1 quality: how well the image's highest stage-1 score ranks
    defects above normals, whatever the bundle's threshold; and, for each recall in
    :data:`RANKING_RECALLS`, the stage-1 threshold that keeps it on these images (a
    profile's ``stage1_threshold``) and the specificity that threshold gives."""
    truth, scores = stage1_scores(ok)
    at = {f"{r:.2f}": r for r in RANKING_RECALLS}
    return {"roc_auc": metrics.roc_auc(truth, scores),
            "specificity_at_recall": {k: metrics.specificity_at_recall(truth, scores, r)
                                      for k, r in at.items()},
            "threshold_at_recall": {k: metrics.threshold_at_recall(truth, scores, r)
                                    for k, r in at.items()}}


def _worst(preds: Sequence[Prediction], n: int) -> list[Prediction]:
    """Missed defects by lowest stage-1 score and the other wrong answers by highest
    confidence (ties: highest stage-1 score), half and half (the other group fills a
    short one); the wrong answers come first."""
    wrong = [p for p in preds if p.ok and mistake_kind(p.truth, p.label) is not None]
    missed = sorted((p for p in wrong if p.label == NORMAL),
                    key=lambda p: (p.stage1_score, p.path))
    confident = sorted((p for p in wrong if p.label != NORMAL),
                       key=lambda p: (-p.score, -p.stage1_score, p.path))
    half = (n + 1) // 2
    take_c = min(len(confident), max(half, n - len(missed)))
    take_m = min(len(missed), n - take_c)
    return confident[:take_c] + missed[:take_m]


BINARY_NOTE = "stage-1-only bundle: no stage 2, answers are normal or defective"


def _stage2_and_cascade(ok: Sequence[Prediction], cols: tuple[str, ...]
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stage 2 on taxonomy defects (end to end, and given stage 1 flagged them), and the
    whole cascade on taxonomy images (normal included), 7 classes + ``unknown``."""
    tax_defects = [p for p in ok if p.truth in DEFECT_CLASSES]
    stage2 = {"end_to_end": _stage2_block(tax_defects),
              "given_flagged": _stage2_block([p for p in tax_defects if p.flagged])}
    tax = [p for p in ok if p.in_taxonomy]
    idx = {c: i for i, c in enumerate(cols)}
    cm7 = metrics.confusion_matrix(np.array([idx[p.truth] for p in tax], np.int64),
                                   np.array([idx[p.label] for p in tax], np.int64), len(cols))
    table7, macro7, present7 = _class_table(cm7, CLASSES)
    cascade = {"images": len(tax), "classes": present7, "macro_f1": macro7,
               "accuracy": _share(int(np.trace(cm7)), len(tax)),
               "per_class": {c: table7[c] for c in present7}}
    return stage2, cascade


def compute_scorecard(predictions: Sequence[Prediction], *,
                      folders: dict[str, int] | None = None,
                      worst: int = 24,
                      visibility: dict[str, float] | None = None,
                      binary: bool = False) -> Scorecard:
    """The scorecard of a list of predictions (pure; definitions in ``docs/eval.md``).

    Parameters
    ----------
    predictions : sequence of Prediction
        Error predictions are counted and listed but enter no metric.
    folders : dict of str to int, optional
        Images per folder as scanned (keeps empty class folders in the report);
        default: counted from ``predictions``.
    worst : int
        How many mistakes to keep in ``worst`` (the contact sheet).
    visibility : dict of str to float, optional
        Defect visibility ``k`` by prediction path (``edge.visibility``, from a synth
        folder's manifest): adds ``stage1.by_visibility``, recall per band.
    binary : bool
        The predictions come from a stage-1-only bundle (answers ``normal`` /
        ``defective``): ``stage2`` says it was skipped, ``cascade`` is the binary
        accuracy, and the confusion matrix has the columns ``normal`` and ``defective``.

    Returns
    -------
    Scorecard
    """
    preds = list(predictions)
    ok = [p for p in preds if p.ok]
    if folders is None:
        folders = {}
        for p in sorted(preds, key=lambda p: _folder_order(p.truth)):
            folders[p.truth] = folders.get(p.truth, 0) + 1
    oot_folders = [f for f in folders if f not in CLASSES]
    for p in preds:  # predictions of folders the caller did not list
        if p.truth not in folders:
            raise ValueError(f"prediction {p.path!r} has truth {p.truth!r}, not in folders")

    # -- stage 1: positive = any folder but normal; flagged = label != normal
    b = metrics.binary_recall_precision_specificity(
        np.array([p.defective for p in ok], bool), np.array([p.flagged for p in ok], bool))
    by_folder = {}
    for f in folders:
        members = [p for p in ok if p.truth == f]
        hits = sum(p.flagged for p in members)
        by_folder[f] = {"images": len(members), "flagged": hits,
                        "flagged_share": _share(hits, len(members))}
    stage1 = {**b.as_dict(), "images": len(ok), "positives": b.tp + b.fn,
              "negatives": b.tn + b.fp, "by_folder": by_folder,
              "ranking": _stage1_ranking(ok)}
    if visibility:
        stage1["by_visibility"] = recall_by_band(
            np.array([p.defective for p in ok], bool), np.array([p.flagged for p in ok], bool),
            np.array([visibility.get(p.path, math.nan) for p in ok], np.float64))

    if binary:
        cols: tuple[str, ...] = (NORMAL, DEFECTIVE)
        stage2: dict[str, Any] = {"skipped": BINARY_NOTE}
        right = sum(p.defective == p.flagged for p in ok)
        cascade = {"images": len(ok), "binary": True, "accuracy": _share(right, len(ok))}
    else:
        cols = (*CLASSES, UNKNOWN)
        stage2, cascade = _stage2_and_cascade(ok, cols)
    idx = {c: i for i, c in enumerate(cols)}

    # -- out-of-taxonomy defects
    oot = [p for p in ok if not p.in_taxonomy]
    flagged = [p for p in oot if p.flagged]
    unknown = sum(p.label == UNKNOWN for p in flagged)
    oot_by_folder = {}
    for f in oot_folders:
        members = [p for p in oot if p.truth == f]
        fl = [p for p in members if p.flagged]
        unk = sum(p.label == UNKNOWN for p in fl)
        oot_by_folder[f] = {"images": len(members), "flagged": len(fl),
                            "flagged_share": _share(len(fl), len(members)),
                            "unknown": unk, "unknown_share_of_flagged": _share(unk, len(fl))}
    answers = {c: sum(p.label == c for p in oot) for c in cols}
    out_of_taxonomy = {
        "folders": oot_folders, "images": len(oot), "flagged": len(flagged),
        "flagged_share": _share(len(flagged), len(oot)), "unknown": unknown,
        "unknown_share_of_flagged": _share(unknown, len(flagged)),
        "unknown_share": _share(unknown, len(oot)),
        "answers": answers, "by_folder": oot_by_folder,
    }

    # -- full confusion matrix: rows = taxonomy classes then other folders
    rows = [*CLASSES, *oot_folders]
    ridx = {c: i for i, c in enumerate(rows)}
    full = np.zeros((len(rows), len(cols)), np.int64)
    for p in ok:
        full[ridx[p.truth], idx[p.label]] += 1
    confusion = {"rows": rows, "columns": list(cols), "matrix": full.tolist()}

    shapes = [p.shape for p in ok]
    data = {
        "images": len(preds), "read": len(ok), "errors": len(preds) - len(ok),
        "folders": dict(folders), "out_of_taxonomy_folders": oot_folders,
        "empty_folders": [f for f, n in folders.items() if n == 0],
        "missing_classes": [c for c in CLASSES if folders.get(c, 0) == 0],
        "tiles": sum(p.tiles for p in ok),
        "shapes": _shape_summary(shapes),
    }
    return Scorecard(data=data, stage1=stage1, stage2=stage2, cascade=cascade,
                     out_of_taxonomy=out_of_taxonomy, confusion=confusion,
                     worst=_worst(ok, worst), predictions=preds)


def _shape_summary(shapes: Iterable[tuple[int, int]]) -> dict[str, Any]:
    arr = np.array(list(shapes), np.int64).reshape(-1, 2)
    if not len(arr):
        return {"min": None, "max": None}
    return {"min": arr.min(axis=0).tolist(), "max": arr.max(axis=0).tolist()}


# --------------------------------------------------------------------------- all


def evaluate(cascade: Cascade, data: EvalData | PathLike, *, worst: int = 24,
             on_result: Callable[[Prediction], None] | None = None) -> Scorecard:
    """Scan (if given a path), classify and score: the whole of ``semedge eval``
    without the printing.

    Returns
    -------
    Scorecard
        With ``run`` filled: bundle name and path, target, backend, thresholds, tile
        size and small-image rule, seconds and images per second.
    """
    if not isinstance(data, EvalData):
        data = scan_data(data)
    t0 = time.perf_counter()
    preds = predict(cascade, data, on_result=on_result)
    seconds = time.perf_counter() - t0
    ks = read_visibility(data.root, [data.root / p.path for p in preds])
    visibility = {p.path: float(k) for p, k in zip(preds, ks) if not math.isnan(k)}
    card = compute_scorecard(preds, folders=data.folders, worst=worst, visibility=visibility,
                             binary=cascade.bundle.binary)
    bundle = cascade.bundle
    small = bundle.manifest.get("preprocess", {}).get("small_image", "upscale")
    run = {
        "data_root": str(data.root),
        "ignored_files": [str(p) for p in data.ignored],
        "bundle": {"name": bundle.name, "path": str(bundle.root)},
        "target": cascade.profile.name,
        "backend": cascade.backend,
        "stage1_threshold": cascade.threshold,
        "unknown_threshold": cascade.unknown_threshold,
        "tile": cascade.size,
        "small_image": small,
        "seconds": seconds,
        "images_per_second": _share(len(preds), seconds),
    }
    return replace(card, run=run)
