"""Partial layouts into loadable bundles, ``--init``, split persistence and leakage.

64-px tiles, one short epoch per model: seconds each; this checks plumbing, not accuracy.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from test_ingest import binary_folder, defect_folder  # noqa: E402

import edge  # noqa: E402
from edge.bundle import load_bundle, sha256_file  # noqa: E402
from training.cli import add_train_arguments, run_train  # noqa: E402
from training.ingest import LeakageError, check_leakage, hashes_of, read_splits  # noqa: E402

RECIPE = """
seed = 1
size = 64
calibration_per_class = 4
max_recall_drop = 1.0
max_macro_f1_drop = 1.0
timing_seconds = 0.02
[split]
val = 0.3
[stage1]
epochs = 1
samples_per_epoch = 64
batch_size = 32
[stage2]
epochs = 1
samples_per_epoch = 64
batch_size = 32
[monolithic]
epochs = 1
samples_per_epoch = 32
batch_size = 32
"""


def _load(bundle):
    """``edge.load`` with the x86 CPU target at the bundle's own (64-px) tile size."""
    from dataclasses import replace

    from edge.profiles import load_profile

    return edge.load(bundle, target=replace(load_profile("x86-cpu"), tile=None))


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return run_train(parser.parse_args([*argv, "--quiet"]))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "r.toml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory, tiny_folder, recipe):
    out = tmp_path_factory.mktemp("base") / "b"
    assert _train(["--data", str(tiny_folder), "--out", str(out), "--recipe", str(recipe),
                   "--checkpoints", str(out.parent / "elsewhere")]) == 0
    return out


def test_the_bundle_ships_checkpoints_and_splits(base_bundle, tiny_folder):
    manifest = json.loads((base_bundle / "manifest.json").read_text())
    assert set(manifest["checkpoints"]) == {"stage1", "stage2", "monolithic"}
    for entry in [*manifest["checkpoints"].values(), manifest["splits"]]:
        assert sha256_file(base_bundle / entry["path"]) == entry["sha256"]
    assert manifest["preprocess"]["large_image"] == "resize"  # 96-px images, 64-px tiles
    splits = read_splits(base_bundle)
    assert {r["split"] for r in splits["files"]} == {"train", "val", "test"}
    assert len(splits["files"]) == 8 * 12
    test = [r["sha256"] for r in splits["files"] if r["split"] == "test"]
    check_leakage(base_bundle, test)  # the internal test split never saw training
    with pytest.raises(LeakageError):
        check_leakage(base_bundle, hashes_of(sorted((tiny_folder / "open").glob("*.png"))))


