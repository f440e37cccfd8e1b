"""PyTorch → ONNX fp32: BatchNorm folded, opset 17, NCHW, input ``image``, output
``logits``, dynamic batch."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "export_onnx"]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model, path: str | os.PathLike, *, size: int = 224, opset: int = OPSET) -> Path:
    """Write ``model`` as an ONNX fp32 file and check it; returns the path.

    The model is copied and its BatchNorms folded first (``training.models.
    fuse_batchnorm``), so the graph holds Conv/Relu/Add/pooling/Gemm only. Uses the
    TorchScript exporter (``dynamo=False``), which gives a plain NCHW graph.
    """
    import onnx
    import torch

    from training.models import fuse_batchnorm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fused = fuse_batchnorm(copy.deepcopy(model).float().eval())
    dummy = torch.zeros(2, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fused, (dummy,), os.fspath(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            do_constant_folding=True,
        )
    graph = onnx.load(os.fspath(path))
    onnx.checker.check_model(graph)
    ops = {n.op_type for n in graph.graph.node}
    stray = ops & {"BatchNormalization", "Transpose", "HardSwish", "HardSigmoid"}
    if stray:
        raise RuntimeError(f"{path}: exported graph holds {sorted(stray)}; the models are "
                           "meant to export as Conv/Relu/Add only")
    return path
