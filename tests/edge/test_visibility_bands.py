"""Visibility bands, targets and per-band recall (edge.visibility), and the eval report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge.evaluation import Prediction, compute_scorecard
from edge.visibility import (
    UNRATED,
    band_of,
    counts_as_target,
    read_visibility,
    recall_by_band,
)

NAN = math.nan


@pytest.mark.parametrize(("k", "band"), [(0.0, "sub-visible"), (2.99, "sub-visible"),
                                         (3.0, "marginal"), (4.99, "marginal"),
                                         (5.0, "visible"), (80.0, "visible"),
                                         (None, UNRATED), (NAN, UNRATED)])
def test_band_edges(k, band):
    assert band_of(k) == band


def test_targets_leave_out_sub_visible_and_marginal_defects_only():
    defective = np.array([False, True, True, True, True, False])
    k = np.array([NAN, 1.0, 4.0, 5.0, NAN, 2.0])  # a normal's k is ignored
    assert counts_as_target(defective, k).tolist() == [True, False, False, True, True, True]


def test_recall_by_band_counts_each_band():
    defective = np.array([True, True, True, True, True, False])
    flagged = np.array([False, True, True, False, True, True])
    k = np.array([1.0, 2.0, 9.0, 7.0, NAN, NAN])
    out = recall_by_band(defective, flagged, k)
    assert list(out) == ["sub-visible", "visible", UNRATED]  # no marginal defect: no row
    assert out["sub-visible"] == {"defects": 2, "flagged": 1, "recall": 0.5}
    assert out["visible"] == {"defects": 2, "flagged": 1, "recall": 0.5}
    assert out[UNRATED] == {"defects": 1, "flagged": 1, "recall": 1.0}


def test_read_visibility_aligns_with_paths(tmp_path):
    rows = [{"path": "open/open_0.png", "visibility": 7.5},
            {"path": "normal/normal_0.png", "visibility": None}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ks = read_visibility(tmp_path, [tmp_path / "open/open_0.png", tmp_path / "normal/normal_0.png",
                                    tmp_path / "void/void_9.png"])
    assert ks[0] == 7.5 and math.isnan(ks[1]) and math.isnan(ks[2])
    assert np.isnan(read_visibility(tmp_path / "nowhere", ["a.png"])).all()


def test_read_visibility_names_a_broken_manifest(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.png", "visibility": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:2: not JSON"):
        read_visibility(tmp_path)


def _pred(truth: str, label: str, path: str) -> Prediction:
    return Prediction(path=path, truth=truth, label=label, score=0.9, stage1_score=0.9,
                      tiles=1, flagged_tiles=int(label != "normal"), shape=(224, 224))


def test_scorecard_reports_recall_by_visibility_when_known():
    preds = [_pred("open", "open", "open/a.png"), _pred("open", "normal", "open/b.png"),
             _pred("void", "normal", "void/c.png"), _pred("normal", "normal", "normal/d.png")]
    card = compute_scorecard(preds, visibility={"open/a.png": 12.0, "open/b.png": 1.5,
                                                "void/c.png": 4.0})
    by = card.stage1["by_visibility"]
    assert by["visible"]["recall"] == 1.0
    assert by["sub-visible"]["recall"] == 0.0 and by["marginal"]["recall"] == 0.0
    assert "by_visibility" not in compute_scorecard(preds).stage1