def test_a_binary_folder_trains_stage1_and_takes_stage2_from_complete_from(
        tmp_path, base_bundle, recipe):
    data = binary_folder(tmp_path / "bin", n=8)
    out = tmp_path / "s1"
    assert _train(["--data", str(data), "--out", str(out), "--recipe", str(recipe),
                   "--complete-from", str(base_bundle)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["provenance"]["layout"] == "stage1-only"
    assert manifest["provenance"]["trained"] == ["stage1"]
    assert str(base_bundle) in manifest["stage2"]["supplied_by"]
    assert manifest["files"]["stage2"]["onnx-int8"]["sha256"] == json.loads(
        (base_bundle / "manifest.json").read_text())["files"]["stage2"]["onnx-int8"]["sha256"]
    assert set(manifest["checkpoints"]) == {"stage1"}
    assert manifest["preprocess"]["large_image"] == "resize"  # 260-512 px images downscaled
    bundle = load_bundle(out)
    assert bundle.large_image == "resize"
    cascade = _load(out)
    square = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    assert cascade.classify(square).grid == (1, 1)  # downscaled to one 64-px tile
    tall = np.random.default_rng(0).integers(0, 255, (300, 200), dtype=np.uint8)
    assert cascade.classify(tall).grid == (2, 1)  # 96 × 64 after the downscale
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["evaluation"]["test"]["onnx-int8"]["counts"]["defective"] > 0


def test_a_binary_folder_alone_trains_a_stage1_only_bundle(tmp_path, recipe):
    data = binary_folder(tmp_path / "bin", n=8)
    out = tmp_path / "binary"
    assert _train(["--data", str(data), "--out", str(out), "--recipe", str(recipe)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "stage2" not in manifest and set(manifest["files"]) == {"stage1"}
    assert manifest["provenance"]["trained"] == ["stage1"]
    assert manifest["provenance"]["supplied_by"] == {}
    assert set(manifest["checkpoints"]) == {"stage1"}
    report = json.loads((out / "report" / "metrics.json").read_text())
    test = report["evaluation"]["test"]["onnx-int8"]
    assert "stage2" not in test and test["cascade"]["binary"] is True
    assert report["stage2_calibration"] is None and "stage2_macro_f1" not in report["drift"]
    png = out / "report" / "stage1_tradeoff.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_bundle(out).binary
    cascade = _load(out)
    answers = {cascade.classify(np.asarray(
        np.random.default_rng(i).integers(0, 255, (96, 96)), np.uint8)).label for i in range(8)}
    assert answers <= {"normal", "defective"}


def test_init_fine_tunes_stage2_and_supplies_stage1(tmp_path, base_bundle, recipe):
    data = defect_folder(tmp_path / "def", n=6)
    out = tmp_path / "s2"
    assert _train(["--data", str(data), "--out", str(out), "--recipe", str(recipe),
                   "--init", str(base_bundle)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["provenance"]["trained"] == ["stage2"]
    assert manifest["provenance"]["init"]["path"] == str(base_bundle)
    base = json.loads((base_bundle / "manifest.json").read_text())
    assert manifest["stage1"]["threshold"] == base["stage1"]["threshold"]
    # fine-tuned, so not the same weights, but started from them
    new = torch.load(out / "checkpoints" / "stage2.pt", weights_only=True)["state_dict"]
    old = torch.load(base_bundle / "checkpoints" / "stage2.pt", weights_only=True)["state_dict"]
    key = "head.weight"
    assert not torch.equal(new[key], old[key])
    assert torch.nn.functional.cosine_similarity(new[key].flatten(), old[key].flatten(),
                                                 dim=0) > 0.5
    _load(out)


def test_an_eval_set_sharing_a_training_image_is_refused(tmp_path, base_bundle, recipe,
                                                         capsys):
    data = binary_folder(tmp_path / "bin", n=4)
    leaky = binary_folder(tmp_path / "ev", n=2, seed=5)
    src = next((data / "normal").glob("*.png"))
    (leaky / "normal" / "leak.png").write_bytes(src.read_bytes())
    out = tmp_path / "o"
    assert _train(["--data", str(data), "--out", str(out), "--recipe", str(recipe),
                   "--complete-from", str(base_bundle), "--eval", f"ev={leaky}"]) == 2
    assert "also training/validation images" in capsys.readouterr().err
    assert not out.exists()


def test_an_unknown_large_image_rule_is_refused_by_the_edge(tmp_path, base_bundle):
    import shutil

    from edge.bundle import BundleError

    copy = tmp_path / "b"
    shutil.copytree(base_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocess"]["large_image"] = "crop"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="large_image 'crop' is not supported"):
        load_bundle(copy)


def test_aux_targets_map_labels_and_skip_binary_layouts():
    from training.pipeline import _aux_targets

    got = _aux_targets(np.array([0, 1, 2, 6, -1, -2]))
    assert got.tolist() == [0, 1, 2, 6, 7, -100]
    assert _aux_targets(np.array([0, 0, -2, -2])) is None  # normal/defective only
    assert _aux_targets(np.array([0, -1, -1])) is None


def test_checkpoints_without_the_aux_head_still_load(tmp_path):
    import torch

    from training.models import build_model
    from training.pipeline import load_checkpoint

    state = {k: v for k, v in build_model("stage1").state_dict().items()
             if not k.startswith("aux.")}
    torch.save({"model": "stage1", "state_dict": state}, tmp_path / "old.pt")
    model, _ = load_checkpoint(tmp_path / "old.pt")
    assert model(torch.zeros(1, 1, 224, 224)).shape == (1, 1)
    state["bogus.weight"] = torch.zeros(1)
    torch.save({"model": "stage1", "state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bogus.weight"):
        load_checkpoint(tmp_path / "bad.pt")


def test_splits_mark_the_int8_calibration_images_and_a_tflite_export_reuses_them(
        tmp_path, base_bundle, tiny_folder):
    """The images ONNX Runtime's int8 models were calibrated on are in ``splits.json``;
    calibrating on them again reproduces the bundle's int8 file byte for byte, which is
    what lets the TFLite export start from the same tiles (docs/tflite.md)."""
    import shutil

    from training.data import load_dataset
    from training.export.quantize import quantize_int8
    from training.export.tflite_bundle import (
        CalibrationMismatch,
        calibration_images,
        validation_images,
    )
    from training.ingest import calibration_rows

    rows = calibration_rows(read_splits(base_bundle))
    assert rows and {r["split"] for r in rows} == {"train"}
    per_label = {label: sum(r["label"] == label for r in rows) for label in {r["label"] for r in rows}}
    assert len(per_label) == 8 and set(per_label.values()) == {4}  # calibration_per_class = 4

    paths, labels, source = calibration_images(base_bundle, tiny_folder)
    assert "ONNX int8" in source
    assert sorted(str(p) for p in paths) == sorted(str(tiny_folder / r["path"]) for r in rows)
    bundle = load_bundle(base_bundle)
    calib = load_dataset(paths, labels, size=bundle.input_size, low=bundle.low, high=bundle.high)
    again = quantize_int8(bundle.file("stage2", "onnx").path, tmp_path / "s2.int8.onnx", calib.x)
    assert again.read_bytes() == bundle.file("stage2", "onnx-int8").path.read_bytes()

    val_paths, _ = validation_images(base_bundle, tiny_folder)
    assert sorted(val_paths) == sorted(str(tiny_folder / r["path"])
                                       for r in read_splits(base_bundle)["files"]
                                       if r["split"] == "val")

    fresh, _, why = calibration_images(base_bundle, tiny_folder, per_class=2)
    assert len(fresh) == 16 and "fresh draw" in why
    old_bundle = tmp_path / "old"
    old_bundle.mkdir()
    unmarked = read_splits(base_bundle)
    for row in unmarked["files"]:
        row.pop("calibration", None)
    (old_bundle / "splits.json").write_text(json.dumps(unmarked))
    drawn, _, why = calibration_images(old_bundle, tiny_folder)
    assert len(drawn) == 8 * 12 and "records no calibration images" in why  # 48 per class asked
    assert validation_images(tmp_path / "none", tiny_folder) is None

    changed = tmp_path / "data"
    shutil.copytree(tiny_folder, changed)
    victim = changed / rows[0]["path"]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(CalibrationMismatch, match=rows[0]["path"]):
        calibration_images(base_bundle, changed)
    victim.unlink()
    with pytest.raises(CalibrationMismatch, match="missing"):
        calibration_images(base_bundle, changed)
