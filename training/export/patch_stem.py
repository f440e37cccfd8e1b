"""Rewrite a quantized patch stem as ``SpaceToDepth`` + a 1×1 convolution.

Stage 1 opens with a k×k convolution of stride k on the one-channel image (a patch stem).
In ONNX Runtime int8 that ``QLinearConv`` (one input channel, 16 taps) took about half of
stage 1's time on this machine, more than the rest of the network. The same layer is a
1×1 convolution over ``SpaceToDepth(k)`` of the image: each output pixel's k×k patch
becomes k·k channels, and the kernel's taps become the 1×1 weights in the same order.
The quantized weights and every scale stay as they were, so the rewritten model gives
the same int8 result, bit for bit.

``SpaceToDepth`` runs on the float image, before its ``QuantizeLinear``: ONNX Runtime
implements it for uint8 only in recent releases (1.23 refuses it), and the runtime
supports ``onnxruntime>=1.16``. Only ONNX int8 files get the rewrite; the fp32 graph,
and the TFLite conversion made from it, keep the plain convolution (fp32 ONNX Runtime
was no faster with the rewrite).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rewrite_patch_stems"]


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_patch_conv(node, k: int) -> bool:
    a = _attrs(node)
    return (k > 1 and list(a.get("strides", [1, 1])) == [k, k]
            and list(a.get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]
            and list(a.get("dilations", [1, 1])) == [1, 1] and a.get("group", 1) == 1
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def rewrite_patch_stems(model) -> int:
    """Rewrite, in place, every ``Q(image) → DQ → Conv(k×k, stride k)`` of a QDQ model
    whose ``image`` is a graph input with a height and width divisible by ``k``; returns
    how many were rewritten (0 leaves the model untouched)."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inputs = {i.name: i for i in g.input}
    done = 0
    for conv in [n for n in g.node if n.op_type == "Conv"]:
        dq_x, dq_w = producer.get(conv.input[0]), producer.get(conv.input[1])
        if dq_x is None or dq_w is None or dq_x.op_type != "DequantizeLinear" \
                or dq_w.op_type != "DequantizeLinear" or dq_w.input[0] not in inits:
            continue
        q_x = producer.get(dq_x.input[0])
        if q_x is None or q_x.op_type != "QuantizeLinear" or q_x.input[0] not in inputs:
            continue
        if len(consumers.get(q_x.output[0], [])) != 1 or len(consumers.get(dq_x.output[0], [])) != 1:
            continue
        w = numpy_helper.to_array(inits[dq_w.input[0]])
        if w.ndim != 4 or w.shape[2] != w.shape[3] or not _is_patch_conv(conv, w.shape[2]):
            continue
        k = int(w.shape[2])
        dims = inputs[q_x.input[0]].type.tensor_type.shape.dim
        hw = [d.dim_value if d.HasField("dim_value") else 0 for d in dims][2:]
        if len(hw) != 2 or any(v == 0 or v % k for v in hw):
            continue
        if _attrs(dq_w).get("axis", 1) != 0 and numpy_helper.to_array(
                inits[dq_w.input[1]]).size != 1:
            continue  # per-channel scales must run along the output channels
        # SpaceToDepth (DCR) puts pixel (i, j) of channel c at channel (i·k + j)·C + c
        o, c = w.shape[:2]
        w1 = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(o, k * k * c, 1, 1))
        new_w = numpy_helper.from_array(w1, dq_w.input[0] + "_space_to_depth")
        g.initializer.append(new_w)
        dq_w.input[0] = new_w.name
        s2d_out = q_x.input[0] + f"_space_to_depth{k}"
        s2d = helper.make_node("SpaceToDepth", [q_x.input[0]], [s2d_out], blocksize=k,
                               name=f"{conv.name}_space_to_depth")
        q_x.input[0] = s2d_out
        g.node.insert(list(g.node).index(q_x), s2d)
        del conv.attribute[:]
        conv.attribute.extend([helper.make_attribute("kernel_shape", [1, 1]),
                               helper.make_attribute("strides", [1, 1]),
                               helper.make_attribute("pads", [0, 0, 0, 0])])
        done += 1
    if done:
        used = {i for n in g.node for i in n.input}
        for t in [t for t in g.initializer if t.name not in used]:
            g.initializer.remove(t)
    return done
