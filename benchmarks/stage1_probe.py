"""Stage 1 alone, trained and scored fast: how far a change moves the gate at a fixed budget.

    python benchmarks/stage1_probe.py --train runs/d/train \\
        --heldout default=runs/d/heldout-default --heldout shifted=runs/d/heldout-shifted \\
        --real ../shared/data/sem-real-dev --samples 256000 [--no-augment] \\
        [--layout wide] [--self-reference] --out probe.json

Trains the bundle's stage 1 exactly as ``semedge train`` does (the default recipe's
stage-1 settings, its aux and dense heads, one thread), on a ``semedge synth`` folder,
for ``--samples`` samples, then prints ROC AUC and specificity at 99.5 % and 90 % recall
on each held-out folder (the six classes against ``normal``) and on the real crops (every
defect folder against ``normal``; one centre tile per image, as training reads images —
not the cascade's tiling, so compare probes with probes). Variants:

* ``--no-augment``: no photometric or geometric augmentation;
* ``--layout wide``: 4× the MACs (stem 32, stages 48/64/96/128), the same design;
* ``--self-reference``: a second input channel, each pixel's smallest absolute
  difference to its partners one pattern period away (the two strongest
  autocorrelation shifts, both signs, on the tile blurred with σ = 1 px): SEM
  patterns are periodic, and a defect differs from every partner.

Results of 2026-12-07 are in docs/training-results.md ("Stage 1: what limits it").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np

WIDE = dict(stem=32, stages=((48, 0, 2), (64, 1, 2), (96, 2, 2), (128, 1, 1)))
NO_AUGMENT = {"p_invert": 0, "p_resample": 0, "p_blur": 0, "p_gamma": 0, "p_contrast": 0,
              "p_noise": 0}


def partner_shifts(tile: np.ndarray, k: int = 2, lo: int = 6, hi: int = 100) -> list:
    """The ``k`` strongest autocorrelation shifts ``(dy, dx)`` with lo ≤ |d| ≤ hi, no two
    near-collinear."""
    x = tile - tile.mean()
    f = np.fft.rfft2(x)
    ac = np.fft.irfft2(f * np.conj(f), s=x.shape)
    dy = np.fft.fftfreq(x.shape[0]) * x.shape[0]
    dx = np.fft.fftfreq(x.shape[1]) * x.shape[1]
    yy, xx = np.meshgrid(dy, dx, indexing="ij")
    r = np.hypot(yy, xx)
    half = (yy > 0) | ((yy == 0) & (xx > 0))
    ac = np.where((r >= lo) & (r <= hi) & half, ac, -np.inf)
    shifts: list = []
    for idx in np.argsort(ac.ravel())[::-1][:2000]:
        d = (int(yy.flat[idx]), int(xx.flat[idx]))
        if all(abs(d[0] * o[1] - d[1] * o[0]) > 0.3 * np.hypot(*d) * np.hypot(*o)
               for o in shifts):
            shifts.append(d)
        if len(shifts) == k:
            break
    return shifts


def self_reference(tile: np.ndarray) -> np.ndarray:
    """The second channel: min over partners of |I − I(shifted)|, ×2, clipped to [0, 1]."""
    smooth = cv2.GaussianBlur(tile.astype(np.float32), (0, 0), 1.0)
    pad, (h, w) = 110, smooth.shape
    padded = np.pad(smooth, pad, mode="reflect")
    best = np.full(smooth.shape, np.inf, np.float32)
    for dy, dx in partner_shifts(smooth):
        for s in (1, -1):
            shifted = padded[pad + s * dy: pad + s * dy + h, pad + s * dx: pad + s * dx + w]
            best = np.minimum(best, np.abs(smooth - shifted))
    return np.clip(best * 2, 0, 1)


def with_self_reference(x: np.ndarray) -> np.ndarray:
    res = np.stack([self_reference(t) for t in x[:, 0]])[:, None].astype(x.dtype)
    return np.concatenate([x, res], axis=1)


def auc(neg: np.ndarray, pos: np.ndarray) -> float:
    s = np.r_[neg, pos]
    ranks = s.argsort().argsort() + 1.0
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def scores_of(neg: np.ndarray, pos: np.ndarray) -> dict:
    return {"auc": auc(neg, pos),
            "spec@0.995": float(np.mean(neg < np.quantile(pos, 0.005))),
            "spec@0.90": float(np.mean(neg < np.quantile(pos, 0.10)))}


def build(layout: str, channels: int):
    import torch

    from training.models import ARCHITECTURES, build_layout, build_model

    model = build_model("stage1")
    if layout == "wide":
        model = build_layout(dataclasses.replace(ARCHITECTURES["stage1"], max_params=10**7,
                                                 **WIDE))
    if channels == 2:
        model.features[0][0] = torch.nn.Conv2d(2, model.arch.stem, 4, 4, 0, bias=False)
        torch.nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out",
                                      nonlinearity="relu")
    return model


def sampling_shares(overrides: list[str]) -> dict[int, float]:
    """``{label: share}`` from ``LABEL=SHARE`` strings, normal at 0.5 unless named."""
    from edge.classes import CLASSES
    from training.data import OTHER_DEFECT

    shares = {0: 0.5}
    for item in overrides:
        name, value = item.split("=", 1)
        shares[OTHER_DEFECT if name == "other_defect" else CLASSES.index(name)] = float(value)
    return shares


def main(argv: list[str] | None = None) -> int:
    import torch

    from training.cell_masks import read_masks
    from training.data import discover, load_dataset
    from training.pipeline import _aux_targets, _dense_targets, _fit_config
    from training.recipe import load_recipe
    from training.train_loop import balanced_weights, fit, predict_logits

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--heldout", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--real", help="a labelled folder of real images (evaluation only)")
    p.add_argument("--samples", type=int, default=256_000)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--layout", choices=("stage1", "wide"), default="stage1")
    p.add_argument("--self-reference", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=0, help="train on crops of this many px")
    p.add_argument("--crop-share", type=float, default=0.85,
                   help="the share of the steps (from the start) trained on crops")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the recipe's stage-1 one)")
    p.add_argument("--focal-gamma", type=float, default=0.0,
                   help="focal loss exponent for the binary head (0: plain BCE)")
    p.add_argument("--share", action="append", default=[], metavar="LABEL=SHARE",
                   help="sampling share of a training label (normal: 0.5; the rest "
                        "split what is left)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "training/recipes/default.toml")
    augment = {**recipe.stage1.augment, **(NO_AUGMENT if a.no_augment else {})}
    model_recipe = dataclasses.replace(recipe.stage1, augment=augment,
                                       epochs=max(1, a.samples // recipe.stage1.samples_per_epoch),
                                       lr=a.lr or recipe.stage1.lr)
    config = _fit_config(model_recipe, a.seed + 1000, recipe)
    config = dataclasses.replace(config, focal_gamma=a.focal_gamma)
    if a.crop:
        config = dataclasses.replace(config, crop=a.crop, crop_share=a.crop_share)
    if a.self_reference:  # the second channel is computed once, before any augmentation
        config = dataclasses.replace(config, augment=config.augment.with_overrides(
            {**NO_AUGMENT, "renormalize": False}))
    prep = with_self_reference if a.self_reference else (lambda x: x)
    train = load_dataset(*discover(a.train), dtype=np.float16, workers=1)
    model = build(a.layout, 2 if a.self_reference else 1)
    start = time.perf_counter()
    fit(model, prep(train.x), (train.y != 0).astype(np.float32),
        balanced_weights(train.y, sampling_shares(a.share)), binary=True,
        config=config,
        aux_targets=_aux_targets(train.y),
        dense_targets=_dense_targets(build(a.layout, 1), list(train.paths), train.y,
                                     read_masks(a.train), 224))
    out: dict = {"args": vars(a) | {"out": str(a.out)}, "seconds": time.perf_counter() - start}
    sets = [(*h.split("=", 1), True) for h in a.heldout] + ([("real", a.real, False)]
                                                             if a.real else [])
    for name, folder, six_classes in sets:
        data = load_dataset(*discover(folder), workers=1)
        s = 1 / (1 + np.exp(-predict_logits(model, prep(data.x).astype(np.float32))[:, 0]))
        positive = ((data.y > 0) & (data.y < 7)) if six_classes else (data.y != 0)
        out[name] = scores_of(s[data.y == 0], s[positive])
        print(name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
