"""A tiny training run end to end: train → export → int8 → report → edge.load.

A few numpy-drawn images per class (96 px, upscaled to 224-px tiles), two short epochs: this checks the
plumbing and the contract, not accuracy (the drift budget is opened up for it; the
strict default is tested in ``test_gate.py`` and provoked below).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import TINY_RECIPE  # noqa: E402

from edge.bundle import load_bundle, sha256_file  # noqa: E402
from edge.classes import CLASSES  # noqa: E402
from training.cli import add_export_arguments, add_train_arguments, run_export, run_train  # noqa: E402
from training.evaluate import predict_onnx  # noqa: E402
from training.export.gate import ExportRefused  # noqa: E402


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    path.write_text(TINY_RECIPE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, tiny_folder, tiny_eval_folder, tiny_recipe):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    rc = _train(["--data", str(tiny_folder), "--out", str(out), "--recipe", str(tiny_recipe),
                 "--eval", f"heldout={tiny_eval_folder}", "--name", "tiny", "--quiet"])
    assert rc == 0
    return out


def test_the_bundle_follows_the_contract(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["classes"] == list(CLASSES)
    assert manifest["input"] == {"size": 224, "channels": 1, "layout": "NCHW",
                                 "dtype": "float32"}
    assert set(manifest["files"]) == {"stage1", "stage2", "monolithic"}
    for _stage, by_format in manifest["files"].items():
        assert set(by_format) == {"onnx", "onnx-int8"}
        for entry in by_format.values():
            assert sha256_file(tiny_bundle / entry["path"]) == entry["sha256"]
    s1 = manifest["stage1"]
    assert 0.0 <= s1["threshold"] <= 1.0 and s1["target_recall"] == 0.995
    assert s1["val_recall_lower_bound"] <= s1["val_recall"]
    # drawn images without a manifest: no visibility known, every defect counts (unrated)
    assert s1["chosen_on"].startswith("visible defects")
    assert s1["val_recall_by_visibility"] == {"unrated": {
        "defects": s1["val_positives"], "flagged": round(s1["val_recall"] * s1["val_positives"]),
        "recall": s1["val_recall"]}}
    s2 = manifest["stage2"]
    assert s2["temperature"] > 0 and 0.0 <= s2["unknown_threshold"] <= 1.0
    assert {"ece_before", "ece_after"} <= set(s2)
    assert set(manifest["metrics"]) == {"pytorch", "onnx", "onnx-int8"}
    assert "stage1_recall" in manifest["metrics"]["onnx-int8"]["heldout"]
    prov = manifest["provenance"]
    assert prov["seed"] == 3 and prov["seconds"] > 0 and "semedge train" in prov["command"]
    assert (prov["device"], prov["world_size"], prov["distributed_backend"]) == ("cpu", 1, None)
    bundle = load_bundle(tiny_bundle)
    assert bundle.input_size == 224


def test_the_report_has_json_and_confusion_pngs(tiny_bundle):
    report = json.loads((tiny_bundle / "report" / "metrics.json").read_text())
    assert set(report["evaluation"]["heldout"]) == {"pytorch", "onnx", "onnx-int8"}
    onnx_fp32 = report["evaluation"]["heldout"]["onnx"]
    held_bands = onnx_fp32["stage1"]["recall_by_visibility"]
    assert sum(v["defects"] for v in held_bands.values()) == sum(
        n for c, n in onnx_fp32["counts"].items() if c != "normal")
    # ONNX fp32 agrees with PyTorch fp32
    assert onnx_fp32["agreement"]["stage1_max_abs_logit_diff"] < 1e-3
    assert onnx_fp32["agreement"]["stage2"] == 1.0
    assert set(report["cascade_vs_monolithic"]["heldout"]) == {"0.02", "0.10", "0.50"}
    pngs = list((tiny_bundle / "report").glob("confusion.*.png"))
    assert len(pngs) == 9  # 3 formats × (stage 2, cascade, monolithic)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["metrics"]["onnx"]["heldout"]["stage2_macro_f1"] == pytest.approx(
        onnx_fp32["stage2"]["macro_f1"], nan_ok=True)


def test_edge_load_runs_the_bundle(tiny_bundle, tiny_eval_folder):
    import edge
    from edge import preprocess

    cascade = edge.load(tiny_bundle)
    image = preprocess.read_image(next((tiny_eval_folder / "open").glob("*.png")))
    result = cascade.classify(image)
    assert result.label in (*CLASSES, "unknown")


def test_checkpoints_load_weights_only_and_reexport(tiny_bundle, tmp_path):
    ckpt = tiny_bundle / "checkpoints" / "stage2.pt"
    data = torch.load(ckpt, weights_only=True)
    assert data["model"] == "stage2" and data["size"] == 224
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    out = tmp_path / "stage2.onnx"
    assert run_export(parser.parse_args(["--checkpoint", str(ckpt), "--format", "onnx",
                                         "--out", str(out)])) == 0
    x = np.random.default_rng(0).random((4, 1, 224, 224), dtype=np.float32)
    np.testing.assert_allclose(predict_onnx(out, x),
                               predict_onnx(tiny_bundle / "stage2.onnx", x), atol=1e-5)


def test_training_is_deterministic_for_a_seed(tiny_folder):
    from training.data import discover, load_dataset
    from training.models import build_model
    from training.train_loop import FitConfig, balanced_weights, fit, set_determinism

    paths, labels = discover(tiny_folder)
    ds = load_dataset(paths[::4], labels[::4], size=64, dtype=np.float16)
    states = []
    for _ in range(2):
        set_determinism(7)
        model = build_model("stage1")
        fit(model, ds.x, (ds.y != 0).astype(np.float32), balanced_weights(ds.y), binary=True,
            config=FitConfig(epochs=1, samples_per_epoch=32, batch_size=16, seed=7))
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


PROVOKE_RECIPE = """
seed = 3
size = 64
calibration_per_class = 8
timing_seconds = 0.05
train_monolithic = false
[split]
val = 0.25
[stage1]
epochs = 6
samples_per_epoch = 320
batch_size = 32
lr = 0.005
[stage2]
epochs = 6
samples_per_epoch = 320
batch_size = 32
lr = 0.005
"""


def test_int8_drift_is_refused_for_real(tmp_path, tiny_folder, tiny_eval_folder, monkeypatch):
    """Provoke drift with the strict default budget: train small models that do learn
    (64-px tiles so it takes seconds), then calibrate int8 on near-black tiles, so the
    activation ranges collapse and int8 saturates."""
    import training.export.quantize as quantize

    real = quantize.quantize_int8

    def garbage_calibration(fp32, out, calibration, **kw):
        return real(fp32, out, np.full_like(calibration, 1e-3), **kw)

    monkeypatch.setattr(quantize, "quantize_int8", garbage_calibration)
    recipe = tmp_path / "strict.toml"
    recipe.write_text(PROVOKE_RECIPE, encoding="utf-8")
    out = tmp_path / "refused"
    rc = _train(["--data", str(tiny_folder), "--out", str(out), "--recipe", str(recipe),
                 "--eval", f"heldout={tiny_eval_folder}", "--quiet"])
    assert rc == 3
    assert not (out / "manifest.json").exists()
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert "refused" in report
    assert any(d["drop"] > d["budget"] for d in report["drift"].values())
    with pytest.raises(ExportRefused):
        from training.export.gate import check_drift

        check_drift(report["evaluation"]["heldout"]["onnx"],
                    report["evaluation"]["heldout"]["onnx-int8"])


@pytest.mark.slow
def test_tflite_export_adds_gated_files_to_the_bundle(tiny_bundle, tiny_folder, tiny_eval_folder,
                                                      tmp_path):
    """``semedge export --format tflite`` on a trained bundle: converted, evaluated next to
    ONNX, and either registered (hashes verify, rpi4 loads it) or refused with the bundle
    left exactly as it was."""
    import shutil

    from training.export.tflite import tflite_env

    if not (tflite_env() / "bin" / "python").exists():
        pytest.skip(f"no TFLite environment at {tflite_env()} (scripts/setup-tflite creates it)")
    pytest.importorskip("ai_edge_litert")
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = (bundle / "manifest.json").read_text()
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    rc = run_export(parser.parse_args([
        "--format", "tflite", "--bundle", str(bundle), "--calibration", str(tiny_folder),
        "--eval", f"heldout={tiny_eval_folder}"]))
    report = json.loads((bundle / "report" / "tflite.json").read_text())
    assert set(report["parity"]) == {"tflite-int8", "tflite-int8-full"}
    # calibrated on the bundle's own ONNX int8 calibration images (8 per label), and
    # measured on its validation split too (reported, the held-out set gates)
    assert {c["calibration_tiles"] for c in report["conversions"].values()} == {8 * 8}
    assert report["gate_set"] == "heldout" and set(report["evaluation"]) == {"heldout", "val"}
    if rc == 0:
        manifest = json.loads((bundle / "manifest.json").read_text())
        for stage in ("stage1", "stage2"):
            assert {"tflite-int8", "tflite-int8-full"} <= set(manifest["files"][stage])
        assert manifest["metrics"]["tflite-int8"]["parity"]["pass"] is True
        import edge

        cascade = edge.load(bundle, target="rpi4")
        assert cascade.backend.startswith("tflite") and cascade.backend.endswith("int8")
    else:
        assert rc == 3
        assert (bundle / "manifest.json").read_text() == before
        assert not list(bundle.glob("*.tflite"))
        assert any(row.get("pass") is False for row in report["parity"].values())


def test_manifest_paths_are_relative_to_the_working_folder(tmp_path, monkeypatch):
    from training.pipeline import _portable_path

    inside = tmp_path / "recipes" / "default.toml"
    monkeypatch.chdir(tmp_path)
    assert _portable_path(inside) == "recipes/default.toml"
    outside = tmp_path.parent / "elsewhere.toml"
    assert _portable_path(outside) == str(outside)
