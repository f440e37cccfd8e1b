"""ONNX → TFLite export (``training/export/tflite.py``): environment handling, calibration
checks, the graph rules, the parity gate, and (slow) the real onnx2tf conversion of a
small test bundle in the TFLite environment made by ``scripts/setup-tflite``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edge"))

from training.export.gate import DriftBudget, ExportRefused
from training.export.tflite import (
    ENV_VAR,
    TFLiteEnvMissing,
    _nhwc,
    check_parity,
    convert_tflite,
    tflite_env,
)
from training.export.tflite_graph import GraphReport, TFLiteGraphError, check_graph

SIZE = 64


def test_a_missing_environment_names_the_one_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    assert tflite_env() == tmp_path / "nowhere"
    with pytest.raises(TFLiteEnvMissing, match=r"scripts/setup-tflite"):
        convert_tflite(tmp_path / "m.onnx", tmp_path, np.zeros((1, 1, 8, 8), np.float32))


def test_default_environment_location(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert tflite_env() == Path.home() / ".cache" / "semedge" / "tflite-env"


def test_setup_stops_before_installing_when_the_disk_is_too_full(tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "setup-tflite"
    env = {**os.environ, "PYTHON": sys.executable,
           "SEMEDGE_TFLITE_MIN_FREE_MB": str(10**12)}  # more than any disk has free
    done = subprocess.run(["bash", str(script), str(tmp_path / "env")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{tmp_path}" in done.stderr and "MB free" in done.stderr
    assert not (tmp_path / "env").exists()  # nothing half-made left behind


def test_setup_help_prints_usage_and_an_option_is_never_taken_for_a_folder(tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "setup-tflite"
    helped = subprocess.run(["bash", str(script), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "ENV_DIR" in helped.stdout
    wrong = subprocess.run(["bash", str(script), "--bogus"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown option --bogus" in wrong.stderr
    assert list(tmp_path.iterdir()) == []  # no environment folder named after an option


def test_calibration_is_passed_through_as_nhwc_without_normalization():
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    y = _nhwc(x)
    assert y.shape == (3, 8, 8, 1) and y.dtype == np.float32
    np.testing.assert_array_equal(y[..., 0], x[:, 0])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 8, 8), np.float32), r"\[N, 1, S, S\]"),
    (np.zeros((0, 1, 8, 8), np.float32), r"non-empty"),
    (np.full((2, 1, 8, 8), 255.0, np.float32), r"\[0, 1\]"),
    (np.full((2, 1, 8, 8), np.nan, np.float32), r"\[0, 1\]"),
])
def test_calibration_that_is_not_edge_preprocessing_output_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        _nhwc(bad)


def _report(ops: dict, *, io: str = "int8", float_ops=(), custom=()) -> GraphReport:
    return GraphReport("m.tflite", ops, list(float_ops), list(custom), io, io, (0.1, 0),
                       (0.1, 0), [1, 8, 8, 1], 100)


def test_graph_rules():
    clean = {"CONV_2D": 3, "ADD": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert check_graph(_report(clean), "tflite-int8-full").op_counts == clean
    with pytest.raises(TFLiteGraphError, match=r"1× TRANSPOSE.*ops: CONV_2D 3"):
        check_graph(_report({**clean, "TRANSPOSE": 1}), "tflite-int8-full")
    with pytest.raises(TFLiteGraphError, match="left in float"):
        check_graph(_report(clean, float_ops=["LOGISTIC#4"]), "tflite-int8-full")
    with pytest.raises(TFLiteGraphError, match="Flex"):
        check_graph(_report(clean, io="float32", custom=["FlexErf#2"]), "tflite-int8")
    with pytest.raises(TFLiteGraphError, match="input must be int8"):
        check_graph(_report(clean, io="float32"), "tflite-int8-full")
    with pytest.raises(TFLiteGraphError, match="I/O must be float32"):
        check_graph(_report(clean), "tflite-int8")
    with pytest.raises(ValueError, match="unknown TFLite format"):
        check_graph(_report(clean), "tflite")


def _metrics(recall: float, f1: float, agree1: float = 1.0, agree2: float = 1.0) -> dict:
    return {"stage1": {"recall": recall}, "stage2": {"macro_f1": f1},
            "agreement": {"stage1": agree1, "stage2": agree2}}


def test_parity_gate_passes_and_reports_every_format():
    ev = {"onnx": _metrics(1.0, 0.95), "onnx-int8": _metrics(0.998, 0.95),
          "tflite-int8": _metrics(0.996, 0.945, 0.995, 0.992)}
    row = check_parity(ev, "tflite-int8")
    assert row["pass"] and row["agreement_vs_onnx"] == {"stage1": 0.995, "stage2": 0.992}
    assert row["stage1_recall"] == {"onnx": 1.0, "onnx-int8": 0.998, "tflite-int8": 0.996}
    assert row["drift"]["stage1_recall"]["drop"] == pytest.approx(0.004)


def test_parity_gate_of_a_stage1_only_bundle_gates_stage1_alone():
    def binary(recall: float, agree: float) -> dict:
        return {"stage1": {"recall": recall}, "agreement": {"stage1": agree, "cascade": agree}}

    row = check_parity({"onnx": binary(1.0, 1.0), "tflite-int8": binary(0.998, 0.995)},
                       "tflite-int8")
    assert row["pass"] and row["agreement_vs_onnx"] == {"stage1": 0.995}
    assert set(row["drift"]) == {"stage1_recall"} and "stage2_macro_f1" not in row
    with pytest.raises(ExportRefused, match=r"stage1 top-1 agreement 0\.9700"):
        check_parity({"onnx": binary(1.0, 1.0), "tflite-int8": binary(1.0, 0.97)},
                     "tflite-int8")


@pytest.mark.parametrize("tfl, match", [
    (_metrics(1.0, 0.95, 0.98, 1.0), r"stage1 top-1 agreement 0\.9800 < 0\.99"),
    (_metrics(1.0, 0.95, 1.0, 0.9), r"stage2 top-1 agreement"),
    (_metrics(0.994, 0.95), r"stage1_recall 1\.0000 → 0\.9940"),
])
def test_parity_gate_refuses_disagreement_or_recall_loss(tfl, match):
    ev = {"onnx": _metrics(1.0, 0.95), "tflite-int8-full": tfl}
    with pytest.raises(ExportRefused, match=match) as err:
        check_parity(ev, "tflite-int8-full")
    assert err.value.drops["tflite-int8-full"]["pass"] is False


# ------------------------------------------------------------------ the real conversion


def _images(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """SEM-like uint8 fields: line gratings, some with a bright blob (the "defect")."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        pitch = int(rng.integers(8, 20))
        img = np.where((np.arange(2 * SIZE) % pitch) < pitch // 2, 70.0, 170.0)[None, :]
        img = np.repeat(img, 2 * SIZE, axis=0) + rng.normal(0, 12, (2 * SIZE, 2 * SIZE))
        if i % 2:
            y, x = rng.integers(10, 2 * SIZE - 10, 2)
            yy, xx = np.mgrid[:2 * SIZE, :2 * SIZE]
            img += 120.0 * (((yy - y) ** 2 + (xx - x) ** 2) < int(rng.integers(30, 300)))
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(i % 2)
    return images, np.array(labels)


def _tiles(images: list[np.ndarray]) -> np.ndarray:
    from edge.preprocess import tile

    return np.concatenate([tile(im, size=SIZE).batch for im in images])


def _held_out_tiles() -> np.ndarray:
    return _tiles(_images(32, seed=7)[0])  # not the calibration images


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    env = tflite_env()
    if not (env / "bin" / "python").exists():
        pytest.skip(f"no TFLite environment at {env} (create it with scripts/setup-tflite, "
                    f"or set {ENV_VAR})")
    import onnx
    from bundle_factory import build_model

    out = tmp_path_factory.mktemp("tflite")
    # both stages decide by a tile's mean brightness, split in the widest gap between the
    # held-out tiles' means, with the random conv path on top: every held-out tile has a
    # clear answer and both answers occur; stage 2's other four classes sit 10 below (a
    # purely random head ties its top two logits on up to a quarter of the tiles, and a tie
    # flips under any rounding)
    means = np.sort(_held_out_tiles().mean(axis=(1, 2, 3)))
    inner = means[len(means) // 8: -len(means) // 8]
    k = int(np.argmax(np.diff(inner)))
    center = float(inner[k] + inner[k + 1]) / 2
    onnx.save(build_model(outputs=1, size=SIZE, slope=40.0, bias=-40.0 * center,
                          arch="stage1", conv_scale=0.05, seed=0), out / "stage1.onnx")
    onnx.save(build_model(outputs=6, size=SIZE, slope=(40.0, -40.0, 0, 0, 0, 0),
                          bias=(-40.0 * center, 40.0 * center, -10, -10, -10, -10), arch="stage2",
                          conv_scale=0.05, seed=1), out / "stage2.onnx")
    calib = _tiles(_images(24, seed=1)[0])
    return out, {s: convert_tflite(out / f"{s}.onnx", out, calib, env=env)
                 for s in ("stage1", "stage2")}


@pytest.mark.slow
def test_conversion_writes_clean_integer_graphs(converted):
    out, conv = converted
    for stage, c in conv.items():
        assert c.files == {"tflite-int8": out / f"{stage}.int8.tflite",
                           "tflite-int8-full": out / f"{stage}.int8-full.tflite"}
        assert c.worker["flatten_rewrites"] >= 1  # the pooled Flatten became a Squeeze
        full = c.graphs["tflite-int8-full"]
        assert "TRANSPOSE" not in full.op_counts and not full.float_ops
        assert full.input_dtype == full.output_dtype == "int8"
        assert full.input_shape == [1, SIZE, SIZE, 1]  # static: Edge TPU compiler
        # values as the edge produces them: [0, 1] maps exactly onto int8
        assert full.input_quant == pytest.approx((1 / 255, -128))
        int8 = c.graphs["tflite-int8"]
        assert int8.input_dtype == "float32" and int8.input_shape[0] == -1
        assert int8.op_counts.get("CONV_2D", 0) >= 3
        assert c.summary()["converter"]["numpy"].startswith("1.")


@pytest.mark.slow
def test_converted_models_agree_with_onnx_on_held_out_tiles(converted):
    import onnxruntime as ort

    from training.evaluate import evaluate_outputs
    from training.export.tflite import predict_tflite

    out, _conv = converted
    x = _held_out_tiles()
    ref = {s: ort.InferenceSession(str(out / f"{s}.onnx"),
                                   providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
           for s in ("stage1", "stage2")}
    labels = 1 + ref["stage2"].argmax(1)  # every tile a defect tile: both gates see all
    assert set(labels) == {1, 2} and 0 < (ref["stage1"][:, 0] > 0).mean() < 1
    thr = {"threshold": 0.5, "temperature": 1.0, "unknown_threshold": 0.0}
    evaluation = {"onnx": evaluate_outputs(ref, labels, **thr, reference=ref)}
    for fmt in ("tflite-int8", "tflite-int8-full"):
        outs = {s: predict_tflite(out / f"{s}{'.int8' if fmt == 'tflite-int8' else '.int8-full'}"
                                  ".tflite", x, stage=s, fmt=fmt) for s in ref}
        for s in ref:
            spread = float(ref[s].max() - ref[s].min())
            assert np.abs(outs[s] - ref[s]).max() < 0.1 * spread, (fmt, s)
        evaluation[fmt] = evaluate_outputs(outs, labels, **thr, reference=ref)
        # the test stage 2 uses two of its six classes, so one flip moves macro-F1 by
        # many points: this test is about agreement (the macro-F1 budget has its own
        # tests above)
        row = check_parity(evaluation, fmt, budget=DriftBudget(stage2_macro_f1=1.0))
        assert row["pass"] and min(row["agreement_vs_onnx"].values()) >= 0.99


def test_stage2_is_gated_on_its_own_tiles_and_all_tiles_are_reported():
    onnx_m = _metrics(1.0, 0.95)
    tfl = _metrics(1.0, 0.95, 1.0, 0.97)  # flips on normal tiles only ...
    tfl["agreement"]["stage2_defect_tiles"] = 0.995  # ... none on the six classes
    row = check_parity({"onnx": onnx_m, "tflite-int8": tfl}, "tflite-int8")
    assert row["pass"] and row["agreement_vs_onnx"]["stage2"] == 0.995
    assert row["stage2_agreement_all_tiles"] == 0.97
    tfl["agreement"]["stage2_defect_tiles"] = 0.98
    with pytest.raises(ExportRefused, match=r"stage2 top-1 agreement 0\.9800"):
        check_parity({"onnx": onnx_m, "tflite-int8": tfl}, "tflite-int8")


def test_no_defect_tiles_means_stage2_parity_cannot_pass():
    tfl = _metrics(1.0, 0.95)
    tfl["agreement"]["stage2_defect_tiles"] = float("nan")
    with pytest.raises(ExportRefused, match="no held-out tiles of its six classes"):
        check_parity({"onnx": _metrics(1.0, 0.95), "tflite-int8": tfl}, "tflite-int8")


def test_evaluate_reports_stage2_agreement_on_defect_tiles():
    from training.evaluate import evaluate_outputs

    labels = np.array([0, 0, 1, 2])
    s1 = np.full((4, 1), 5.0, np.float32)
    ref2 = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                     [3, 0, 0, 0, 0, 0], [0, 3, 0, 0, 0, 0]], np.float32)
    got2 = ref2.copy()
    got2[0] = [0, 1, 0, 0, 0, 0]  # a flip on a normal tile
    res = evaluate_outputs({"stage1": s1, "stage2": got2}, labels, threshold=0.5,
                           temperature=1.0, unknown_threshold=0.0,
                           reference={"stage1": s1, "stage2": ref2})
    assert res["agreement"]["stage2"] == 0.75
    assert res["agreement"]["stage2_defect_tiles"] == 1.0
    assert res["agreement"]["stage2_defect_tiles_changed"] == 0
    got2[3] = [3, 0, 0, 0, 0, 0]  # and one on a defect tile
    res = evaluate_outputs({"stage1": s1, "stage2": got2}, labels, threshold=0.5,
                           temperature=1.0, unknown_threshold=0.0,
                           reference={"stage1": s1, "stage2": ref2})
    assert res["agreement"]["stage2_defect_tiles_changed"] == 1
