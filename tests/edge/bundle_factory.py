"""Build small model bundles from randomly initialised ONNX models (test/benchmark only).

The models follow the bundle contract (``docs/bundle.md``) and make the cascade's
behaviour controllable: every logit is ``slope * mean(tile) + bias`` plus, optionally, a
small contribution of a random conv stack (which adds realistic compute without
changing the answers). With the default stage 1, a tile is flagged exactly when its
normalized mean brightness is above ``center`` (0.75): bright tiles are "defective".

Uses ``onnx`` (a dev/test dependency); the runtime never imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.classes import CLASSES

OPSET = 17

ARCHITECTURES: dict[str, tuple[int, int, tuple[tuple[int, int, int], ...]]] = {
    "stage1": (16, 4, ((24, 0, 2), (32, 1, 2), (48, 1, 2), (64, 1, 1))),
    "stage2": (24, 2, ((32, 0, 2), (64, 1, 2), (128, 2, 2), (192, 2, 2))),
}
"""``stem channels, stem kernel (= stride; 4: a patch stem, 2: a padded 3×3 conv),
((channels, residual blocks, stride), ...)`` — the layouts of ``training/models.py``
(TileNet, BatchNorm folded; ``test_factory_layouts_match_the_training_models``), so
benchmark costs are realistic."""


class _Graph:
    """A tiny helper to append conv layers with random He-initialised weights."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1,
             groups: int = 1, relu: bool = True, pad: int | None = None) -> str:
        w, b, y = self.name("w"), self.name("b"), self.name("conv")
        fan_in = cin // groups * k * k
        weight = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k))
        self.inits += [numpy_helper.from_array(weight.astype(np.float32), w),
                       numpy_helper.from_array(np.zeros(cout, np.float32), b)]
        self.nodes.append(helper.make_node(
            "Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride],
            pads=[k // 2 if pad is None else pad] * 4, group=groups, name=y))
        if not relu:
            return y
        r = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [y], [r]))
        return r

    def tilenet(self, x: str, arch: str) -> tuple[str, int]:
        """Stem, stages of downsample + residual blocks, avg+max pooling → ``[N, 2C]``."""
        stem, stem_stride, stages = ARCHITECTURES[arch]
        if stem_stride == 2:
            h = self.conv(x, 1, stem, 3, 2)
        else:
            h = self.conv(x, 1, stem, stem_stride, stem_stride, pad=0)
        cin = stem
        for i, (cout, blocks, stride) in enumerate(stages):
            if i == 0:
                h = self.conv(h, cin, cout, 3, stride)
            else:
                h = self.conv(self.conv(h, cin, cin, 3, stride, groups=cin), cin, cout, 1)
            for _ in range(blocks):
                body = self.conv(h, cout, 2 * cout, 1)
                body = self.conv(body, 2 * cout, 2 * cout, 3, groups=2 * cout)
                body = self.conv(body, 2 * cout, cout, 1, relu=False)
                add, out = self.name("add"), self.name("relu")
                self.nodes += [helper.make_node("Add", [h, body], [add]),
                               helper.make_node("Relu", [add], [out])]
                h = out
            cin = cout
        avg, mx, cat, flat = (self.name(p) for p in ("avg", "max", "cat", "flat"))
        self.nodes += [helper.make_node("GlobalAveragePool", [h], [avg]),
                       helper.make_node("GlobalMaxPool", [h], [mx]),
                       helper.make_node("Concat", [avg, mx], [cat], axis=1),
                       helper.make_node("Flatten", [cat], [flat], axis=1)]
        return flat, 2 * cin


def build_model(*, outputs: int, size: int = 224, slope: Sequence[float] | float = 0.0,
                bias: Sequence[float] | float = 0.0, arch: str | None = None,
                conv_scale: float = 1e-3, seed: int = 0) -> onnx.ModelProto:
    """An ``image [N,1,size,size] → logits [N,outputs]`` model.

    ``logits = slope * mean(image) + bias``, plus ``conv_scale ×`` a random linear head
    on a TileNet (``arch``: ``"stage1"`` or ``"stage2"``) when ``arch`` is given.
    """
    rng = np.random.default_rng(seed)
    slope = np.broadcast_to(np.asarray(slope, np.float32), (outputs,)).reshape(1, outputs)
    bias = np.broadcast_to(np.asarray(bias, np.float32), (outputs,)).copy()
    g = _Graph(rng)
    g.inits += [numpy_helper.from_array(slope.copy(), "slope"),
                numpy_helper.from_array(bias, "bias")]
    g.nodes += [
        helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["mean"], axis=1),
        helper.make_node("Gemm", ["mean", "slope", "bias"], ["bright"]),
    ]
    if arch:
        feat, width = g.tilenet("image", arch)
        head = (rng.normal(0, 1, (width, outputs)) * conv_scale).astype(np.float32)
        g.inits += [numpy_helper.from_array(head, "head"),
                    numpy_helper.from_array(np.zeros(outputs, np.float32), "head_b")]
        g.nodes += [
            helper.make_node("Gemm", [feat, "head", "head_b"], ["noise"]),
            helper.make_node("Add", ["bright", "noise"], ["logits"]),
        ]
    else:
        g.nodes.append(helper.make_node("Identity", ["bright"], ["logits"]))
    graph = helper.make_graph(
        g.nodes, "semedge_test",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="semedge-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def quantize(src: Path, dst: Path, size: int, seed: int = 0, *, float_stem: bool = True) -> None:
    """Static QDQ int8 copy of ``src`` (calibrated on random tiles of varied brightness).

    ``float_stem`` keeps the first conv (1 input channel, full resolution) in fp32:
    onnxruntime's int8 kernel for it is slower than fp32 and dominates a light stage 1.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(seed)
            self.items = iter([
                {"image": np.clip(rng.normal(m, 0.2, (2, 1, size, size)), 0, 1)
                 .astype(np.float32)} for m in np.linspace(0.0, 1.0, 6)
            ])

        def get_next(self):
            return next(self.items, None)

    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    exclude = convs[:1] if float_stem else []
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_bundle(
    root: Path,
    *,
    size: int = 224,
    formats: Sequence[str] = ("onnx",),
    stage1_slope: float = 40.0,
    stage1_center: float = 0.75,
    stage2_slope: Sequence[float] | float = 0.0,
    stage2_bias: Sequence[float] = (0.0, 0.0, 3.0, 0.0, 0.0, 0.0),
    threshold: float = 0.5,
    temperature: float = 1.0,
    unknown_threshold: float = 0.5,
    realistic: bool = False,
    monolithic: bool = False,
    model_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a complete bundle to ``root`` and return ``root``.

    The default stage 2 answers ``short`` with probability ~0.80 for every tile; seven
    ``stage2_bias`` values give it the other output (``stage2.other_output``).
    ``realistic`` adds TileNet bodies of the training layouts (stage 1 light, stage 2 and
    monolithic heavier) that cost real compute without changing the answers.
    ``model_size`` builds models for another input size than the manifest says (to
    test refusal).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    msize = model_size or size
    models = {
        "stage1": build_model(outputs=1, size=msize, slope=stage1_slope,
                              bias=-stage1_slope * stage1_center, arch="stage1" if realistic else None, seed=seed),
        "stage2": build_model(outputs=len(stage2_bias), size=msize, slope=stage2_slope,
                              bias=stage2_bias,
                              arch="stage2" if realistic else None, seed=seed + 1),
    }
    if monolithic:
        models["monolithic"] = build_model(outputs=7, size=msize, arch="stage2" if realistic else None,
                                           bias=[3.0, 0, 0, 0, 0, 0, 0], seed=seed + 2)
    files: dict[str, dict] = {}
    for stage, model in models.items():
        fp32 = root / f"{stage}.onnx"
        onnx.save(model, fp32)
        files[stage] = {}
        if "onnx" in formats:
            files[stage]["onnx"] = {"path": fp32.name, "sha256": sha256(fp32),
                                    "format": "onnx-fp32"}
        if "onnx-int8" in formats:
            int8 = root / f"{stage}.int8.onnx"
            quantize(fp32, int8, msize, seed)
            files[stage]["onnx-int8"] = {"path": int8.name, "sha256": sha256(int8),
                                         "format": "onnx-int8"}
        if "onnx" not in formats:
            fp32.unlink()
    manifest = {
        "format_version": 1,
        "name": "test",
        "classes": list(CLASSES),
        "input": {"size": size, "channels": 1, "layout": "NCHW", "dtype": "float32"},
        "preprocess": {"low": 1.0, "high": 99.0, "small_image": "upscale"},
        "stage1": {"threshold": threshold, "target_recall": 0.995},
        "stage2": {"temperature": temperature, "unknown_threshold": unknown_threshold,
                   **({"other_output": True} if len(stage2_bias) == 7 else {})},
        "files": files,
        "metrics": {fmt: {"note": "random test model"} for fmt in formats},
        "provenance": {"command": "tests/edge/bundle_factory.py", "seed": seed},
    }
    write_manifest(root, manifest)
    return root


def read_manifest(root: Path) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())


def write_manifest(root: Path, manifest: dict) -> None:
    (Path(root) / "manifest.json").write_text(json.dumps(manifest, indent=2))


def field_image(rows: int, cols: int, bright: Sequence[tuple[int, int]] = (), *,
                size: int = 224, dtype: type = np.uint8, seed: int = 0,
                shape: tuple[int, int] | None = None) -> np.ndarray:
    """A noisy dark field of ``rows × cols`` tiles with the listed ``(row, col)`` tiles
    bright (flagged by the default stage 1). ``shape`` crops/extends the field."""
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    h, w = shape or (rows * size, cols * size)
    image = rng.integers(0, top * 100 // 255, (h, w), endpoint=True).astype(dtype)
    for r, c in bright:
        image[r * size:(r + 1) * size, c * size:(c + 1) * size] = top
    return image
