"""ONNX fp32 → TFLite int8, run INSIDE the TFLite environment (``scripts/setup-tflite``).

Started by ``training.export.tflite.convert_tflite`` as a subprocess::

    <tflite-env>/bin/python -E -s _onnx2tf_worker.py --onnx stage1.onnx \
        --calibration calib.npy --out DIR --name stage1

It imports only the standard library and what the TFLite environment holds (onnx,
onnx2tf, tensorflow, numpy 1.x), never semedge. Steps:

1. Name the nodes ``n<i>_<OpType>`` (onnx2tf refuses torch's ``/features/...`` names)
   and rewrite ``Flatten`` of a ``[N, C, 1, 1]`` tensor (after global pooling) into
   ``Squeeze(axes=[2, 3])``: onnx2tf keeps NCHW element order for Flatten by inserting a
   TRANSPOSE, which the Edge TPU runs on the CPU; a squeeze of 1×1 spatial dims needs none.
2. ``onnx2tf.convert`` → a Keras model with NHWC input ``[N, S, S, 1]``. No ``-oiqt``:
   onnx2tf's own int8 path calibrates on MS-COCO RGB images with ImageNet mean/std when
   no data is given (and aborts for one channel), and it allows SELECT_TF_OPS.
3. Quantize with TensorFlow's converter, calibrated on ``--calibration`` (NHWC float32,
   the edge's preprocessing output, used as is: mean 0, std 1), builtin int8 ops only:
   ``<name>.int8.tflite`` (float I/O, dynamic batch) and ``<name>.int8-full.tflite``
   (int8 I/O, batch fixed at 1 as the Edge TPU compiler requires).

Prints one JSON line (``SEMEDGE_WORKER_RESULT {...}``) with the files, versions and
timings.
"""

from __future__ import annotations

import os
import sys

# Running this file puts its folder (training/export/, which holds onnx.py) first on
# sys.path, where it would shadow the real onnx package: drop it before any import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

RESULT_TAG = "SEMEDGE_WORKER_RESULT"


def squeeze_pooled_flatten(model):
    """Replace ``Flatten(axis=1)`` of ``[N, C, 1, 1]`` tensors by ``Squeeze([2, 3])``.

    Returns the number of nodes rewritten (``model`` is changed in place).
    """
    import numpy as np
    from onnx import helper, numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    graph = inferred.graph
    for vi in [*graph.value_info, *graph.input, *graph.output]:
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                           for d in vi.type.tensor_type.shape.dim]
    rewritten = 0
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        if node.op_type != "Flatten":
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = shapes.get(node.input[0])
        if axis != 1 or not shape or len(shape) != 4 or shape[2:] != [1, 1]:
            continue
        base = node.name or node.output[0]
        axes = f"{base}__semedge_squeeze_axes"
        model.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64),
                                                               axes))
        squeeze = helper.make_node("Squeeze", [node.input[0], axes], list(node.output),
                                   name=f"{base}__semedge_squeeze")
        model.graph.node.remove(node)
        model.graph.node.insert(i, squeeze)
        rewritten += 1
    return rewritten


def sanitize_node_names(model):
    """Name every node ``n<i>_<OpType>``: the TorchScript exporter's ``/features/...``
    names break onnx2tf's saved_model step (OP names must match
    ``^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$``)."""
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}_{node.op_type}"


def _versions():
    from importlib.metadata import version

    out = {}
    for pkg in ("onnx2tf", "tensorflow", "tf-keras", "onnx", "numpy", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = None
    out["python"] = sys.version.split()[0]
    return out


def convert(onnx_path, calibration_path, out_dir, name, input_name="image"):
    """Write ``<name>.int8.tflite`` and ``<name>.int8-full.tflite`` into ``out_dir``."""
    import numpy as np
    import onnx
    import onnx2tf
    import tensorflow as tf

    started = time.perf_counter()
    calib = np.load(calibration_path)
    if calib.dtype != np.float32 or calib.ndim != 4 or calib.shape[-1] != 1:
        raise SystemExit(f"calibration must be float32 NHWC [N, S, S, 1], got "
                         f"{calib.dtype} {calib.shape}")
    model = onnx.load(onnx_path)
    rewrites = squeeze_pooled_flatten(model)
    sanitize_node_names(model)
    work = tempfile.mkdtemp(prefix="semedge-onnx2tf-")
    try:
        src = os.path.join(work, f"{name}.onnx")
        onnx.save(model, src)
        keras_model = onnx2tf.convert(
            input_onnx_file_path=src,
            output_folder_path=os.path.join(work, "tf"),
            copy_onnx_input_output_names_to_tflite=True,
            non_verbose=True,
        )
        t_convert = time.perf_counter() - started
        shape = tuple(keras_model.inputs[0].shape)
        if tuple(shape[1:]) != tuple(calib.shape[1:]):
            raise SystemExit(f"{onnx_path}: converted input is {shape} (NHWC), calibration "
                             f"tiles are {calib.shape[1:]}")

        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        def converter(batch):
            if batch is None:
                conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
            else:
                spec = tf.TensorSpec([batch, *shape[1:]], tf.float32, name=input_name)
                fn = tf.function(lambda x: keras_model(x)).get_concrete_function(spec)
                conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], keras_model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.representative_dataset = representative
            return conv

        files = {}
        conv = converter(None)  # int8 weights/activations, float I/O, dynamic batch
        files["tflite-int8"] = os.path.join(out_dir, f"{name}.int8.tflite")
        with open(files["tflite-int8"], "wb") as fh:
            fh.write(conv.convert())
        t_int8 = time.perf_counter() - started - t_convert
        conv = converter(1)  # full integer, int8 I/O, batch 1 (Edge TPU compiler)
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        files["tflite-int8-full"] = os.path.join(out_dir, f"{name}.int8-full.tflite")
        with open(files["tflite-int8-full"], "wb") as fh:
            fh.write(conv.convert())
        t_full = time.perf_counter() - started - t_convert - t_int8
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"files": files, "flatten_rewrites": rewrites,
            "calibration_tiles": int(len(calib)), "versions": _versions(),
            "seconds": {"onnx2tf": round(t_convert, 2), "int8": round(t_int8, 2),
                        "int8_full": round(t_full, 2)}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", required=True, help="ONNX fp32 model (input 'image')")
    parser.add_argument("--calibration", required=True, help=".npy float32 [N,S,S,1]")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", required=True, help="file stem, e.g. stage1")
    parser.add_argument("--input-name", default="image")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    result = convert(args.onnx, args.calibration, args.out, args.name, args.input_name)
    print(f"{RESULT_TAG} {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
