"""Samples per second of the real training loop, whole tiles against crop training, on a
``semedge synth`` folder held in memory as ``semedge train`` holds it.

    python benchmarks/training_rate.py --train runs/d/train [--models stage1 stage2]
        [--steps 60] [--threads 1]

For each model, ``training.train_loop.fit`` runs the default recipe's settings for
``--steps`` batches twice in one process, same seed: on whole 224-px tiles, then with the
recipe's crop schedule (the first ``crop_share`` of the steps on ``crop``-px windows).
Sampling from the whole float16 array, cropping, augmentation, forward, backward and
AdamW are all in the time, unlike ``benchmarks/test_bench_training.py``, which times one
step on a small cached batch. Results of 2026-12-07 are in docs/training.md ("Crop
training").
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rate(name: str, data, masks, recipe, crop: int, steps: int) -> float:
    """Samples per second of ``steps`` batches of ``name`` (``crop`` 0: whole tiles)."""
    from training.models import build_model
    from training.pipeline import _aux_targets, _dense_targets, _fit_config
    from training.train_loop import balanced_weights, fit

    spec = getattr(recipe, name)
    spec = dataclasses.replace(spec, epochs=1, samples_per_epoch=spec.batch_size * steps,
                               crop=crop, crop_share=spec.crop_share if crop else 0.0)
    model = build_model(name)
    if name == "stage1":
        keep = np.arange(len(data))
        y, w = (data.y != 0).astype(np.float32), balanced_weights(data.y, {0: 0.5})
        aux = _aux_targets(data.y)
    else:
        keep = np.flatnonzero(data.y > 0)
        y = data.y[keep] - 1
        w, aux = balanced_weights(y), None
    dense = _dense_targets(model, [data.paths[k] for k in keep], data.y[keep], masks,
                           recipe.size, crop=bool(crop))
    x = data.x if len(keep) == len(data) else data.x[keep]
    result = fit(model, x, y, w, binary=name == "stage1", config=_fit_config(spec, 0, recipe),
                 aux_targets=aux, dense_targets=dense)
    return result.images_per_second


def main() -> int:
    """Measure and print whole-tile and crop-schedule rates, and their ratio."""
    import torch

    from training.cell_masks import read_masks
    from training.data import discover, load_dataset
    from training.recipe import load_recipe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True, help="semedge synth folder")
    p.add_argument("--models", nargs="+", default=["stage1", "stage2"],
                   choices=["stage1", "stage2", "monolithic"])
    p.add_argument("--steps", type=int, default=60, help="batches per measurement")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(ROOT / "training" / "recipes" / "default.toml")
    data = load_dataset(*discover(args.train), dtype=np.float16, workers=1)
    masks = read_masks(args.train)
    for name in args.models:
        whole = rate(name, data, masks, recipe, 0, args.steps)
        crops = rate(name, data, masks, recipe, getattr(recipe, name).crop, args.steps)
        print(f"{name}: whole tiles {whole:.0f} samples/s, crop schedule {crops:.0f} "
              f"samples/s = {crops / whole:.2f}× ({args.threads} thread(s), "
              f"{args.steps} batches each)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
