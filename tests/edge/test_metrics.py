"""edge.metrics on inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge.metrics import (
    binary_recall_precision_specificity,
    confusion_matrix,
    macro_f1,
    precision_recall_f1,
    roc_auc,
    roc_curve,
    specificity_at_recall,
    threshold_at_recall,
)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.sum() == 6


def test_confusion_matrix_of_nothing_is_zeros():
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))


@pytest.mark.parametrize("t, p, n", [([0, 3], [0, 1], 3), ([0, 1], [-1, 0], 3),
                                     ([0, 1], [0], 3), ([[0]], [[0]], 2)])
def test_confusion_matrix_rejects_bad_labels(t, p, n):
    with pytest.raises(ValueError):
        confusion_matrix(t, p, n)


def test_confusion_matrix_rejects_a_non_positive_class_count():
    with pytest.raises(ValueError, match="n_classes"):
        confusion_matrix([0], [0], 0)


def test_precision_recall_f1_per_class_by_hand():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    precision, recall, f1 = precision_recall_f1(cm)
    np.testing.assert_allclose(precision, [1 / 2, 1 / 2, 1.0])
    np.testing.assert_allclose(recall, [1 / 2, 1.0, 2 / 3])
    np.testing.assert_allclose(f1, [0.5, 2 / 3, 0.8])


def test_undefined_ratios_are_nan_not_zero():
    cm = np.array([[2, 0], [0, 0]])  # class 1 never present, never predicted
    precision, recall, f1 = precision_recall_f1(cm)
    assert precision[0] == 1.0 and recall[0] == 1.0 and f1[0] == 1.0
    assert np.isnan(precision[1]) and np.isnan(recall[1]) and np.isnan(f1[1])


def test_f1_is_zero_when_precision_and_recall_are_zero():
    cm = np.array([[0, 1], [1, 0]])
    _, _, f1 = precision_recall_f1(cm)
    np.testing.assert_array_equal(f1, [0.0, 0.0])


def test_macro_f1_averages_present_classes_only():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert macro_f1(cm) == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    absent = np.array([[3, 0, 0], [0, 1, 0], [0, 0, 0]])  # class 2 has no samples
    assert macro_f1(absent) == pytest.approx(1.0)


def test_macro_f1_counts_a_present_class_never_predicted_as_zero():
    cm = np.array([[2, 0], [1, 0]])  # class 1 present, never predicted
    assert macro_f1(cm) == pytest.approx((0.8 + 0.0) / 2)


def test_macro_f1_can_be_restricted_to_some_classes():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert macro_f1(cm, classes=[1, 2]) == pytest.approx((2 / 3 + 0.8) / 2)


def test_macro_f1_of_an_empty_matrix_is_nan():
    assert np.isnan(macro_f1(np.zeros((3, 3))))


def test_binary_metrics_by_hand():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    m = binary_recall_precision_specificity(truth, pred)
    assert (m.tp, m.fn, m.fp, m.tn) == (3, 1, 1, 5)
    assert m.recall == pytest.approx(0.75)
    assert m.precision == pytest.approx(0.75)
    assert m.specificity == pytest.approx(5 / 6)
    assert m.as_dict()["recall"] == pytest.approx(0.75)


def test_binary_metrics_accept_zero_one_and_report_nan_when_undefined():
    m = binary_recall_precision_specificity([0, 0], [0, 0])
    assert np.isnan(m.recall) and np.isnan(m.precision) and m.specificity == 1.0


@pytest.mark.parametrize("t, p", [([0, 1], [0]), ([0, 2], [0, 1]), ([[0]], [[0]])])
def test_binary_metrics_reject_bad_input(t, p):
    with pytest.raises(ValueError):
        binary_recall_precision_specificity(t, p)


@pytest.mark.parametrize(("truth", "scores", "auc"), [
    ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 1.0),   # every defect above every normal
    ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),   # every defect below
    ([1, 0], [0.5, 0.5], 0.5),                   # a tie counts one half
    ([1, 1, 0], [0.1, 0.9, 0.5], 0.5),           # one pair right, one wrong
    ([1, 0, 1, 0, 0], [3, 3, 2, 1, 3], 0.5),     # pairs: (3: .5 .5 1, 2: 0 1 0) = 3/6
])
def test_roc_auc_known_answers(truth, scores, auc):
    assert roc_auc(np.array(truth), np.array(scores, float)) == pytest.approx(auc)


def test_roc_auc_matches_the_pairwise_definition_on_random_scores():
    rng = np.random.default_rng(0)
    t = rng.random(300) < 0.4
    s = np.round(rng.normal(t * 0.7, 1.0), 1)  # rounding makes ties
    pos, neg = s[t], s[~t]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert roc_auc(t, s) == pytest.approx(pairwise)


def test_roc_auc_without_one_class_is_nan_and_bad_input_is_refused():
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))
    with pytest.raises(ValueError, match="finite"):
        roc_auc(np.array([1, 0]), np.array([np.nan, 0.2]))
    with pytest.raises(ValueError, match="equal length"):
        roc_auc(np.array([1, 0]), np.array([0.2]))


def test_specificity_at_recall_keeps_at_least_that_share_of_positives():
    truth = np.array([1] * 10 + [0] * 4)
    scores = np.array([*range(10), 0.5, 1.5, 8.5, 9.5], float)
    # 90 % of 10 positives: the 9 scoring >= 1; normals below 1: only 0.5
    assert specificity_at_recall(truth, scores, 0.9) == pytest.approx(0.25)
    # 100 %: threshold 0, and nothing scores below it
    assert specificity_at_recall(truth, scores, 1.0) == 0.0
    # 50 %: threshold 5 -> normals 0.5 and 1.5 kept normal
    assert specificity_at_recall(truth, scores, 0.5) == pytest.approx(0.5)
    # a normal tied with the threshold is flagged
    assert specificity_at_recall(np.array([1, 0]), np.array([0.3, 0.3]), 1.0) == 0.0
    with pytest.raises(ValueError, match="recall"):
        specificity_at_recall(truth, scores, 0.0)


def test_threshold_at_recall_is_the_score_of_the_last_positive_kept():
    truth = np.array([1] * 10 + [0] * 4)
    scores = np.array([*range(10), 0.5, 1.5, 8.5, 9.5], float)
    assert threshold_at_recall(truth, scores, 0.9) == 1.0   # 9 of 10 score >= 1
    assert threshold_at_recall(truth, scores, 0.95) == 0.0  # 9.5 positives round up to 10
    assert threshold_at_recall(truth, scores, 0.5) == 5.0
    # the threshold keeps exactly the share it names: flagging score >= threshold
    for recall in (0.1, 0.35, 0.9, 1.0):
        t = threshold_at_recall(truth, scores, recall)
        assert np.mean(scores[truth == 1] >= t) >= recall
        assert np.mean(scores[truth == 1] > t) < recall  # and no higher threshold does
    # defined without negatives (specificity is not), undefined without positives
    assert threshold_at_recall(np.array([1, 1]), np.array([0.2, 0.8]), 1.0) == 0.2
    assert np.isnan(specificity_at_recall(np.array([1, 1]), np.array([0.2, 0.8]), 1.0))
    assert np.isnan(threshold_at_recall(np.array([0, 0]), np.array([0.2, 0.8]), 0.9))
    with pytest.raises(ValueError, match="recall"):
        threshold_at_recall(truth, scores, 1.5)


def test_roc_curve_steps_through_each_distinct_score():
    # scores 0.9 (pos), 0.7 (neg), 0.7 (pos), 0.2 (neg): the tie moves both rates at once
    far, rec = roc_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.7, 0.7, 0.2]))
    assert far.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert rec.tolist() == [0.0, 0.5, 1.0, 1.0]
    # its area is roc_auc's (trapezoids count a tie as one half)
    truth = np.array([1] * 10 + [0] * 4)
    scores = np.array([*range(10), 0.5, 1.5, 8.5, 9.5], float)
    far, rec = roc_curve(truth, scores)
    assert np.sum(np.diff(far) * (rec[1:] + rec[:-1]) / 2) == pytest.approx(roc_auc(truth, scores))
