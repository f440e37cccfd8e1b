"""Accuracy metrics as pure numpy functions (no scikit-learn on the device).

Used by ``semedge bench`` (and open to ``semedge eval``). Labels are integer class
indices; a confusion matrix has true classes on rows and predictions on columns.
Undefined ratios (a class never predicted, never present) are ``nan``, never a silent 0:
the caller decides how to show them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "BinaryMetrics",
    "binary_recall_precision_specificity",
    "confusion_matrix",
    "macro_f1",
    "precision_recall_f1",
    "roc_auc",
    "roc_curve",
    "specificity_at_recall",
    "threshold_at_recall",
]


def _labels(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices, got {arr.dtype}")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Parameters
    ----------
    y_true, y_pred : (N,) array of int
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes (the matrix side).

    Returns
    -------
    (n_classes, n_classes) ndarray of int64
        ``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Raises
    ------
    ValueError
        Different lengths, not 1-D, or an index outside ``[0, n_classes)``.
    """
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    n_classes = int(n_classes)
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} has a class index outside [0, {n_classes}): "
                             f"min {arr.min()}, max {arr.max()}")
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _ratio(numerator: ArrayLike, denominator: ArrayLike) -> np.ndarray:
    num = np.asarray(numerator, np.float64)
    den = np.asarray(denominator, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 of a confusion matrix.

    Parameters
    ----------
    cm : (K, K) array
        Confusion matrix, true classes on rows.

    Returns
    -------
    precision, recall, f1 : (K,) ndarray of float64
        ``nan`` where undefined: precision of a class never predicted, recall of a class
        never present, F1 where precision or recall is undefined. F1 is 0 when both are 0.

    Notes
    -----
    F1 is computed from the counts, ``2 TP / (2 TP + FP + FN)`` (equal to
    ``2 P R / (P + R)``, with one rounding).
    """
    cm = np.asarray(cm, np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square matrix, got shape {cm.shape}")
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2 * tp, predicted + actual)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    return precision, recall, f1


def macro_f1(cm: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Unweighted mean F1 over the classes present in the data (rows with samples).

    Parameters
    ----------
    cm : (K, K) array
        Confusion matrix, true classes on rows.
    classes : array of int, optional
        Restrict the mean to these class indices (still only those present).

    Returns
    -------
    float
        ``nan`` if no class has samples. A present class that is never predicted
        counts with F1 = 0 (its precision is undefined but its recall is 0).
    """
    cm = np.asarray(cm, np.float64)
    precision, recall, f1 = precision_recall_f1(cm)
    present = cm.sum(axis=1) > 0
    if classes is not None:
        keep = np.zeros(len(present), bool)
        keep[np.asarray(classes, np.int64)] = True
        present &= keep
    if not present.any():
        return float("nan")
    # a present class never predicted: precision undefined, recall 0 → F1 0
    f1 = np.where(np.isnan(f1) & (recall == 0), 0.0, f1)
    return float(np.mean(f1[present]))


@dataclass(frozen=True)
class BinaryMetrics:
    """Positive = defective. Ratios are ``nan`` where undefined."""

    recall: float
    precision: float
    specificity: float
    tp: int
    fp: int
    tn: int
    fn: int

    def as_dict(self) -> dict[str, float | int]:
        """The rates and counts as a JSON-ready dict."""
        return {"recall": self.recall, "precision": self.precision,
                "specificity": self.specificity, "tp": self.tp, "fp": self.fp,
                "tn": self.tn, "fn": self.fn}


def binary_recall_precision_specificity(y_true: np.ndarray, y_pred: np.ndarray) -> BinaryMetrics:
    """Recall, precision and specificity of a binary decision.

    Parameters
    ----------
    y_true, y_pred : (N,) array of bool or {0, 1}
        Truth and decision; ``True``/1 is the positive (defective) class.

    Returns
    -------
    BinaryMetrics
        recall = TP/(TP+FN), precision = TP/(TP+FP), specificity = TN/(TN+FP).
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got shapes "
                         f"{t.shape} and {p.shape}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean or 0/1")
    t, p = t.astype(bool), p.astype(bool)
    tp, fp = int(np.sum(t & p)), int(np.sum(~t & p))
    tn, fn = int(np.sum(~t & ~p)), int(np.sum(t & ~p))
    return BinaryMetrics(
        recall=float(_ratio(tp, tp + fn)), precision=float(_ratio(tp, tp + fp)),
        specificity=float(_ratio(tn, tn + fp)), tp=tp, fp=fp, tn=tn, fn=fn,
    )


def _binary_scores(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D of equal length, got shapes "
                         f"{t.shape} and {s.shape}")
    if t.size and not np.isin(t, (0, 1)).all():
        raise ValueError("y_true must be boolean or 0/1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return t.astype(bool), s


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more likely positive).

    The probability that a random positive scores above a random negative, ties counting
    one half (Mann–Whitney U with average ranks). ``nan`` without positives or negatives.
    """
    t, s = _binary_scores(y_true, scores)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average rank (1-based) of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-alarm rate and recall with every distinct score as the threshold (flagged:
    score >= threshold), from the strictest to the most lenient, starting at ``(0, 0)``.
    A class with no items gives rates of 0."""
    t, s = _binary_scores(y_true, scores)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last item of each run of equal scores
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    return (np.r_[0.0, fp / max(int((~t).sum()), 1)],
            np.r_[0.0, tp / max(int(t.sum()), 1)])


def _threshold(t: np.ndarray, s: np.ndarray, recall: float) -> float:
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    pos = np.sort(s[t])[::-1]
    if pos.size == 0:
        return float("nan")
    keep = int(np.ceil(recall * pos.size - 1e-9))  # positives that must score >= threshold
    return float(pos[max(keep, 1) - 1])


def threshold_at_recall(y_true: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """The highest threshold that keeps at least ``recall`` of the positives flagged (an
    item is flagged when its score is >= the threshold): the score of the positive at
    that rank. ``nan`` without positives."""
    return _threshold(*_binary_scores(y_true, scores), recall)


def specificity_at_recall(y_true: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """Specificity at :func:`threshold_at_recall` (negatives tied with the threshold
    count as false alarms). ``nan`` without positives or negatives."""
    t, s = _binary_scores(y_true, scores)
    threshold = _threshold(t, s, recall)
    if np.isnan(threshold) or not (~t).any():
        return float("nan")
    return float(np.mean(s[~t] < threshold))
