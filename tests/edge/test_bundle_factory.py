"""The test bundles' random networks have the training layouts, so benchmarks cost what
the shipped models cost."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training.models needs torch (the dev extra)")

from bundle_factory import ARCHITECTURES, build_model  # noqa: E402

from training.models import ARCHITECTURES as TRAINING  # noqa: E402


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_factory_layouts_match_the_training_models(name):
    stem, stem_stride, stages = ARCHITECTURES[name]
    arch = TRAINING[name]
    assert (stem, stem_stride, stages) == (arch.stem, arch.stem_stride, arch.stages)


def test_patch_stem_is_an_unpadded_stride_k_conv():
    model = build_model(outputs=1, arch="stage1")
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in first.attribute if a.ints}
    assert attrs["kernel_shape"] == [4, 4]
    assert attrs["strides"] == [4, 4]
    assert attrs["pads"] == [0, 0, 0, 0]
