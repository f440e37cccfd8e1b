"""Stage-1 threshold selection for a target recall, with a Clopper–Pearson bound.

Pure functions of numpy arrays: testable on synthetic score distributions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["ThresholdChoice", "clopper_pearson_lower", "rates_at", "select_threshold"]


class ThresholdChoice(NamedTuple):
    """The chosen stage-1 threshold and what it achieves on the data it was chosen on.

    A tile is flagged (sent to stage 2) when ``score >= threshold``.
    """

    threshold: float
    recall: float
    lower_bound: float
    specificity: float
    target_recall: float
    confidence: float
    positives: int
    negatives: int


def clopper_pearson_lower(successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson lower bound of a binomial proportion.

    The largest ``p`` with ``P(X >= successes | trials, p) <= 1 - confidence``; i.e. the
    ``1 - confidence`` quantile of ``Beta(successes, trials - successes + 1)``. 0 when
    ``successes == 0``; ``(1 - confidence) ** (1 / trials)`` when all trials succeed.
    """
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got "
                         f"successes={successes}, trials={trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    if successes == 0:
        return 0.0
    if successes == trials:
        return float(alpha ** (1.0 / trials))
    try:
        from scipy.stats import beta
    except ImportError:  # pragma: no cover - scipy is in the train extra
        return _cp_lower_bisect(successes, trials, alpha)
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def _cp_lower_bisect(x: int, n: int, alpha: float) -> float:
    """The same bound without scipy: bisection on the binomial upper tail."""

    def upper_tail(p: float) -> float:  # P(X >= x)
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(x, n + 1)]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = 1e-15, 1.0 - 1e-15
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if upper_tail(mid) > alpha:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(recall, specificity)`` of ``score >= threshold`` against boolean ``labels``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    flagged = scores >= threshold
    pos, neg = labels.sum(), (~labels).sum()
    recall = float((flagged & labels).sum() / pos) if pos else float("nan")
    spec = float((~flagged & ~labels).sum() / neg) if neg else float("nan")
    return recall, spec


def select_threshold(scores: np.ndarray, labels: np.ndarray, target_recall: float = 0.995,
                     *, confidence: float = 0.95) -> ThresholdChoice:
    """The highest threshold whose recall on ``(scores, labels)`` reaches ``target_recall``.

    Parameters
    ----------
    scores : (N,) array
        Stage-1 scores (P(defective), or logits: any monotone score).
    labels : (N,) bool array
        True for defective tiles.
    target_recall : float
        In (0, 1].

    Returns
    -------
    ThresholdChoice
        ``threshold`` is the ``k``-th highest defective score, ``k = ceil(target × P)``:
        the largest threshold that keeps at least ``k`` defective tiles flagged, hence the
        best specificity at that recall. ``lower_bound`` is the one-sided Clopper–Pearson
        bound (at ``confidence``) of the achieved recall.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinity")
    positives = np.sort(scores[labels])[::-1]
    if positives.size == 0:
        raise ValueError("no defective (positive) samples to choose a threshold on")
    # the tolerance keeps 0.995 * 200 = 199 from becoming 200 by float rounding
    k = max(1, math.ceil(target_recall * positives.size - 1e-9))
    threshold = float(positives[k - 1])
    recall, spec = rates_at(scores, labels, threshold)
    hits = int(round(recall * positives.size))
    return ThresholdChoice(
        threshold=threshold,
        recall=recall,
        lower_bound=clopper_pearson_lower(hits, positives.size, confidence),
        specificity=spec,
        target_recall=float(target_recall),
        confidence=float(confidence),
        positives=int(positives.size),
        negatives=int((~labels).sum()),
    )
