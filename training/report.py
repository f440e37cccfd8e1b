"""The evaluation report: ``report/metrics.json`` plus confusion-matrix PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from edge.classes import CLASSES, DEFECT_CLASSES, UNKNOWN
from edge.jsonsafe import json_safe

__all__ = ["plot_confusion", "plot_stage1_tradeoff", "write_report", "summary_lines"]


def plot_confusion(matrix, rows, cols, title: str, path: Path) -> Path:
    """A labelled confusion matrix (counts, row-normalised colours) as PNG."""
    import matplotlib

    matrix = np.asarray(matrix, dtype=np.float64)
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 1.0 + 0.7 * len(rows)), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_stage1_tradeoff(scores: np.ndarray, defective: np.ndarray, choice, path: Path
                         ) -> Path:
    """Stage 1 on the validation split as PNG: recall and specificity against the
    threshold, the chosen threshold, the target recall and its lower confidence bound."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    scores, defective = np.asarray(scores, np.float64), np.asarray(defective, bool)
    grid = np.unique(np.r_[0.0, scores, 1.0])
    recall = [(scores[defective] >= t).mean() if defective.any() else np.nan for t in grid]
    spec = [(scores[~defective] < t).mean() if (~defective).any() else np.nan for t in grid]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.plot(grid, recall, color="tab:red", label=f"recall ({int(defective.sum())} defects)")
    ax.plot(grid, spec, color="tab:green",
            label=f"specificity ({int((~defective).sum())} normal)")
    ax.axvline(choice.threshold, color="k", ls="--", lw=1,
               label=f"threshold {choice.threshold:.3g}")
    ax.axhline(choice.target_recall, color="tab:red", ls=":", lw=1,
               label=f"target recall {choice.target_recall:g}")
    ax.set_xlabel("stage-1 threshold (score ≥ threshold is flagged)")
    ax.set_ylabel("share of the validation tiles")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"validation: recall {choice.recall:.3f} (lower bound {choice.lower_bound:.3f} "
                 f"at {choice.confidence:.0%}), specificity {choice.specificity:.3f}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report_dir: Path, report: dict) -> list[Path]:
    """Write ``metrics.json`` and one PNG per format × set × model confusion matrix."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    written = []
    out = report_dir / "metrics.json"
    out.write_text(json.dumps(json_safe(report), indent=2, sort_keys=False) + "\n",
                   encoding="utf-8")
    written.append(out)
    for set_name, by_format in report.get("evaluation", {}).items():
        for fmt, m in by_format.items():
            stem = f"{set_name}.{fmt}"
            if "stage2" not in m:  # a stage-1-only bundle: no class confusion to draw
                continue
            written.append(plot_confusion(m["stage2"]["confusion"], DEFECT_CLASSES,
                                          DEFECT_CLASSES, f"stage 2 — {set_name} — {fmt}",
                                          report_dir / f"confusion.stage2.{stem}.png"))
            written.append(plot_confusion(m["cascade"]["confusion"], CLASSES,
                                          [*CLASSES, UNKNOWN], f"cascade — {set_name} — {fmt}",
                                          report_dir / f"confusion.cascade.{stem}.png"))
            if "monolithic" in m:
                written.append(plot_confusion(m["monolithic"]["confusion"], CLASSES, CLASSES,
                                              f"monolithic — {set_name} — {fmt}",
                                              report_dir / f"confusion.monolithic.{stem}.png"))
    return written


def _pct(v) -> str:
    return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:6.2f}"


def summary_lines(report: dict) -> list[str]:
    """Human-readable table of the headline numbers (for the CLI)."""
    lines = ["set / format            s1-recall s1-spec s1-prec s2-mF1 casc-acc  ECE  "
             "mono-acc agree(casc)"]
    for set_name, by_format in report.get("evaluation", {}).items():
        for fmt, m in by_format.items():
            mono = m.get("monolithic", {}).get("accuracy")
            agree = m.get("agreement", {}).get("cascade")
            s2 = m.get("stage2", {})
            lines.append(
                f"{(set_name + ' / ' + fmt)[:24]:24s} {_pct(m['stage1']['recall'])}   "
                f"{_pct(m['stage1']['specificity'])}  {_pct(m['stage1']['precision'])} "
                f"{_pct(s2.get('macro_f1'))} {_pct(m['cascade']['accuracy'])}  "
                f"{_pct(s2.get('ece'))} {_pct(mono)}  {_pct(agree)}")
    for set_name, rows in report.get("cascade_vs_monolithic", {}).items():
        for rate, row in rows.items():
            c, mo = row["cascade"], row.get("monolithic", {})
            lines.append(
                f"{set_name} defect rate {float(rate) * 100:4.0f}%: cascade acc "
                f"{_pct(c.get('accuracy'))}% cost {c.get('cost_mmacs', float('nan')):.1f} MMAC "
                f"{c.get('cost_ms', float('nan')):.3f} ms | monolithic acc "
                f"{_pct(mo.get('accuracy'))}% cost {mo.get('cost_mmacs', float('nan')):.1f} "
                f"MMAC {mo.get('cost_ms', float('nan')):.3f} ms")
    return lines
