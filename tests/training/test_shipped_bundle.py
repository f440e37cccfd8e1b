"""The default bundle shipped in ``edge/models/default/``: hashes, metrics and targets
match its manifest and report. Skipped until ``scripts/build-default-bundle`` has run."""

from __future__ import annotations

import json

import pytest

from edge.bundle import default_bundle_path, load_bundle
from edge.classes import CLASSES
from training.pipeline import INT8_SIZE_BUDGET
from training.thresholds import clopper_pearson_lower

ROOT = default_bundle_path()
pytestmark = pytest.mark.skipif(not (ROOT / "manifest.json").is_file(),
                                reason="default bundle not built (scripts/build-default-bundle)")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report():
    return json.loads((ROOT / "report" / "metrics.json").read_text(encoding="utf-8"))


def test_hashes_verify_and_classes_match():
    bundle = load_bundle(ROOT)  # raises on any sha256 mismatch
    assert bundle.manifest["classes"] == list(CLASSES)
    assert set(bundle.files) >= {"stage1", "stage2"}


def test_manifest_metrics_are_the_report_numbers(manifest, report):
    tflite = ROOT / "report" / "tflite.json"
    tflite_eval = json.loads(tflite.read_text())["evaluation"] if tflite.is_file() else {}
    for fmt, by_set in manifest["metrics"].items():
        for set_name, summary in by_set.items():
            if set_name == "parity":
                assert summary["pass"] is True
                continue
            if fmt.startswith("tflite"):
                assert summary == pytest.approx(tflite_eval[set_name][fmt], nan_ok=True)
                continue
            full = report["evaluation"][set_name][fmt]
            assert summary["stage1_recall"] == pytest.approx(full["stage1"]["recall"])
            assert summary["stage1_specificity"] == pytest.approx(full["stage1"]["specificity"])
            assert summary["stage2_macro_f1"] == pytest.approx(full["stage2"]["macro_f1"])
            assert summary["cascade_accuracy"] == pytest.approx(full["cascade"]["accuracy"])


def test_thresholds_match_the_report(manifest, report):
    s1 = manifest["stage1"]
    assert s1["threshold"] == pytest.approx(report["stage1_threshold"]["threshold"])
    hits = round(s1["val_recall"] * s1["val_positives"])
    assert s1["val_recall_lower_bound"] == pytest.approx(
        clopper_pearson_lower(hits, s1["val_positives"], s1["val_recall_confidence"]))
    assert manifest["stage2"]["temperature"] == pytest.approx(
        report["stage2_calibration"]["temperature"])


def test_size_and_drift(manifest, report):
    sizes = sum((ROOT / manifest["files"][s]["onnx-int8"]["path"]).stat().st_size
                for s in ("stage1", "stage2"))
    assert sizes <= INT8_SIZE_BUDGET == 1_500_000  # the cascade's size rule: both int8 models
    assert "refused" not in report
    for d in report["drift"].values():
        assert d["drop"] <= d["budget"]


def test_target_verdicts_follow_from_the_numbers(report):
    for set_name, verdict in report["targets"].items():
        m = report["evaluation"][set_name]["onnx-int8"]
        got = {"stage1_recall": m["stage1"]["recall"],
               "stage1_specificity": m["stage1"]["specificity"],
               "stage2_macro_f1": m["stage2"]["macro_f1"]}
        for key, row in verdict["checks"].items():
            assert row["value"] == pytest.approx(got[key])
            assert row["pass"] == (got[key] >= row["target"])
        assert verdict["pass"] == all(r["pass"] for r in verdict["checks"].values())


@pytest.mark.xfail(strict=True, reason="the shipped default bundle misses the accuracy targets "
                   "in docs/training.md ('Where the default bundle stands'); "
                   "strict: this fails as soon as a rebuilt bundle meets them")
def test_accuracy_targets_are_met(report):
    failing = {s: t["checks"] for s, t in report["targets"].items() if not t["pass"]}
    assert not failing, f"targets missed: {failing}"


def test_provenance_is_recorded(manifest):
    prov = manifest["provenance"]
    assert "build-default-bundle" in prov["command"]
    assert prov["recipe"] == "default" and prov["recipe_sha256"]
    assert isinstance(prov["seed"], int) and prov["created"]
    assert prov["pipeline_seconds"] is None or prov["pipeline_seconds"] > 0


def test_init_default_names_the_shipped_bundle_and_its_checkpoints_load():
    """``semedge train --init default`` on the full build: the shipped bundle's
    checkpoints are found and hash-checked (the device build has none)."""
    from pathlib import Path

    from training.cli import _bundle_folder
    from training.pipeline import init_checkpoints

    assert _bundle_folder("default") == ROOT
    assert _bundle_folder("./default") == Path("default")
    checkpoints = init_checkpoints(load_bundle(_bundle_folder("default")))
    assert sorted(checkpoints) == ["monolithic", "stage1", "stage2"]
    assert all(path.is_file() and path.is_relative_to(ROOT) for path in checkpoints.values())
