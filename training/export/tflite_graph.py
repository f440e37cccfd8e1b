"""Inspect a converted ``.tflite`` graph: op counts, float ops, I/O types; refuse graphs
that would not run integer-only.

Rules (:func:`check_graph`):

* every format: no custom or Flex (SELECT_TF_OPS) op; every op between the input
  QUANTIZE and the output DEQUANTIZE computes on integer tensors (a float op in the body
  means part of the model stayed fp32);
* ``tflite-int8-full``: int8/uint8 input and output, no float tensor anywhere (so no
  QUANTIZE/DEQUANTIZE to or from float), and no TRANSPOSE (the Edge TPU compiler leaves a TRANSPOSE, and usually
  everything after it, on the CPU).

Needs ``ai_edge_litert`` (or ``tflite_runtime``) in the main environment.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["GraphReport", "TFLiteGraphError", "check_graph", "inspect_tflite"]

FORMATS = ("tflite-int8", "tflite-int8-full")
_INT = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.int32),
        np.dtype(np.int64))


class TFLiteGraphError(ValueError):
    """A converted graph that breaks the integer-only rules; names the file and ops."""


@dataclass(frozen=True)
class GraphReport:
    """What a ``.tflite`` file holds.

    Attributes
    ----------
    path : str
    op_counts : dict
        Builtin op name → count, most frequent first.
    float_ops : list of str
        ``OP#index`` of ops reading or writing a float tensor, other than the input
        QUANTIZE and output DEQUANTIZE of a float-I/O model.
    custom_ops : list of str
        Custom or Flex ops (must be empty).
    input_dtype, output_dtype : str
    input_quant, output_quant : tuple (scale, zero_point)
    input_shape : list of int
        Shape signature (``-1`` = dynamic batch).
    size_bytes : int
    """

    path: str
    op_counts: dict[str, int]
    float_ops: list[str]
    custom_ops: list[str]
    input_dtype: str
    output_dtype: str
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]
    input_shape: list[int]
    size_bytes: int
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (for the manifest and the report)."""
        d = asdict(self)
        d["path"] = Path(self.path).name
        return d


def _interpreter(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ImportError("inspecting .tflite files needs ai-edge-litert: pip install "
                              "'semedge[tflite]'") from None
    return Interpreter(model_path=path)


def inspect_tflite(path: str | os.PathLike) -> GraphReport:
    """Op counts, float/custom ops and I/O types of the model at ``path``."""
    path = os.fspath(path)
    interp = _interpreter(path)
    ops = interp._get_ops_details()  # noqa: SLF001 - the only op-level API the runtime has
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    counts = Counter(op["op_name"] for op in ops)
    float_io = np.dtype(inp["dtype"]) == np.float32
    float_ops, custom = [], []
    for i, op in enumerate(ops):
        name = op["op_name"]
        tag = f"{name}#{op['index']}"
        if name.startswith("Flex") or name in ("CUSTOM", "DELEGATE") or name.islower():
            custom.append(tag)
        edge_op = float_io and ((i == 0 and name == "QUANTIZE")
                                or (i == len(ops) - 1 and name == "DEQUANTIZE"))
        tensors = [t for t in (*op["inputs"], *op["outputs"]) if t >= 0]
        if not edge_op and any(dtypes.get(int(t)) not in _INT for t in tensors):
            float_ops.append(tag)
    return GraphReport(
        path=path,
        op_counts=dict(counts.most_common()),
        float_ops=float_ops,
        custom_ops=custom,
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quant=(float(inp["quantization"][0]), int(inp["quantization"][1])),
        output_quant=(float(out["quantization"][0]), int(out["quantization"][1])),
        input_shape=[int(d) for d in inp.get("shape_signature", inp["shape"])],
        size_bytes=Path(path).stat().st_size,
    )


def check_graph(report: GraphReport, fmt: str) -> GraphReport:
    """Return ``report`` if it satisfies the rules for ``fmt``; else raise
    :class:`TFLiteGraphError` listing every problem and the op counts."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown TFLite format {fmt!r}; use one of {list(FORMATS)}")
    problems = []
    if report.custom_ops:
        problems.append(f"custom/Flex ops {report.custom_ops}")
    if report.float_ops:
        problems.append(f"ops left in float {report.float_ops[:8]}"
                        + (" …" if len(report.float_ops) > 8 else ""))
    if fmt == "tflite-int8":
        if report.input_dtype != "float32" or report.output_dtype != "float32":
            problems.append(f"I/O must be float32, is {report.input_dtype}/"
                            f"{report.output_dtype}")
    else:
        for side, dtype in (("input", report.input_dtype), ("output", report.output_dtype)):
            if dtype not in ("int8", "uint8"):
                problems.append(f"{side} must be int8, is {dtype}")
        if report.op_counts.get("TRANSPOSE"):
            problems.append(f"{report.op_counts['TRANSPOSE']}× TRANSPOSE in the body")
    if problems:
        counts = ", ".join(f"{k} {v}" for k, v in report.op_counts.items())
        raise TFLiteGraphError(f"{report.path}: not a clean {fmt} graph: "
                               + "; ".join(problems) + f" (ops: {counts})")
    return report
