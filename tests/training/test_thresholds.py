"""Stage-1 threshold selection on score distributions with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.thresholds import _cp_lower_bisect, clopper_pearson_lower, select_threshold


def test_threshold_is_the_kth_highest_defective_score():
    pos = np.arange(1, 201) / 200.0  # 200 defective tiles, scores 0.005 … 1.0
    neg = np.zeros(100)
    scores = np.concatenate([pos, neg])
    labels = np.r_[np.ones(200, bool), np.zeros(100, bool)]
    choice = select_threshold(scores, labels, 0.995)
    # ceil(0.995 * 200) = 199 tiles must stay flagged: the 199th highest score is 2/200
    assert choice.threshold == pytest.approx(2 / 200)
    assert choice.recall == pytest.approx(199 / 200)
    assert choice.specificity == 1.0
    assert choice.positives == 200 and choice.negatives == 100


def test_separable_scores_give_full_recall_and_the_closed_form_bound():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 1.0, 600)
    neg = rng.uniform(0.0, 0.4, 900)
    choice = select_threshold(np.r_[pos, neg], np.r_[np.ones(600), np.zeros(900)], 0.995)
    assert choice.threshold == pytest.approx(np.sort(pos)[::-1][math.ceil(0.995 * 600) - 1])
    assert choice.threshold >= 0.6
    assert choice.recall == pytest.approx(597 / 600)
    assert choice.specificity == 1.0
    # 597 of 600: the bound sits below the achieved recall
    assert choice.lower_bound < choice.recall


def test_target_recall_one_keeps_every_defect():
    pos = np.array([0.2, 0.5, 0.9])
    choice = select_threshold(np.r_[pos, [0.1, 0.3]], [1, 1, 1, 0, 0], 1.0)
    assert choice.threshold == 0.2
    assert choice.recall == 1.0
    assert choice.specificity == 0.5
    assert choice.lower_bound == pytest.approx(0.05 ** (1 / 3))


def test_overlapping_gaussians_reach_the_target_at_the_right_quantile():
    rng = np.random.default_rng(1)
    pos = rng.normal(2.0, 1.0, 20000)
    neg = rng.normal(-2.0, 1.0, 20000)
    choice = select_threshold(np.r_[pos, neg], np.r_[np.ones(20000), np.zeros(20000)], 0.99)
    assert choice.recall >= 0.99
    # the 1 % quantile of N(2, 1) is 2 - 2.326 = -0.326
    assert choice.threshold == pytest.approx(-0.326, abs=0.05)
    # specificity = P(N(-2,1) < -0.326) = Phi(1.674) ≈ 0.953
    assert choice.specificity == pytest.approx(0.953, abs=0.01)


def test_ties_at_the_threshold_count_as_flagged():
    choice = select_threshold([0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0], 0.9)
    assert choice.threshold == 0.5 and choice.recall == 1.0 and choice.specificity == 0.0


@pytest.mark.parametrize(("x", "n"), [(1, 1), (5, 10), (95, 100), (199, 200), (600, 600)])
def test_clopper_pearson_matches_its_definition(x, n):
    lb = clopper_pearson_lower(x, n)
    if x == n:
        assert lb == pytest.approx(0.05 ** (1 / n))
    # P(X >= x | n, lb) == alpha
    tail = sum(math.comb(n, i) * lb**i * (1 - lb) ** (n - i) for i in range(x, n + 1))
    assert tail == pytest.approx(0.05, rel=1e-4)
    assert _cp_lower_bisect(x, n, 0.05) == pytest.approx(lb, abs=1e-7)


def test_clopper_pearson_known_value():
    # 200/200 at 95 %: the bound behind "99.5 % recall needs ~600 clean positives"
    assert clopper_pearson_lower(200, 200) == pytest.approx(0.98513, abs=1e-5)
    assert clopper_pearson_lower(0, 10) == 0.0


@pytest.mark.parametrize(("scores", "labels", "target"), [
    ([0.1, 0.2], [0, 0], 0.99),          # no defective tile
    ([0.1, float("nan")], [1, 0], 0.99),  # NaN score
    ([0.1, 0.2], [1, 0], 0.0),           # target out of range
    ([0.1, 0.2], [1], 0.99),             # length mismatch
])
def test_bad_inputs_raise(scores, labels, target):
    with pytest.raises(ValueError):
        select_threshold(scores, labels, target)


def test_stage1_threshold_is_chosen_on_visible_defects():
    from training.pipeline import choose_stage1_threshold
    from training.recipe import TrainRecipe

    rng = np.random.default_rng(0)
    normal = rng.uniform(0.0, 0.5, 400)
    visible = rng.uniform(0.6, 1.0, 200)
    faint = rng.uniform(0.0, 0.1, 20)  # sub-visible defects the model cannot see
    scores = np.r_[normal, visible, faint]
    defective = np.r_[np.zeros(400, bool), np.ones(220, bool)]
    k = np.r_[np.full(400, np.nan), np.full(200, 40.0), np.full(20, 1.0)]
    recipe = TrainRecipe(target_recall=0.995)
    choice, info = choose_stage1_threshold(scores, defective, k, recipe)
    assert choice.threshold >= 0.6 and choice.specificity == 1.0
    assert choice.positives == 200 and choice.negatives == 400
    assert info["val_recall_by_visibility"]["visible"]["recall"] >= 0.995
    assert info["val_recall_by_visibility"]["sub-visible"]["recall"] == 0.0
    assert "20 sub-visible or marginal left out" in info["chosen_on"]
    # unrated defects (no visibility known, e.g. real images) all count: the faint ones pin it
    unrated, _ = choose_stage1_threshold(scores, defective, np.full(620, np.nan), recipe)
    assert unrated.threshold <= 0.1
