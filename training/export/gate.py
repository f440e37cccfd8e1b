"""The int8 drift gate: export fails if int8 loses more than the budget against fp32."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DriftBudget", "ExportRefused", "check_drift"]


@dataclass(frozen=True)
class DriftBudget:
    """Largest allowed loss of int8 against fp32, in absolute fractions."""

    stage1_recall: float = 0.005  # 0.5 point
    stage2_macro_f1: float = 0.01  # 1 point
    # ...but never fewer than this many defects: on a gate set of n defects one image is
    # 1/n of recall, so below 400 defects 0.5 point would refuse a single flipped image.
    # int8 rounding moves the few scores that sit on the threshold, both ways: on folds of
    # ~120 real crops fp32 and int8 differed by 1-2 defects, gained as often as lost.
    stage1_recall_images: int = 2


ROUNDING = 1e-9
"""Slack on every comparison: a drop of exactly the budget (two of 120 defects, 0.5 point
of 1,400) computed as a difference of two rates can exceed it in the last bit."""


class ExportRefused(RuntimeError):
    """int8 drifted beyond the budget; ``drops`` holds the numbers."""

    def __init__(self, message: str, drops: dict[str, dict[str, float]]) -> None:
        super().__init__(message)
        self.drops = drops


def check_drift(fp32: dict, int8: dict, budget: DriftBudget = DriftBudget(), *,
                name: str = "onnx-int8") -> dict[str, dict[str, float]]:
    """Compare evaluation metrics (``training.evaluate.evaluate_outputs`` dicts).

    Stage-1 recall may drop by ``budget.stage1_recall`` or by
    ``budget.stage1_recall_images`` defects of the set (``stage1.defects``), whichever is
    more.

    Returns the per-metric ``{"fp32", "int8", "drop", "budget"}``; raises
    :class:`ExportRefused` naming every metric over budget.
    """
    defects = fp32["stage1"].get("defects")
    recall_budget = budget.stage1_recall
    if defects:
        recall_budget = max(recall_budget, budget.stage1_recall_images / defects)
    checks = {
        "stage1_recall": (fp32["stage1"]["recall"], int8["stage1"]["recall"], recall_budget),
    }
    if "stage2" in fp32:  # a stage-1-only bundle has none
        checks["stage2_macro_f1"] = (fp32["stage2"]["macro_f1"], int8["stage2"]["macro_f1"],
                                     budget.stage2_macro_f1)
    drops: dict[str, dict[str, float]] = {}
    failed = []
    for key, (ref, got, allowed) in checks.items():
        if math.isnan(float(ref)) and math.isnan(float(got)):
            continue  # the set has no tiles for this metric
        drop = float(ref) - float(got)
        drops[key] = {"fp32": float(ref), "int8": float(got), "drop": drop,
                      "budget": float(allowed)}
        if not drop <= allowed + ROUNDING:  # also catches NaN
            failed.append(f"{key} {ref:.4f} → {got:.4f} (drop {drop * 100:.2f} points, "
                          f"budget {allowed * 100:.2f})")
    if failed:
        raise ExportRefused(f"export refused: {name} drifts from fp32: " + "; ".join(failed),
                            drops)
    return drops
