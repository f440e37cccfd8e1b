"""Training's metrics come from ``edge.metrics``: the macro-F1 written to a bundle's
manifest is the one ``semedge eval`` reports, and equals the count formula training used
before, bit for bit."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from edge import metrics
from edge.classes import CLASSES, DEFECT_CLASSES
from training.evaluate import evaluate_outputs

ROOT = Path(__file__).resolve().parents[2]


def count_formula_macro_f1(true: np.ndarray, pred: np.ndarray, classes: int) -> float:
    """The formula training used: mean over classes present in ``true`` of
    ``2 TP / (2 TP + FP + FN)``; a prediction outside ``[0, classes)`` is a wrong answer."""
    f1s = []
    for c in range(classes):
        tp = int(((pred == c) & (true == c)).sum())
        fp = int(((pred == c) & (true != c)).sum())
        fn = int(((pred != c) & (true == c)).sum())
        if tp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def _outputs(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    labels = rng.integers(-1, len(CLASSES), n)
    labels[rng.random(n) < 0.3] = rng.integers(0, 3)  # unbalanced: some classes rare/absent
    outputs = {"stage1": rng.normal(size=(n, 1)),
               "stage2": rng.normal(size=(n, len(DEFECT_CLASSES))) * rng.uniform(0.2, 3),
               "monolithic": rng.normal(size=(n, len(CLASSES)))}
    return outputs, labels


def _pairs(counts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """A count matrix back to its (true, predicted) pairs."""
    cm = np.asarray(counts)
    rows, cols = np.indices(cm.shape)
    return np.repeat(rows.ravel(), cm.ravel()), np.repeat(cols.ravel(), cm.ravel())


@pytest.mark.parametrize("seed", range(8))
def test_macro_f1_in_training_reports_equals_the_count_formula_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    outputs, labels = _outputs(rng, int(rng.integers(5, 400)))
    threshold, unknown = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.6))
    res = evaluate_outputs(outputs, labels, threshold=threshold, temperature=1.0,
                           unknown_threshold=unknown)
    for part, classes in (("stage2", len(DEFECT_CLASSES)), ("cascade", len(CLASSES)),
                          ("monolithic", len(CLASSES))):
        true, pred = _pairs(res[part]["confusion"])
        expected = count_formula_macro_f1(true, pred, classes)
        got = res[part]["macro_f1"]
        assert got == expected or (np.isnan(got) and np.isnan(expected)), part


@pytest.mark.parametrize("seed", range(8))
def test_edge_macro_f1_equals_the_count_formula_on_random_confusions(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 8))
    true = rng.integers(0, k, int(rng.integers(1, 300)))
    pred = np.where(rng.random(true.size) < 0.6, true, rng.integers(0, k, true.size))
    cm = metrics.confusion_matrix(true, pred, k)
    assert metrics.macro_f1(cm) == count_formula_macro_f1(true, pred, k)


def test_macro_f1_is_defined_once() -> None:
    defs = [f"{p.relative_to(ROOT)}:{node.lineno}"
            for package in ("edge", "training") for p in sorted((ROOT / package).rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.name == "macro_f1"]
    assert [d.split(":")[0] for d in defs] == ["edge/metrics.py"], defs
