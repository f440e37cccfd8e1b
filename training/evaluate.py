"""Evaluation of a bundle's models in every format on one held-out set.

``evaluate_outputs`` is pure numpy: it takes the logits of the three models (stage 1,
stage 2, monolithic) for the same tiles and the bundle's thresholds, and returns the
metrics the report and the manifest carry. ``predict_onnx`` runs an ONNX file with ONNX
Runtime on CPU.

Label conventions: ``labels`` index ``CLASSES`` (0 = normal), ``-2`` = defective of
no given class (stage-1 metrics only), ``-1`` = out-of-taxonomy
defect (``other_defect``): defective for stage 1; counted right by the cascade only when
it answers ``unknown``; excluded from stage-2 and monolithic class metrics.
"""

from __future__ import annotations

import os
import time

import numpy as np

from edge import metrics
from edge.classes import CLASSES, DEFECT_CLASSES, UNKNOWN
from edge.visibility import recall_by_band
from training.calibration import expected_calibration_error, softmax

__all__ = ["DEFECT_RATES", "cost_per_tile", "evaluate_outputs", "confusion",
           "predict_onnx", "stage2_answers", "time_onnx"]

DEFECT_RATES = (0.02, 0.10, 0.50)
"""Defect rates at which the cascade is compared with the monolithic model."""


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def confusion(true: np.ndarray, pred: np.ndarray, n_true: int, n_pred: int) -> np.ndarray:
    """``(n_true, n_pred)`` count matrix."""
    m = np.zeros((n_true, n_pred), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def _macro_f1(counts: np.ndarray) -> float:
    """``edge.metrics.macro_f1`` of a ``(K, M)`` count matrix, ``M >= K``: columns past
    ``K`` (unknown) are wrong answers, never a class of their own."""
    k, m = counts.shape
    square = np.zeros((m, m), np.int64)
    square[:k] = counts
    return metrics.macro_f1(square)


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def stage2_answers(logits: np.ndarray, temperature: float, unknown_threshold: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2 as the runtime reads it (``edge.results.stage2_decision``): the six
    classes' calibrated probabilities ``(N, 6)`` (a row sums to less than 1 when the
    logits carry the other output), the best class 0–5, and whether the answer is
    ``unknown``."""
    from edge.results import stage2_decision

    six = softmax(logits, temperature)[:, :len(DEFECT_CLASSES)]
    pred, _, unknown = stage2_decision(six, unknown_threshold)
    return six, pred, unknown


def evaluate_outputs(outputs: dict[str, np.ndarray], labels: np.ndarray, *,
                     threshold: float, temperature: float, unknown_threshold: float,
                     reference: dict[str, np.ndarray] | None = None,
                     visibility: np.ndarray | None = None) -> dict:
    """Metrics of one format on one set.

    Parameters
    ----------
    outputs : dict
        ``stage1`` (N, 1), ``stage2`` (N, 6; 7 with the other output) and optionally
        ``monolithic`` (N, 7) logits;
        without ``stage2`` (a stage-1-only bundle) the cascade answers ``normal`` or
        defective and ``stage2`` is left out.
    labels : (N,) int array
    threshold, temperature, unknown_threshold : float
        The bundle's stage-1 threshold (on sigmoid scores) and stage-2 calibration.
    reference : dict, optional
        The PyTorch fp32 outputs on the same tiles: adds ``agreement``.
    visibility : (N,) float array, optional
        Each tile's defect visibility ``k`` (NaN: unrated): adds stage-1
        ``recall_by_visibility`` (``edge.visibility``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    s1 = sigmoid(outputs["stage1"][:, 0])
    flagged = s1 >= threshold
    defective = labels != 0
    normal = labels == 0
    n_def, n_norm = int(defective.sum()), int(normal.sum())
    tp = int((flagged & defective).sum())
    fp = int((flagged & normal).sum())
    res: dict = {"tiles": int(len(labels)),
                 "counts": {name: int((labels == i).sum()) for i, name in enumerate(CLASSES)}}
    for code, name in ((-1, "other_defect"), (-2, "defective")):
        if (labels == code).any():
            res["counts"][name] = int((labels == code).sum())
    half = s1 >= 0.5
    res["stage1"] = {
        "recall": _safe_div(tp, n_def),
        "defects": n_def,
        "accuracy": _safe_div(int((flagged == defective).sum()), n_def + n_norm),
        "accuracy_at_0.5": _safe_div(int((half == defective).sum()), n_def + n_norm),
        "recall_at_0.5": _safe_div(int((half & defective).sum()), n_def),
        "precision": _safe_div(tp, tp + fp),
        "specificity": _safe_div(n_norm - fp, n_norm),
        "flag_rate": float(flagged.mean()) if len(labels) else float("nan"),
        "recall_per_class": {},
    }
    for i, name in [*list(enumerate(CLASSES))[1:], (-1, "other_defect"), (-2, "defective")]:
        if (labels == i).any():
            res["stage1"]["recall_per_class"][name] = float(flagged[labels == i].mean())
    if visibility is not None:
        res["stage1"]["recall_by_visibility"] = recall_by_band(defective, flagged, visibility)
    if "stage2" not in outputs:
        return _binary_cascade(res, outputs, labels, flagged, threshold, reference)

    p2, pred2, unknown2 = stage2_answers(outputs["stage2"], temperature, unknown_threshold)
    intax = labels > 0
    true2 = labels[intax] - 1
    conf2 = confusion(true2, pred2[intax], len(DEFECT_CLASSES), len(DEFECT_CLASSES))
    res["stage2"] = {
        "tiles": int(intax.sum()),
        "macro_f1": _macro_f1(conf2),
        "accuracy": _safe_div(int((pred2[intax] == true2).sum()), int(intax.sum())),
        "ece_before": expected_calibration_error(
            softmax(outputs["stage2"][intax])[:, :len(DEFECT_CLASSES)], true2),
        "ece": expected_calibration_error(p2[intax], true2),
        "unknown_rate": _safe_div(int(unknown2[intax].sum()), int(intax.sum())),
        "confusion": conf2.tolist(),
    }
    if (labels == -1).any():
        res["stage2"]["unknown_rate_other_defect"] = float(unknown2[labels == -1].mean())

    # the cascade: 0 normal, 1..6 defect classes, 7 unknown
    cascade = np.where(flagged, np.where(unknown2, 7, pred2 + 1), 0)
    known = labels >= 0
    conf_cascade = confusion(labels[known], cascade[known], len(CLASSES), len(CLASSES) + 1)
    correct = np.where(labels >= 0, cascade == labels, cascade == 7)
    res["cascade"] = {
        "accuracy": float(correct[known].mean()) if known.any() else float("nan"),
        "accuracy_normal": float(correct[normal].mean()) if n_norm else float("nan"),
        "accuracy_defect": float(correct[labels > 0].mean()) if (labels > 0).any()
        else float("nan"),
        "macro_f1": _macro_f1(conf_cascade),
        "confusion": conf_cascade.tolist(),
        "confusion_columns": [*CLASSES, UNKNOWN],
    }
    if (labels == -1).any():
        res["cascade"]["other_defect_flagged"] = float(flagged[labels == -1].mean())
        res["cascade"]["other_defect_unknown"] = float((cascade[labels == -1] == 7).mean())

    if "monolithic" in outputs:
        pm = outputs["monolithic"]
        predm = pm.argmax(axis=1)
        flagged_m = predm != 0
        conf_m = confusion(labels[known], predm[known], len(CLASSES), len(CLASSES))
        res["monolithic"] = {
            "accuracy": float((predm[known] == labels[known]).mean()) if known.any()
            else float("nan"),
            "accuracy_normal": float((predm[normal] == 0).mean()) if n_norm else float("nan"),
            "accuracy_defect": float((predm[labels > 0] == labels[labels > 0]).mean())
            if (labels > 0).any() else float("nan"),
            "macro_f1": _macro_f1(conf_m),
            "recall": _safe_div(int((flagged_m & defective).sum()), n_def),
            "specificity": _safe_div(int((~flagged_m & normal).sum()), n_norm),
            "confusion": conf_m.tolist(),
        }

    if reference is not None:
        r1 = sigmoid(reference["stage1"][:, 0]) >= threshold
        _, rpred2, runknown2 = stage2_answers(reference["stage2"], temperature,
                                              unknown_threshold)
        rcascade = np.where(r1, np.where(runknown2, 7, rpred2 + 1), 0)
        agree = {
            "stage1": float((r1 == flagged).mean()),
            "stage2": float((rpred2 == pred2).mean()),
            # the tiles stage 2's metrics are on (the six classes): on a normal tile its
            # six-way argmax has no right answer and near-ties flip under quantization
            "stage2_defect_tiles": float((rpred2 == pred2)[intax].mean())
            if intax.any() else float("nan"),
            "stage2_defect_tiles_changed": int((rpred2 != pred2)[intax].sum()),
            "cascade": float((rcascade == cascade).mean()),
            "stage1_max_abs_logit_diff": float(np.abs(reference["stage1"]
                                                      - outputs["stage1"]).max()),
            "stage2_max_abs_logit_diff": float(np.abs(reference["stage2"]
                                                      - outputs["stage2"]).max()),
        }
        if "monolithic" in outputs and "monolithic" in reference:
            agree["monolithic"] = float((reference["monolithic"].argmax(1)
                                         == outputs["monolithic"].argmax(1)).mean())
        res["agreement"] = agree
    return res


def _binary_cascade(res: dict, outputs: dict[str, np.ndarray], labels: np.ndarray,
                    flagged: np.ndarray, threshold: float,
                    reference: dict[str, np.ndarray] | None) -> dict:
    """A stage-1-only cascade: right when flagged equals defective (any label but 0)."""
    defective, normal = labels != 0, labels == 0
    correct = flagged == defective
    res["cascade"] = {
        "binary": True,
        "accuracy": float(correct.mean()) if len(labels) else float("nan"),
        "accuracy_normal": float(correct[normal].mean()) if normal.any() else float("nan"),
        "accuracy_defect": float(correct[defective].mean()) if defective.any()
        else float("nan"),
    }
    if reference is not None:
        r1 = sigmoid(reference["stage1"][:, 0]) >= threshold
        agree = float((r1 == flagged).mean())
        res["agreement"] = {"stage1": agree, "cascade": agree,
                            "stage1_max_abs_logit_diff": float(np.abs(
                                reference["stage1"] - outputs["stage1"]).max())}
    return res


def cost_per_tile(stage1_cost: float, stage2_cost: float, recall: float, specificity: float,
                  rate: float) -> float:
    """Expected cascade cost per tile: ``c1 + P(flag) * c2`` at a defect ``rate``."""
    flag = rate * recall + (1.0 - rate) * (1.0 - specificity)
    return float(stage1_cost + flag * stage2_cost)


def cascade_vs_monolithic(metrics: dict, costs: dict[str, dict[str, float]]) -> dict:
    """Accuracy and cost per tile of the cascade and the monolithic model at
    :data:`DEFECT_RATES` (class-conditional accuracies reweighted to each rate)."""
    out = {}
    c, m, s1 = metrics["cascade"], metrics.get("monolithic"), metrics["stage1"]
    for rate in DEFECT_RATES:
        row: dict = {"cascade": {}, "monolithic": {}}
        row["cascade"]["accuracy"] = ((1 - rate) * c["accuracy_normal"]
                                      + rate * c["accuracy_defect"])
        for unit, per in costs.items():
            row["cascade"][f"cost_{unit}"] = cost_per_tile(
                per["stage1"], per["stage2"], s1["recall"], s1["specificity"], rate)
        if m is not None:
            row["monolithic"]["accuracy"] = ((1 - rate) * m["accuracy_normal"]
                                             + rate * m["accuracy_defect"])
            for unit, per in costs.items():
                row["monolithic"][f"cost_{unit}"] = float(per["monolithic"])
        out[f"{rate:.2f}"] = row
    return out


def _session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def predict_onnx(path, x: np.ndarray, *, batch_size: int = 64, threads: int = 2) -> np.ndarray:
    """Logits of the ONNX model at ``path`` for tiles ``x`` (ONNX Runtime, CPU)."""
    sess = _session(path, threads)
    outs = []
    for i in range(0, len(x), batch_size):
        xb = np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)
        outs.append(sess.run(["logits"], {"image": xb})[0])
    return np.concatenate(outs) if outs else np.zeros((0, 1), dtype=np.float32)


def time_onnx(path, size: int, *, batch_size: int = 16, threads: int = 2,
              min_seconds: float = 1.0) -> float:
    """Median milliseconds per tile of the ONNX model (warm-up, then ≥ ``min_seconds``)."""
    sess = _session(path, threads)
    x = np.random.default_rng(0).random((batch_size, 1, size, size), dtype=np.float32)
    for _ in range(2):
        sess.run(["logits"], {"image": x})
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 5:
        t = time.perf_counter()
        sess.run(["logits"], {"image": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0 / batch_size)
