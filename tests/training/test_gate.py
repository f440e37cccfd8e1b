"""The int8 drift gate: pure comparison, and one real provocation."""

from __future__ import annotations

import math

import pytest

from training.export.gate import DriftBudget, ExportRefused, changed_answers, check_drift


def _m(recall, f1):
    return {"stage1": {"recall": recall}, "stage2": {"macro_f1": f1}}


def test_within_budget_passes_and_reports_the_drops():
    drops = check_drift(_m(0.998, 0.96), _m(0.994, 0.952))
    assert drops["stage1_recall"]["drop"] == pytest.approx(0.004)
    assert drops["stage2_macro_f1"]["drop"] == pytest.approx(0.008)


def test_an_int8_gain_passes():
    check_drift(_m(0.99, 0.9), _m(1.0, 0.95))


@pytest.mark.parametrize(("int8", "culprit"), [
    (_m(0.992, 0.96), "stage1_recall"),       # 0.6 point of recall
    (_m(0.998, 0.948), "stage2_macro_f1"),    # 1.2 points of macro-F1
    (_m(float("nan"), 0.96), "stage1_recall"),
])
def test_drift_beyond_budget_is_refused_with_the_numbers(int8, culprit):
    with pytest.raises(ExportRefused, match=culprit) as info:
        check_drift(_m(0.998, 0.96), int8)
    assert culprit in info.value.drops
    assert "budget" in str(info.value)


def test_budget_is_configurable():
    check_drift(_m(1.0, 1.0), _m(0.9, 0.9), DriftBudget(0.2, 0.2))


def test_a_set_without_stage2_tiles_is_not_held_against_int8():
    drops = check_drift(_m(1.0, math.nan), _m(1.0, math.nan))
    assert "stage2_macro_f1" not in drops


def _counted(recall, defects):
    return {"stage1": {"recall": recall, "defects": defects}}


@pytest.mark.parametrize(("lost", "refused"), [(1, False), (2, False), (3, True)])
def test_a_small_set_tolerates_two_flipped_defects_not_three(lost, refused):
    # 120 defects: one image is 0.83 points of recall, over the 0.5-point budget alone
    fp32, int8 = _counted(118 / 120, 120), _counted((118 - lost) / 120, 120)
    if refused:
        with pytest.raises(ExportRefused, match="stage1_recall"):
            check_drift(fp32, int8)
    else:
        assert check_drift(fp32, int8)["stage1_recall"]["budget"] == pytest.approx(2 / 120)


def test_a_drop_of_exactly_the_allowance_passes_whatever_the_rounding():
    # 115/120 - 113/120 is 2/120 plus one bit in floating point
    assert 115 / 120 - 113 / 120 > 2 / 120
    check_drift(_counted(115 / 120, 120), _counted(113 / 120, 120))


def test_a_large_set_keeps_the_half_point_budget():
    # 1,400 defects: 0.5 point is 7 images, so the two-image floor changes nothing
    check_drift(_counted(1393 / 1400, 1400), _counted(1387 / 1400, 1400))  # 6 lost
    with pytest.raises(ExportRefused):
        check_drift(_counted(1393 / 1400, 1400), _counted(1385 / 1400, 1400))  # 8 lost


def _stage2(f1, changed, tiles=75):
    return {"stage1": {"recall": 1.0, "defects": tiles},
            "stage2": {"macro_f1": f1, "tiles": tiles},
            "agreement": {"stage2_defect_tiles": 1 - changed / tiles,
                          "stage2_defect_tiles_changed": changed}}


@pytest.mark.parametrize(("changed", "refused"), [(0, False), (2, False), (3, True)])
def test_a_small_set_tolerates_two_changed_stage2_answers_not_three(changed, refused):
    # 75 defects: one answer moved out of a class of 8 costs ~3 points of macro-F1
    fp32, int8 = _stage2(0.80, 0), _stage2(0.77, changed)
    if refused:
        with pytest.raises(ExportRefused, match="3 defect answers changed, 2 allowed"):
            check_drift(fp32, int8)
    else:
        drops = check_drift(fp32, int8)["stage2_macro_f1"]
        assert drops["changed_answers"] == changed
        assert drops["drop"] == pytest.approx(0.03)


def test_changed_answers_need_the_agreement_to_count():
    # without a reference the macro-F1 budget alone decides, as before
    int8 = _stage2(0.77, 1)
    del int8["agreement"]
    with pytest.raises(ExportRefused, match="stage2_macro_f1"):
        check_drift(_stage2(0.80, 0), int8)


def test_a_lost_stage2_metric_is_refused_however_few_answers_changed():
    with pytest.raises(ExportRefused, match="stage2_macro_f1"):
        check_drift(_stage2(0.80, 0), _stage2(float("nan"), 0))


@pytest.mark.parametrize(("agreement", "tiles", "expected"), [
    ({"stage2_defect_tiles_changed": 0}, 75, 0), ({"stage2_defect_tiles_changed": 2}, 75, 2),
    ({"stage2_defect_tiles": 0.9}, 75, None), ({"stage2_defect_tiles_changed": 0}, 0, None)])
def test_changed_answers_from_the_agreement(agreement, tiles, expected):
    metrics = {"stage2": {"tiles": tiles}, "agreement": agreement}
    assert changed_answers(metrics) == expected
