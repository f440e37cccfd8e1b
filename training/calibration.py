"""Stage-2 calibration: temperature scaling, ECE and the ``unknown`` threshold.

* Temperature: the scalar ``T`` minimising the NLL of ``softmax(logits / T)`` on the
  validation split (LBFGS on ``log T``).
* ECE: expected calibration error, 15 equal-width bins of the top probability.
* ``unknown`` threshold (the rule, also in ``docs/training.md``): the ``1 - coverage``
  quantile of the calibrated top probability over the in-taxonomy validation tiles, so
  that ``coverage`` (default 98 %) of them keep a class, capped at ``max_threshold``
  (0.9) so a very confident model does not send its in-distribution tail to review.
  Out-of-taxonomy (``other_defect``) validation tiles, when present, are not used to set
  it; the fraction of them answered ``unknown`` is reported.
"""

from __future__ import annotations

import numpy as np

__all__ = ["expected_calibration_error", "fit_temperature", "select_unknown_threshold",
           "softmax"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, max_iter: int = 100) -> float:
    """Temperature minimising the validation NLL; within [0.05, 20]."""
    import torch

    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise ValueError(f"need (N, C) logits and (N,) labels, got {tuple(z.shape)} and "
                         f"{tuple(y.shape)}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    if not np.isfinite(t):
        return 1.0
    return float(np.clip(t, 0.05, 20.0))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 probability: ``sum_b |acc_b - conf_b| * n_b / N``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += abs(correct[sel].mean() - conf[sel].mean()) * sel.mean()
    return float(ece)


def select_unknown_threshold(probs: np.ndarray, *, coverage: float = 0.98,
                             max_threshold: float = 0.9) -> float:
    """Top-probability floor that keeps ``coverage`` of in-taxonomy tiles labelled."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    top = np.sort(np.asarray(probs, dtype=np.float64).max(axis=1))
    if top.size == 0:
        raise ValueError("no validation tiles to choose the unknown threshold on")
    k = int(np.floor((1.0 - coverage) * top.size + 1e-9))  # tiles allowed below it
    # the runtime labels a tile unknown when its top probability is *below* the
    # threshold, so the k-th smallest value leaves exactly k tiles (<= 1 - coverage) out
    threshold = float(top[k]) if k < top.size else float(top[-1])
    return float(min(threshold, max_threshold))
