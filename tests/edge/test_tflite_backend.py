"""The TFLite backend (``edge/backends/tflite_backend.py``) with ai_edge_litert only.

The models are written here with LiteRT's flatbuffer schema: ``logits = slope *
mean(tile) + bias`` in int8 (MEAN → FULLY_CONNECTED), the same function as the ONNX
test models of ``bundle_factory``, so a TFLite bundle must classify like the ONNX one.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the tflite backend needs ai-edge-litert")

import flatbuffers
from ai_edge_litert import schema_py_generated as fb
from bundle_factory import field_image, make_bundle, read_manifest, sha256, write_manifest

import edge
from edge.backends import BackendUnavailable, ProviderError, create_backend, why_unavailable
from edge.backends import tflite_backend as tb
from edge.bundle import BundleError, StageFile
from edge.profiles import load_profile

IN_SCALE, IN_ZERO = 1.0 / 255.0, -128


def _quant(scale: float, zero: int):
    q = fb.QuantizationParametersT()
    q.scale, q.zeroPoint = [float(scale)], [int(zero)]
    return q


def tflite_model(path: Path, *, outputs: int, slope, bias, size: int = 32,
                 full: bool = False, batch: int = -1) -> Path:
    """Write an int8 ``[N,S,S,1] → [N,K]`` model: ``slope * mean + bias``.

    ``full``: int8 I/O (``tflite-int8-full``), else float I/O with QUANTIZE/DEQUANTIZE.
    ``batch``: -1 for a dynamic batch, else that fixed batch.
    """
    slope = np.broadcast_to(np.asarray(slope, np.float64), (outputs,))
    bias = np.broadcast_to(np.asarray(bias, np.float64), (outputs,))
    w_scale = max(float(np.abs(slope).max()), 1e-3) / 127.0
    lo = float(np.minimum(bias, slope + bias).min())
    hi = float(np.maximum(bias, slope + bias).max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    out_scale = (hi - lo) / 255.0 or 1.0
    out_zero = int(round(-128 - lo / out_scale))
    buffers = [b""]

    def buf(arr: np.ndarray) -> int:
        buffers.append(np.ascontiguousarray(arr).tobytes())
        return len(buffers) - 1

    tensors = []

    def tensor(name, shape, ttype, buffer=0, quant=None, signature=None) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
        if signature is not None:
            t.shapeSignature = list(signature)
        if quant is not None:
            t.quantization = quant
        tensors.append(t)
        return len(tensors) - 1

    n = 1 if batch < 0 else batch
    sig = [batch, size, size, 1]
    i8, f32, i32 = fb.TensorType.INT8, fb.TensorType.FLOAT32, fb.TensorType.INT32
    x_q = tensor("x_q", [n, size, size, 1], i8, quant=_quant(IN_SCALE, IN_ZERO), signature=sig)
    axes = tensor("axes", [2], i32, buf(np.array([1, 2], np.int32)))
    mean = tensor("mean", [n, 1], i8, quant=_quant(IN_SCALE, IN_ZERO), signature=[batch, 1])
    weights = tensor("w", [outputs, 1], i8,
                     buf(np.rint(slope / w_scale).astype(np.int8).reshape(outputs, 1)),
                     quant=_quant(w_scale, 0))
    b = tensor("b", [outputs], i32, buf(np.rint(bias / (IN_SCALE * w_scale)).astype(np.int32)),
               quant=_quant(IN_SCALE * w_scale, 0))
    y_q = tensor("y_q", [n, outputs], i8, quant=_quant(out_scale, out_zero),
                 signature=[batch, outputs])
    codes, ops = [], []

    def op(code, inputs, outs, opt_type=0, opt=None) -> None:
        c = fb.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
        codes.append(c)
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = len(codes) - 1, inputs, outs
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        ops.append(o)

    if full:
        first, last = x_q, y_q
    else:
        first = tensor("image", [n, size, size, 1], f32, signature=sig)
        op(fb.BuiltinOperator.QUANTIZE, [first], [x_q])
    reducer = fb.ReducerOptionsT()
    reducer.keepDims = False
    op(fb.BuiltinOperator.MEAN, [x_q, axes], [mean], fb.BuiltinOptions.ReducerOptions, reducer)
    op(fb.BuiltinOperator.FULLY_CONNECTED, [mean, weights, b], [y_q],
       fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT())
    if not full:
        last = tensor("logits", [n, outputs], f32, signature=[batch, outputs])
        op(fb.BuiltinOperator.DEQUANTIZE, [y_q], [last])
    graph = fb.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [first], [last], ops
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [graph]
    model.buffers = []
    for data in buffers:
        bt = fb.BufferT()
        bt.data = np.frombuffer(data, np.uint8) if data else None
        model.buffers.append(bt)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def stage_file(path: Path, fmt: str = "tflite-int8", stage: str = "stage2") -> StageFile:
    return StageFile(stage, fmt, path, sha256(path))


def tiles(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


SLOPE, BIAS = [4.0, -2.0, 1.0], [-1.0, 0.5, 0.0]


def expected(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2, 3))[:, None] * np.array(SLOPE) + np.array(BIAS)


@pytest.fixture()
def cpu():
    return create_backend("tflite", threads=2, providers=["cpu"])


@pytest.fixture()
def models(tmp_path):
    return {
        "int8": tflite_model(tmp_path / "m.int8.tflite", outputs=3, slope=SLOPE, bias=BIAS),
        "full": tflite_model(tmp_path / "m.int8-full.tflite", outputs=3, slope=SLOPE,
                             bias=BIAS, full=True),
        "full_b1": tflite_model(tmp_path / "b1.int8-full.tflite", outputs=3, slope=SLOPE,
                                bias=BIAS, full=True, batch=1),
    }


# ------------------------------------------------------------------ sessions


def test_float_io_model_runs_any_batch_and_matches_the_function(cpu, models):
    session = cpu.open(stage_file(models["int8"]), size=32, outputs=3)
    assert session.describe == "tflite:XNNPACK:int8"
    x = tiles(7)
    y = session.run(x)
    assert y.dtype == np.float32 and y.shape == (7, 3)
    np.testing.assert_allclose(y, expected(x), atol=0.05)
    for n in (1, 3, 7, 2):  # the dynamic batch is resized as needed
        np.testing.assert_array_equal(session.run(x[:n]), y[:n])
    assert session.run(x[:0]).shape == (0, 3)


@pytest.mark.parametrize("key", ["full", "full_b1"])
def test_full_integer_model_agrees_with_the_float_io_model(cpu, models, key):
    ref = cpu.open(stage_file(models["int8"]), size=32, outputs=3).run(tiles(5))
    session = cpu.open(stage_file(models[key], "tflite-int8-full"), size=32, outputs=3)
    assert session.describe == "tflite:XNNPACK:int8-full"
    assert session.input_dtype == np.int8 and session.input_quant == pytest.approx(
        (IN_SCALE, IN_ZERO))
    y = session.run(tiles(5))  # batch 1 models loop, padding nothing
    assert y.dtype == np.float32 and y.shape == (5, 3)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_session_is_safe_to_share_between_threads(cpu, models):
    from concurrent.futures import ThreadPoolExecutor

    session = cpu.open(stage_file(models["int8"]), size=32, outputs=3)
    batches = [tiles(n, seed=n) for n in (1, 4, 2, 3) * 4]
    want = [session.run(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(session.run, batches))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_io_shapes_are_checked_against_the_contract(cpu, models):
    with pytest.raises(BundleError, match=r"m\.int8\.tflite.*input\.size 64"):
        cpu.open(stage_file(models["int8"]), size=64, outputs=3)
    with pytest.raises(BundleError, match=r"contract \[N, 6\]"):
        cpu.open(stage_file(models["int8"]), size=32, outputs=6)


def test_a_format_key_that_does_not_match_the_file_is_refused(cpu, models):
    with pytest.raises(BundleError, match="input is float32"):
        cpu.open(stage_file(models["int8"], "tflite-int8-full"), size=32, outputs=3)
    with pytest.raises(BundleError, match="float I/O"):
        cpu.open(stage_file(models["full"], "tflite-int8"), size=32, outputs=3)
    with pytest.raises(ValueError, match="tflite backend runs"):
        cpu.open(stage_file(models["int8"], "onnx"), size=32, outputs=3)


def test_unknown_delegate_names_are_refused():
    with pytest.raises(ValueError, match="among"):
        create_backend("tflite", threads=1, providers=["gpu"])


# ------------------------------------------------------------------ quantization


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_dequantize_round_trip_is_within_half_a_step(dtype):
    scale, zero = (1 / 255, -128) if dtype == np.int8 else (1 / 255, 0)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    q = tb.quantize_input(x, scale, zero, dtype)
    assert q.dtype == dtype
    back = tb.dequantize_output(q, scale, zero)
    assert back.dtype == np.float32
    assert np.abs(back - x).max() <= scale / 2 + 1e-7
    np.testing.assert_array_equal(tb.quantize_input(back, scale, zero, dtype), q)


def test_quantize_saturates_and_dequantize_does_not_overflow():
    q = tb.quantize_input(np.array([-5.0, 5.0], np.float32), 0.01, 0, np.int8)
    np.testing.assert_array_equal(q, [-128, 127])
    # int8 arithmetic would wrap: 127 - (-128) = 255
    assert tb.dequantize_output(np.array([127], np.int8), 1.0, -128)[0] == 255.0
    assert tb.dequantize_output(np.array([0], np.uint8), 0.5, 255)[0] == -127.5
    with pytest.raises(ValueError, match="scale"):
        tb.quantize_input(np.zeros(2), 0.0, 0)


def test_the_session_quantizes_with_the_models_own_parameters(cpu, models):
    session = cpu.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)
    x = tiles(2)
    q = tb.quantize_input(x.reshape(2, 32, 32, 1), *session.input_quant, np.int8)
    raw = session._invoke(q)  # the model's int8 logits
    np.testing.assert_array_equal(session.run(x), tb.dequantize_output(raw,
                                                                       *session.output_quant))


# ------------------------------------------------------------------ Edge TPU


@pytest.fixture()
def no_edgetpu(monkeypatch):
    """Make the delegate library certainly absent (also on a machine that has one)."""
    monkeypatch.setattr(tb, "edgetpu_library", lambda: "libsemedge-test-no-edgetpu.so.1")


def test_edgetpu_without_a_compiled_model_names_the_file_and_the_fallback(models, no_edgetpu):
    backend = create_backend("tflite", threads=1)  # full-int8 defaults to the Edge TPU
    with pytest.raises(ProviderError) as err:
        backend.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)
    msg = str(err.value)
    assert "m.int8-full_edgetpu.tflite: missing" in msg
    assert "edgetpu_compiler" in msg and "--target rpi4" in msg


def _compiled_and_listed(models, tmp_path) -> Path:
    compiled = tmp_path / "m.int8-full_edgetpu.tflite"
    shutil.copy(models["full"], compiled)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"edgetpu": {"stage2": {"path": compiled.name, "sha256": sha256(compiled)}}}))
    return compiled


def test_edgetpu_without_the_delegate_names_the_library_and_the_fallback(
        models, tmp_path, no_edgetpu):
    _compiled_and_listed(models, tmp_path)
    backend = create_backend("tflite", threads=1)
    with pytest.raises(ProviderError) as err:
        backend.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)
    msg = str(err.value)
    assert "libsemedge-test-no-edgetpu.so.1" in msg and "Edge TPU runtime" in msg
    assert "--target rpi4" in msg
    reason = why_unavailable("tflite", threads=1, providers=["edgetpu"])
    assert reason is not None and "libsemedge-test-no-edgetpu.so.1" in reason


def test_an_unlisted_or_modified_compiled_model_is_refused(models, tmp_path, no_edgetpu):
    compiled = _compiled_and_listed(models, tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    backend = create_backend("tflite", threads=1)
    with pytest.raises(BundleError, match="not listed with its sha256"):
        backend.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)
    _compiled_and_listed(models, tmp_path)
    compiled.write_bytes(compiled.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        backend.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)


def test_a_profile_may_allow_the_cpu_explicitly(models, no_edgetpu):
    backend = create_backend("tflite", threads=1, providers=["edgetpu", "cpu"],
                             optional_providers=["edgetpu"])
    session = backend.open(stage_file(models["full"], "tflite-int8-full"), size=32, outputs=3)
    assert session.provider == "XNNPACK"
    assert why_unavailable("tflite", threads=1, providers=["edgetpu", "cpu"],
                           optional_providers=["edgetpu"]) is None


# ------------------------------------------------------------------ runtime detection


def _only_tflite_runtime(name, *args, **kwargs):
    if name == "ai_edge_litert":
        return None
    if name == "tflite_runtime":
        return importlib.util.spec_from_loader("tflite_runtime", loader=None)
    return _REAL_FIND_SPEC(name, *args, **kwargs)


_REAL_FIND_SPEC = importlib.util.find_spec


def test_tflite_runtime_is_refused_under_numpy_2_before_it_is_imported(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _only_tflite_runtime)
    with pytest.raises(BackendUnavailable, match="numpy 1.x and crash under numpy 2"):
        tb.resolve_runtime(numpy_version="2.1.3")
    assert tb.resolve_runtime(numpy_version="1.26.4") == ("tflite_runtime.interpreter",
                                                          "tflite-runtime")
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(BackendUnavailable, match="ai-edge-litert"):
            create_backend("tflite", threads=1)
        reason = why_unavailable("tflite", threads=1)
        assert reason is not None and "numpy 2" in reason


def test_litert_is_preferred_and_absence_of_both_says_what_to_install():
    assert tb.resolve_runtime()[0] == "ai_edge_litert.interpreter"
    with pytest.raises(BackendUnavailable, match=r"semedge\[tflite\]"):
        tb.resolve_runtime(find_spec=lambda name: None)


# ------------------------------------------------------------------ the cascade


def test_rpi4_classifies_a_tflite_bundle_like_the_onnx_one(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", size=32)
    manifest = read_manifest(root)
    # the same functions as the ONNX models: stage 1 40*m - 30, stage 2 bias only
    tflite_model(root / "stage1.int8.tflite", outputs=1, slope=40.0, bias=-30.0)
    tflite_model(root / "stage2.int8.tflite", outputs=6, slope=0.0,
                 bias=[0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    for stage in ("stage1", "stage2"):
        path = root / f"{stage}.int8.tflite"
        manifest["files"][stage]["tflite-int8"] = {"path": path.name, "sha256": sha256(path),
                                                   "format": "tflite-int8"}
    write_manifest(root, manifest)
    rpi4 = replace(load_profile("rpi4"), threads=2, tile=32)
    tfl = edge.load(root, target=rpi4)
    assert tfl.backend == "tflite:XNNPACK:int8"
    ref = edge.load(root, target=replace(cpu_profile, tile=32))
    image = field_image(3, 4, bright=[(1, 2), (2, 0)], size=32)
    a, b = tfl.classify(image), ref.classify(image)
    assert a.label == b.label == "short"
    np.testing.assert_array_equal(a.flagged, b.flagged)
    np.testing.assert_allclose(a.stage1_scores, b.stage1_scores, atol=0.02)
    np.testing.assert_allclose(a.stage2_probs, b.stage2_probs, atol=0.02)
