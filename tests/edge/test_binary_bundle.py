"""Stage-1-only (binary) bundles: the manifest contract, ``normal``/``defective`` answers
from ``classify``, the ``eval`` scorecard, and clear refusals where a stage 2 is needed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import field_image, make_bundle

import edge
from edge.bench.runner import BenchConfig, run_bench
from edge.bundle import BundleError, load_bundle
from edge.classes import DEFECTIVE
from edge.cli import main
from edge.device_bundle import write_device_bundle
from edge.evaluation import evaluate, mistake_kind


def make_binary_bundle(root: Path, **kwargs) -> Path:
    """A bundle from :func:`make_bundle` with its stage 2 (and manifest block) removed."""
    root = make_bundle(root, **kwargs)
    manifest = json.loads((root / "manifest.json").read_text())
    for stage in ("stage2", "monolithic"):
        for entry in manifest["files"].pop(stage, {}).values():
            (root / entry["path"]).unlink()
    manifest.pop("stage2")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory) -> Path:
    return make_binary_bundle(tmp_path_factory.mktemp("binary"), formats=("onnx", "onnx-int8"))


def test_a_bundle_without_stage2_loads_as_binary(binary_dir):
    bundle = load_bundle(binary_dir)
    assert bundle.binary and bundle.formats("stage2") == ()
    assert not load_bundle(make_bundle(binary_dir.parent / "full")).binary


def test_a_stage2_model_still_needs_its_manifest_block(tmp_path):
    root = make_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["stage2"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="missing key stage2"):
        load_bundle(root)


def test_flagged_tiles_are_defective_with_their_stage1_score(binary_dir, cpu_profile):
    cascade = edge.load(binary_dir, target=cpu_profile)
    result = cascade.classify(field_image(3, 4, [(1, 2)]))
    (k,) = np.flatnonzero(result.flagged)
    assert result.label == DEFECTIVE and result.decisive_tile == k
    assert result.score == pytest.approx(float(result.stage1_scores[k]))
    assert set(result.tile_labels) == {"normal", DEFECTIVE}
    assert result.tiles[k].probabilities is None and result.stage2_count == 1
    clean = cascade.classify(field_image(3, 4))
    assert clean.label == "normal"
    with pytest.raises(ValueError, match="stage-1-only"):
        cascade.stage2_probs(np.zeros((1, 1, 224, 224), np.float32))


def test_classify_json_answers_defective(binary_dir, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "hit.png"), field_image(2, 2, [(0, 0)]))
    assert main(["classify", str(tmp_path / "hit.png"), "--bundle", str(binary_dir),
                 "--target", "x86-cpu", "--json", "--no-progress"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["label"] == DEFECTIVE


def _binary_folder(root: Path) -> Path:
    for name, bright in (("normal", []), ("defective", [(0, 1)])):
        (root / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), field_image(2, 2, bright))
    return root


def test_eval_of_a_binary_bundle_scores_stage1_and_skips_stage2(binary_dir, tmp_path,
                                                                cpu_profile):
    data = _binary_folder(tmp_path / "data")
    card = evaluate(edge.load(binary_dir, target=cpu_profile), data)
    assert card.stage1["recall"] == 1.0 and card.stage1["specificity"] == 1.0
    assert "stage-1-only" in card.stage2["skipped"]
    assert card.cascade == {"images": 6, "binary": True, "accuracy": 1.0}
    assert card.confusion["columns"] == ["normal", DEFECTIVE]
    assert card.worst == []
    assert json.loads(json.dumps(card.to_json()))["stage2"]["skipped"]


def test_eval_cli_prints_a_binary_scorecard(binary_dir, tmp_path, capsys):
    data = _binary_folder(tmp_path / "data")
    assert main(["eval", "--data", str(data), "--bundle", str(binary_dir),
                 "--target", "x86-cpu", "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert "stage-1-only bundle" in out and "accuracy on 6 images: 1.000" in out


def test_defective_is_right_for_any_defect_and_a_false_alarm_for_normal():
    assert mistake_kind("crack", DEFECTIVE) is None
    assert mistake_kind("particle", DEFECTIVE) is None
    assert mistake_kind("normal", DEFECTIVE) == "false_alarm"
    assert mistake_kind(DEFECTIVE, "normal") == "missed"


def test_bench_refuses_a_binary_bundle_and_says_what_to_use(binary_dir):
    with pytest.raises(BundleError, match="stage-1-only bundle: semedge bench .* semedge eval"):
        run_bench(BenchConfig(bundle=binary_dir, target="x86-cpu", quick=True))


def test_a_binary_bundle_makes_a_device_bundle(binary_dir, tmp_path):
    write_device_bundle(binary_dir, tmp_path / "device")
    slim = load_bundle(tmp_path / "device")
    assert slim.binary and slim.formats("stage1") == ("onnx-int8",)
