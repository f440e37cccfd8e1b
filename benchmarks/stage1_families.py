"""Where a bundle's stage-1 threshold is pinned: separation per pattern family, and the
monolithic model as a normal/defect scorer beside stage 1.

    python benchmarks/stage1_families.py DATA/heldout-default [--bundle DIR] \
        [--check DATA/heldout-default-2]

On a ``semedge synth`` folder (its ``manifest.jsonl`` names each render's pattern
family), with the bundle's int8 ONNX files (one centre tile per image, as training reads
images), prints:

* for each defect class, its ROC AUC against the normals of the same family;
* for each family, the share of its normals at or above the bundle's stage-1 threshold
  and their median score;
* ROC AUC and specificity at 99.5 % / 90 % recall of stage 1 and of the monolithic
  model's ``1 − P(normal)`` over the six classes against ``normal``;
* with ``--check``: a threshold per family, chosen on ``data`` for 99.5 % recall of that
  family's defects, and its recall and specificity on the ``--check`` folder beside the
  bundle's one threshold (a family-aware operating point).

Results of 2026-12-07 are in docs/training-results.md ("Where the threshold is pinned").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_model(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of one ONNX file on ``x``, 64 tiles at a time, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 64]})[0]
                           for i in range(0, len(x), 64)])


def separation(y: np.ndarray, score: np.ndarray) -> str:
    """AUC and specificity at 99.5 / 90 % recall, formatted."""
    from edge.metrics import roc_auc, specificity_at_recall

    return (f"AUC {roc_auc(y, score):.3f}, specificity at 99.5 % recall "
            f"{specificity_at_recall(y, score, 0.995):.3f}, at 90 % "
            f"{specificity_at_recall(y, score, 0.90):.3f}")


def load_renders(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre tiles, labels and families of a synth folder's renders, ``other_defect``
    left out."""
    from training.data import load_tile

    rows = [json.loads(line) for line in open(folder / "manifest.jsonl", encoding="utf-8")]
    rows = [r for r in rows if r["label"] != "other_defect"]
    x = np.stack([load_tile(folder / r["path"]) for r in rows]).astype(np.float32)
    return x, np.array([r["label"] for r in rows]), np.array([r["family"] for r in rows])


def stage1_probability(bundle: Path, x: np.ndarray) -> np.ndarray:
    """The bundle's int8 stage-1 P(defective) of tiles ``x``."""
    return 1 / (1 + np.exp(-run_model(bundle / "stage1.int8.onnx", x)[:, 0]))


def family_thresholds(chosen_on: tuple, check: tuple, threshold: float) -> None:
    """Print a per-family threshold for 99.5 % recall chosen on one set, scored on
    another, beside the bundle's single threshold."""
    from training.thresholds import rates_at, select_threshold

    s, label, family = chosen_on
    s2, label2, family2 = check
    print("a threshold per family (99.5 % recall on the first set), on the check set:")
    for fam in sorted(set(family)):
        own, other = family == fam, family2 == fam
        t = select_threshold(s[own], label[own] != "normal", 0.995).threshold
        y2 = label2[other] != "normal"
        recall, spec = rates_at(s2[other], y2, t)
        recall0, spec0 = rates_at(s2[other], y2, threshold)
        print(f"  {fam:9s} threshold {t:.3f}: recall {recall:.3f}, specificity {spec:.2f} "
              f"({int((~y2).sum())} normals); the bundle's {threshold:.3f}: "
              f"{recall0:.3f}, {spec0:.2f}")


def main(argv: list[str] | None = None) -> int:
    from edge.bundle import default_bundle_path
    from edge.metrics import roc_auc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a semedge synth folder")
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--check", type=Path, default=None,
                        help="a second synth folder: score per-family thresholds on it")
    args = parser.parse_args(argv)
    bundle = args.bundle or default_bundle_path()
    x, label, family = load_renders(args.data)
    s1 = stage1_probability(bundle, x)
    threshold = json.loads((bundle / "manifest.json").read_text())["stage1"]["threshold"]
    normal = label == "normal"
    print("defect class against the normals of its own family (stage 1, ROC AUC):")
    for cls in sorted(set(label) - {"normal"}):
        for fam in sorted(set(family[label == cls])):
            d, n = (label == cls) & (family == fam), normal & (family == fam)
            if d.sum() >= 5 and n.sum() >= 5:
                y = np.r_[np.zeros(n.sum()), np.ones(d.sum())]
                print(f"  {cls:14s} {fam:9s} {int(d.sum()):4d} defects  "
                      f"{roc_auc(y, np.r_[s1[n], s1[d]]):.3f}")
    print(f"normals flagged at the bundle's threshold {threshold:.3f}:")
    for fam in sorted(set(family[normal])):
        n = normal & (family == fam)
        print(f"  {fam:9s} {int(n.sum()):4d} normals  flagged {np.mean(s1[n] >= threshold):.2f}"
              f"  median score {np.median(s1[n]):.3f}")
    logits = run_model(bundle / "monolithic.int8.onnx", x)
    p = np.exp(logits - logits.max(1, keepdims=True))
    mono = 1 - p[:, 0] / p.sum(1)
    y = (~normal).astype(int)
    print(f"stage 1:                 {separation(y, s1)}")
    print(f"monolithic 1 - P(normal): {separation(y, mono)}")
    if args.check is not None:
        x2, label2, family2 = load_renders(args.check)
        family_thresholds((s1, label, family),
                          (stage1_probability(bundle, x2), label2, family2), threshold)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
