"""Stage 2 alone, trained and scored fast: how far a change moves the defect classes and
``unknown`` at a fixed budget.

    python benchmarks/stage2_probe.py --train runs/d/train \\
        --heldout default=runs/d/heldout-default --heldout shifted=runs/d/heldout-shifted \\
        --real ../shared/data/sem-real-dev --samples 84000 [--whole-tiles] \\
        [--outlier-weight 0.5 | --other-output] [--seed 0] --out probe.json

Trains the bundle's stage 2 as ``semedge train`` does (the default recipe's stage-2
settings with its crop training and dense head, one thread), on a ``semedge synth``
folder, for ``--samples`` samples, then prints on each folder the macro-F1 over the defect
classes present (argmax, no ``unknown``), and where the folder holds ``other_defect``:
the share of it answered ``unknown`` when the threshold on the top probability lets 5 %
of the known-class defects be ``unknown``, and the open-set ROC AUC (known defects
against ``other_defect`` by the top probability). One centre tile per image, as training
reads images — compare probes with probes, not with the cascade's numbers.

``--outlier-weight W`` trains the ``other_defect`` renders toward a uniform answer with
weight ``W`` (outlier exposure, ``outlier_weight`` in a recipe); ``--other-output``
trains them as a seventh output (``other_output``), and the top probability above is then
the six classes' share of the seven-way softmax.

Results of 2026-12-07 are in docs/training-results.md ("Crop training", "Outlier
exposure for stage 2").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _folder(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(path)


def open_set_scores(logits: np.ndarray, known: np.ndarray, other: np.ndarray
                    ) -> dict[str, float]:
    """``unknown`` share of ``other`` at 5 % of ``known`` answered ``unknown``, and the
    open-set ROC AUC, both by the top softmax probability."""
    from edge.metrics import roc_auc

    z = logits - logits.max(1, keepdims=True)
    top = np.exp(z[:, :6]).max(1) / np.exp(z).sum(1)
    threshold = np.quantile(top[known], 0.05)
    labels = np.r_[np.zeros(known.sum()), np.ones(other.sum())]
    return {"unknown_at_5pct": float(np.mean(top[other] < threshold)),
            "open_auroc": float(roc_auc(labels, np.r_[-top[known], -top[other]]))}


def score_folder(model, folder: Path) -> dict[str, float]:
    """Macro-F1 over the defect classes of ``folder`` and, with ``other_defect``, the
    open-set scores."""
    from edge.metrics import confusion_matrix, macro_f1
    from training.data import discover, load_dataset
    from training.train_loop import predict_logits

    data = load_dataset(*discover(folder), workers=1)
    known = (data.y > 0) & (data.y <= 6)
    logits = predict_logits(model, data.x)
    truth = data.y[known] - 1
    cm = confusion_matrix(truth, logits[known, :6].argmax(1), 6)
    out = {"macro_f1": float(macro_f1(cm, np.unique(truth)))}
    other = data.y == -1
    if other.any():
        out.update(open_set_scores(logits, known, other))
    return out


def train(args: argparse.Namespace):
    """Stage 2 trained on ``args.train`` as the default recipe says, at ``args.samples``."""
    import torch

    from training.cell_masks import read_masks
    from training.data import discover, load_dataset
    from training.models import build_model
    from training.pipeline import _dense_targets, _fit_config, _stage2_spec
    from training.recipe import load_recipe
    from training.train_loop import balanced_weights, fit

    torch.set_num_threads(1)
    recipe = load_recipe(ROOT / "training" / "recipes" / "default.toml")
    spec = recipe.stage2
    crop = 0 if args.whole_tiles else spec.crop
    spec = dataclasses.replace(spec, epochs=max(1, args.samples // spec.samples_per_epoch),
                               crop=crop, crop_share=spec.crop_share if crop else 0.0,
                               outlier_weight=args.outlier_weight,
                               other_output=args.other_output)
    data = load_dataset(*discover(args.train), dtype=np.float16, workers=1)
    keep, targets, _, _ = _stage2_spec(data.y, spec)
    keep = np.flatnonzero(keep)
    y = targets[keep]
    model = build_model("stage2", 7 if args.other_output else None)
    cells = _dense_targets(model, [data.paths[k] for k in keep], data.y[keep],
                           read_masks(args.train), recipe.size, crop=bool(crop))
    result = fit(model, data.x[keep], y, balanced_weights(y), binary=False,
                 config=_fit_config(spec, args.seed + 2000, recipe), dense_targets=cells)
    return model, result.history[-1]


def main() -> int:
    """Train, score every folder, print and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True, help="semedge synth folder")
    p.add_argument("--heldout", type=_folder, action="append", default=[],
                   metavar="NAME=DIR", help="held-out folder (repeatable)")
    p.add_argument("--real", type=Path, default=None, help="real crops (evaluation only)")
    p.add_argument("--samples", type=int, default=84_000)
    p.add_argument("--whole-tiles", action="store_true", help="no crop training")
    p.add_argument("--outlier-weight", type=float, default=0.0)
    p.add_argument("--other-output", action="store_true",
                   help="other_defect as a seventh output (answered unknown)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    t0 = time.perf_counter()
    model, last = train(args)
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()},
                 "seconds": round(time.perf_counter() - t0, 1), "last_epoch": last}
    folders = [*args.heldout, *([("real", args.real)] if args.real else [])]
    for name, folder in folders:
        out[name] = score_folder(model, folder)
        print(name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
