"""The int8 drift gate: pure comparison, and one real provocation."""

from __future__ import annotations

import math

import pytest

from training.export.gate import DriftBudget, ExportRefused, check_drift


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
