"""scripts/arm_check/compare.py: the x86-vs-ARM pass rule, near-tie label flips apart."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "arm_check" / "compare.py"
_spec = importlib.util.spec_from_file_location("arm_compare", _PATH)
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)

THR = {"stage1": 0.30, "unknown": 0.40}


@pytest.mark.parametrize(("a", "b", "tol", "why"), [
    (("open", 0.9), ("open", 0.7), 0.05, "same"),
    # normal side's stage-1 score 0.28: logit 0.10 under the threshold's
    (("normal", 0.72), ("void", 0.9), 0.05, "stage-1 threshold"),
    (("void", 0.9), ("normal", 0.72), 0.05, "stage-1 threshold"),
    # stage-1 scores 0.10 and 0.20: logits 1.35 and 0.54 under the threshold's
    (("normal", 0.90), ("void", 0.9), 0.05, None),
    (("normal", 0.80), ("void", 0.9), 0.05, None),
    (("unknown", 0.39), ("short", 0.41), 0.05, "unknown threshold"),
    (("unknown", 0.39), ("short", 0.60), 0.05, None),
    (("open", 0.47), ("short", 0.46), 0.05, "stage-2 top-2"),
    (("open", 0.90), ("short", 0.88), 0.05, None),      # both confident: not a tie
    (("open", 0.40), ("short", 0.50), 0.05, None),      # too far apart
])
def test_near_tie(a, b, tol, why):
    assert cmp.near_tie(a, b, THR, tol) == why


def _image(label, score, tiles, backend="tflite (cpu)"):
    return {"path": "x.png", "label": label, "score": score, "backend": backend,
            "tiles": [{"box": [i * 224, 0, i * 224 + 224, 224], "label": lab, "score": sc}
                      for i, (lab, sc) in enumerate(tiles)]}


def test_compare_counts_near_tie_flips_apart_from_problems():
    ref = {"x.png": _image("void", 0.9, [("normal", 0.72), ("void", 0.9)])}
    got = {"x.png": _image("void", 0.91, [("open", 0.8), ("void", 0.91)])}
    ok, st = cmp.compare(ref, got, 0.05, THR)
    assert ok and st["labels_ok"] == 1 and len(st["flips"]) == 1 and not st["problems"]
    assert "near-tie: stage-1 threshold" in st["flips"][0]
    # without thresholds (fp32) the same flip fails
    ok, st = cmp.compare(ref, got, 0.05, None)
    assert not ok and "tile 0: label normal" in st["problems"][0]


def test_compare_fails_on_a_confident_flip_and_on_drift():
    ref = {"x.png": _image("open", 0.9, [("open", 0.9)])}
    ok, st = cmp.compare(ref, {"x.png": _image("short", 0.9, [("short", 0.9)])}, 0.05, THR)
    assert not ok and len(st["problems"]) == 2  # the image and its tile
    ok, st = cmp.compare(ref, {"x.png": _image("open", 0.8, [("open", 0.8)])}, 0.05, THR)
    assert not ok and any("score" in p for p in st["problems"])
    assert st["max_image"] == pytest.approx(0.1)


def test_compare_accepts_a_decisive_tile_swap():
    """Two flagged tiles of different classes: which one decides the image may swap."""
    ref = {"x.png": _image("open", 0.8, [("open", 0.8), ("void", 0.7)])}
    got = {"x.png": _image("void", 0.71, [("open", 0.79), ("void", 0.71)])}
    ok, st = cmp.compare(ref, got, 0.05, THR)
    assert ok and "decisive tile" in st["flips"][0]


def test_main_reports_flips_and_passes(tmp_path):
    plan = {"bundle_name": "t", "formats_in_bundle": ["tflite-int8"],
            "images": {"samples": 0, "synthetic": 1}, "skipped": {}, "thresholds": THR,
            "compare": [{"format": "tflite-int8", "backend": "tflite"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    ref = _image("void", 0.9, [("normal", 0.72), ("void", 0.9)])
    got = _image("void", 0.9, [("void", 0.6), ("void", 0.9)])
    for cpu, obj in (("x86", ref), ("cortex-a72", got), ("cortex-a76", ref)):
        (tmp_path / cpu).mkdir()
        (tmp_path / cpu / "cmp-tflite-int8.jsonl").write_text(json.dumps(obj) + "\n")
    for cpu, run in cmp.SHIPPED.items():
        (tmp_path / cpu / f"{run}.jsonl").write_text(json.dumps(ref) + "\n")
        (tmp_path / cpu / f"{run}.err").write_text(
            f"semedge: target {run} (Raspberry Pi); tflite tflite-int8\n")
    md = tmp_path / "out.md"
    import sys
    argv, sys.argv = sys.argv, ["compare.py", "--results", str(tmp_path),
                                "--plan", str(tmp_path / "plan.json"), "--markdown", str(md)]
    try:
        assert cmp.main() == 0
    finally:
        sys.argv = argv
    text = md.read_text()
    assert "1 near-tie label flips" in text and "RESULT: PASS" in text
