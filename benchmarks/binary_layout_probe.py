"""A binary (normal/defective) model of either layout, trained as the data-scaled
``semedge train`` trains stage 1, on the train/validation split of an earlier run.

    semedge train --data DATA/train --out runs/plain --seed 1          # writes splits.json
    python benchmarks/binary_layout_probe.py --root DATA/train --splits runs/plain/splits.json \\
        --test DATA/test --layout stage2 --samples 80000 --seed 1 [--no-invert] --out probe.json

``--layout stage1`` is the bundle's stage-1 network, ``stage2`` stage 2's (3×3 stride-2
stem, 0.51 M parameters) with one output; neither has the training-only heads (user data
has no masks). The built-in recipe's stage-1 settings and augmentation (``--no-invert``:
without polarity inversion), 20 epochs, the best validation-AUC epoch kept; one thread.
Prints fp32 test ROC AUC and accuracy at P ≥ 0.5. Results of 2026-12-07 on ELPV are in
docs/elpv.md ("The plain commands").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def binary_model(layout: str):
    """A freshly initialised one-output network of the layout."""
    from training.models import ARCHITECTURES, build_layout

    return build_layout(dataclasses.replace(ARCHITECTURES[layout], outputs=1, aux_outputs=0,
                                            dense_head=False, max_params=10**8))


def load_split(root: Path, files: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Tiles and defective flags of one split of a run's ``splits.json``."""
    from training.data import load_dataset

    rows = [r for r in files if r["split"] == split]
    y = np.array([r["label"] != "normal" for r in rows])
    return load_dataset([str(root / r["path"]) for r in rows], y.astype(np.int64),
                        workers=1).x, y


def main(argv: list[str] | None = None) -> int:
    import torch

    from edge.metrics import roc_auc
    from training.data import discover, load_dataset
    from training.pipeline import _fit_config
    from training.recipe import TrainRecipe
    from training.train_loop import balanced_weights, fit, predict_logits

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="the folder the run trained on")
    p.add_argument("--splits", type=Path, required=True, help="that run's splits.json")
    p.add_argument("--test", type=Path, required=True, help="normal/defective test folders")
    p.add_argument("--layout", choices=("stage1", "stage2"), default="stage1")
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-invert", action="store_true")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    files = json.loads(a.splits.read_text(encoding="utf-8"))["files"]
    x_train, y_train = load_split(a.root, files, "train")
    x_val, y_val = load_split(a.root, files, "val")
    test = load_dataset(*discover(a.test), workers=1)
    recipe = TrainRecipe()
    model_recipe = dataclasses.replace(
        recipe.stage1, epochs=20, samples_per_epoch=max(64, a.samples // 20 // 64 * 64),
        patience=8, augment={**recipe.stage1.augment, **({"p_invert": 0.0} if a.no_invert else {})})
    config = _fit_config(model_recipe, a.seed, recipe)
    model = binary_model(a.layout)
    start = time.perf_counter()
    result = fit(model, x_train, y_train.astype(np.float32), balanced_weights(y_train.astype(int)),
                 binary=True, config=config,
                 validate=lambda m: roc_auc(y_val.astype(int), predict_logits(m, x_val)[:, 0]))
    score = 1 / (1 + np.exp(-predict_logits(model, test.x)[:, 0]))
    defective = test.y != 0
    out = {"args": {k: str(v) for k, v in vars(a).items()}, "samples": result.samples,
           "seconds": time.perf_counter() - start, "best_epoch": result.best_epoch,
           "test_roc_auc": roc_auc(defective.astype(int), score),
           "test_accuracy_at_0.5": float(np.mean((score >= 0.5) == defective))}
    print(json.dumps(out, indent=1))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
