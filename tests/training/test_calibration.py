"""Temperature scaling, ECE and the unknown threshold."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import (
    expected_calibration_error,
    fit_temperature,
    select_unknown_threshold,
    softmax,
)


def _sample(true_t: float, n: int = 6000, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 2.0, (n, 6))
    p = softmax(w)
    u = rng.random((n, 1))
    labels = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), 5)
    return w * true_t, labels  # logits over-confident by true_t: T = true_t recovers w


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_recovers_a_known_scale(true_t):
    logits, labels = _sample(true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_temperature_scaling_reduces_ece():
    logits, labels = _sample(3.0)
    t = fit_temperature(logits, labels)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, t), labels)
    assert before > 0.05
    assert after < 0.02


def test_ece_is_zero_for_exact_confidence():
    probs = np.tile([[0.75, 0.25]], (400, 1))
    labels = np.r_[np.zeros(300, int), np.ones(100, int)]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_unknown_threshold_keeps_the_coverage():
    rng = np.random.default_rng(0)
    top = rng.uniform(0.3, 1.0, 1000)
    probs = np.stack([top, 1 - top], axis=1)
    t = select_unknown_threshold(probs, coverage=0.98, max_threshold=1.0)
    kept = (probs.max(1) >= t).mean()
    assert kept >= 0.98
    assert kept < 0.985
    assert select_unknown_threshold(probs, coverage=0.98, max_threshold=0.5) == 0.5
    with pytest.raises(ValueError):
        select_unknown_threshold(probs, coverage=0.0)
