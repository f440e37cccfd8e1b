"""The binary head's loss: plain BCE, or the focal loss that spends the signal near the
normal/defect boundary."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install '.[train]')")

from training.train_loop import binary_loss  # noqa: E402


def test_gamma_zero_is_plain_bce():
    logits = torch.tensor([-3.0, -0.2, 0.0, 1.5, 4.0])
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert float(binary_loss(logits, targets)) == pytest.approx(float(plain))


def test_focal_loss_of_an_unsure_tile_is_bce_times_a_quarter_at_gamma_two():
    # logit 0: p_t = 0.5, BCE = ln 2, weight (1 - 0.5)^2
    loss = binary_loss(torch.tensor([0.0]), torch.tensor([1.0]), gamma=2.0)
    assert float(loss) == pytest.approx(0.25 * math.log(2))


def test_focal_loss_shrinks_confident_right_answers_far_more_than_wrong_ones():
    targets = torch.tensor([1.0])
    right, wrong = torch.tensor([4.0]), torch.tensor([-4.0])
    bce_ratio = float(binary_loss(right, targets)) / float(binary_loss(wrong, targets))
    focal_ratio = float(binary_loss(right, targets, 2.0)) / float(binary_loss(wrong, targets, 2.0))
    assert focal_ratio < bce_ratio / 100
