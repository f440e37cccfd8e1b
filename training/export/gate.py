"""The int8 drift gate: export fails if int8 loses more than the budget against fp32."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DriftBudget", "ExportRefused", "changed_answers", "check_drift"]


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
    # ...and stage 2 likewise: macro-F1 over ~75 defects moves by 1-3 points for one
    # changed answer, so int8 may change up to this many of the set's defect answers
    # (against fp32) whatever macro-F1 does.
    stage2_answer_images: int = 2


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
    more. Stage-2 macro-F1 may drop by ``budget.stage2_macro_f1``, or by any amount when
    int8 answers at most ``budget.stage2_answer_images`` of the set's defects otherwise
    than fp32 (:func:`changed_answers`; needs ``int8["agreement"]``).

    Returns the per-metric ``{"fp32", "int8", "drop", "budget"}`` (stage 2 also
    ``changed_answers`` and ``changed_answers_budget`` when counted); raises
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
    changed = changed_answers(int8)
    drops: dict[str, dict[str, float]] = {}
    failed = []
    for key, (ref, got, allowed) in checks.items():
        if math.isnan(float(ref)) and math.isnan(float(got)):
            continue  # the set has no tiles for this metric
        entry = {"fp32": float(ref), "int8": float(got), "drop": float(ref) - float(got),
                 "budget": float(allowed)}
        if key == "stage2_macro_f1" and changed is not None:
            entry["changed_answers"] = changed
            entry["changed_answers_budget"] = budget.stage2_answer_images
        drops[key] = entry
        if not _within(entry):
            failed.append(_refusal(key, entry))
    if failed:
        raise ExportRefused(f"export refused: {name} drifts from fp32: " + "; ".join(failed),
                            drops)
    return drops


def _within(entry: dict) -> bool:
    """A metric's drop within its budget, or (stage 2) few enough changed answers."""
    drop = entry["drop"]
    if math.isnan(drop):
        return False
    few = entry.get("changed_answers", math.inf) <= entry.get("changed_answers_budget", -1)
    return drop <= entry["budget"] + ROUNDING or few


def _refusal(key: str, entry: dict) -> str:
    """One metric's line of the refusal message."""
    line = (f"{key} {entry['fp32']:.4f} → {entry['int8']:.4f} (drop "
            f"{entry['drop'] * 100:.2f} points, budget {entry['budget'] * 100:.2f}")
    if "changed_answers" in entry:
        line += (f"; {entry['changed_answers']} defect answers changed, "
                 f"{entry['changed_answers_budget']} allowed")
    return line + ")"


def changed_answers(metrics: dict) -> int | None:
    """How many of a set's taxonomy-defect tiles stage 2 answers otherwise than the fp32
    reference (``evaluate_outputs``' ``agreement``); ``None`` when there is no count or
    no such tile."""
    changed = metrics.get("agreement", {}).get("stage2_defect_tiles_changed")
    if changed is None or not metrics.get("stage2", {}).get("tiles"):
        return None
    return int(changed)
