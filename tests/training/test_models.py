"""The three architectures: budgets, shapes, int8-friendly export."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from training.evaluate import predict_onnx  # noqa: E402
from training.export.onnx import export_onnx  # noqa: E402
from training.export.quantize import quantize_int8  # noqa: E402
from training.models import (  # noqa: E402
    ARCHITECTURES,
    build_model,
    count_macs,
    count_parameters,
    fuse_batchnorm,
)
from training.train_loop import predict_logits  # noqa: E402


@pytest.mark.parametrize(("name", "budget", "outputs"),
                         [("stage1", 100_000, 1), ("stage2", 1_500_000, 6),
                          ("monolithic", 1_500_000, 7)])
def test_parameter_budgets_and_output_shapes(name, budget, outputs):
    model = build_model(name).eval()
    assert count_parameters(model) <= budget
    assert model(torch.zeros(3, 1, 224, 224)).shape == (3, outputs)


def test_monolithic_has_stage2_size():
    assert ARCHITECTURES["monolithic"].stages == ARCHITECTURES["stage2"].stages
    s2, mono = build_model("stage2"), build_model("monolithic")
    assert abs(count_parameters(s2) - count_parameters(mono)) < 1000
    assert count_macs(build_model("stage1")) < count_macs(s2) / 3


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def test_batchnorm_folding_keeps_the_outputs():
    model = _randomize_bn(build_model("stage1"))
    x = torch.rand(4, 1, 224, 224)
    with torch.no_grad():
        want = model(x)
        got = fuse_batchnorm(model)(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_onnx_export_matches_pytorch_and_quantizes_to_qdq(tmp_path, name):
    model = _randomize_bn(build_model(name))
    x = np.random.default_rng(0).random((6, 1, 224, 224), dtype=np.float32)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    ops = Counter(n.op_type for n in graph.graph.node)
    assert not {"BatchNormalization", "Transpose", "Identity", "HardSwish"} & set(ops)
    np.testing.assert_allclose(predict_onnx(path, x), predict_logits(model, x), atol=1e-4)
    # dynamic batch
    assert predict_onnx(path, x[:1]).shape == (1, model.arch.outputs)

    int8 = quantize_int8(path, tmp_path / f"{name}.int8.onnx", x)
    q = onnx.load(str(int8))
    qops = Counter(n.op_type for n in q.graph.node)
    assert qops["QuantizeLinear"] > 0 and qops["DequantizeLinear"] > 0
    # uint8 activations: every QuantizeLinear's zero point is uint8
    inits = {i.name: i for i in q.graph.initializer}
    zps = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear"
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.data_type == onnx.TensorProto.UINT8 for z in zps)
    assert predict_onnx(int8, x).shape == (6, model.arch.outputs)


def test_stage1_aux_head_trains_but_is_not_exported(tmp_path):
    from training.train_loop import FitConfig, fit

    model = build_model("stage1")
    assert model.aux is not None and model.aux.out_features == 8
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 64, 64, generator=g).numpy()
    labels = np.arange(32) % 8
    aux_before = model.aux.weight.detach().clone()
    fit(model, x, (labels != 0).astype(np.float32), np.ones(32), binary=True,
        config=FitConfig(epochs=1, samples_per_epoch=32, batch_size=16),
        aux_targets=labels)
    assert not torch.equal(model.aux.weight, aux_before)  # its gradient reached it
    path = export_onnx(model, tmp_path / "s1.onnx", size=64)
    graph = onnx.load(str(path)).graph
    assert len(graph.output) == 1
    shapes = [list(t.dims) for t in graph.initializer]
    assert [1, 128] in shapes and [8, 128] not in shapes  # the head, not the aux head
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) - 8 * 129 - 65


def test_no_aux_targets_leaves_the_aux_head_alone():
    from training.train_loop import FitConfig, fit

    model = build_model("stage1")
    aux_before = model.aux.weight.detach().clone()
    x = torch.rand(16, 1, 64, 64).numpy()
    fit(model, x, (np.arange(16) % 2).astype(np.float32), np.ones(16), binary=True,
        config=FitConfig(epochs=1, samples_per_epoch=16, batch_size=16))
    assert torch.equal(model.aux.weight, aux_before)


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_int8_patch_stem_becomes_space_to_depth_with_the_same_int8_result(tmp_path, name):
    """stage 1's 4×4 stride-4 stem is rewritten (SpaceToDepth + 1×1 conv) and gives the
    un-rewritten int8 model's outputs bit for bit; stage 2's 3×3 stride-2 stem is left."""
    model = _randomize_bn(build_model(name))
    x = np.random.default_rng(1).random((8, 1, 224, 224), dtype=np.float32)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    plain = quantize_int8(path, tmp_path / "plain.int8.onnx", x, space_to_depth_stem=False)
    fast = quantize_int8(path, tmp_path / "fast.int8.onnx", x)
    ops = Counter(n.op_type for n in onnx.load(str(fast)).graph.node)
    kernels = [tuple(a.ints) for n in onnx.load(str(fast)).graph.node if n.op_type == "Conv"
               for a in n.attribute if a.name == "kernel_shape"]
    if name == "stage1":
        assert ops["SpaceToDepth"] == 1 and (4, 4) not in kernels
    else:
        assert ops["SpaceToDepth"] == 0 and fast.read_bytes() == plain.read_bytes()
    y = np.random.default_rng(2).random((5, 1, 224, 224), dtype=np.float32)
    np.testing.assert_array_equal(predict_onnx(fast, y), predict_onnx(plain, y))
