"""Recipe sweep: which data / architecture / budget changes move the held-out and
real-dev-set numbers, each variant trained with the CPU recipe's sample budget.

Written for a lent GPU machine (16 cores + one GPU; scripts/recipe-sweep runs it
there), usable on any CUDA box; results of the run of 2026-11-27 are in
docs/training-results.md. "wide" is the `default` synth recipe before that run, "narrow" the one
after it (the current `default`).

    python scripts/recipe_sweep.py prep WORK          # synth + normalized caches
    python scripts/recipe_sweep.py train WORK NAME    # one variant -> WORK/res/NAME.json
    python scripts/recipe_sweep.py collect WORK OUT   # all results -> OUT/results.json

SWEEP_SCALE=100 SWEEP_DEVICE=cpu makes a tiny smoke run. The dev set is read from
SWEEP_DEVSET (default ../shared/data/sem-real-dev): evaluation only.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCALE = int(os.environ.get("SWEEP_SCALE", "1"))
DEVICE = os.environ.get("SWEEP_DEVICE", "cuda")
sys.path.insert(0, str(ROOT))

from edge.metrics import roc_auc, specificity_at_recall  # noqa: E402

WIDE = {  # the default recipe's ranges before 2026-11-27
    "scene.pitch_px": [6.0, 60.0], "scene.texture_amp": [0.02, 0.14],
    "sem.dose": [15.0, 400.0], "defects.open.gap_px": [2.0, 25.0],
    "defects.short.width_px": [2.5, 20.0], "defects.void.radius_px": [1.5, 10.0],
    "defects.crack.width_px": [1.0, 3.0], "defects.crack.depth": [0.6, 0.95],
}
WIDE_SHIFTED = {k: v for k, v in WIDE.items()
                if k not in ("scene.pitch_px", "scene.texture_amp", "sem.dose")}
NARROW = {
    "scene.pitch_px": [8.0, 60.0], "scene.texture_amp": [0.02, 0.10],
    "sem.dose": [40.0, 400.0], "defects.open.gap_px": [3.0, 25.0],
    "defects.short.width_px": [3.0, 20.0], "defects.void.radius_px": [2.5, 10.0],
    "defects.crack.width_px": [1.5, 3.0], "defects.crack.depth": [0.7, 0.95],
}
# shifted keeps its own overrides of pitch/dose/texture
NARROW_SHIFTED = {k: v for k, v in NARROW.items()
                  if k not in ("scene.pitch_px", "scene.texture_amp", "sem.dose")}


def recipes():
    from synth.recipe import load_recipe
    d, s = load_recipe("default"), load_recipe("shifted")
    return {
        "wide": d.replace(WIDE, name="wide"), "narrow": d.replace(NARROW, name="narrow"),
        "shifted_wide": s.replace(WIDE_SHIFTED, name="shifted_wide"),
        "shifted_narrow": s.replace(NARROW_SHIFTED, name="shifted_narrow"),
    }


SETS = [  # name, recipe, per_class, seed
    ("train_wide", "wide", 2500, 0), ("train_narrow", "narrow", 2500, 0),
    ("ho_wide", "wide", 200, 1), ("ho_narrow", "narrow", 200, 1),
    ("sh_wide", "shifted_wide", 200, 2), ("sh_narrow", "shifted_narrow", 200, 2),
]


def prep(work: Path) -> None:
    from synth.dataset import write_dataset
    from training.data import discover, load_dataset
    rec = recipes()
    only = os.environ.get("SWEEP_SETS")
    for name, r, per, seed in SETS:
        if only and name not in only.split(","):
            continue
        t = time.time()
        out = work / "data" / name
        per = max(2, per // SCALE)
        write_dataset(out, per_class=per, seed=seed, recipe=rec[r], workers=16, overwrite=True)
        paths, y = discover(out)
        ds = load_dataset(paths, y, workers=16, dtype=np.float16)
        np.save(work / f"{name}.x.npy", ds.x)
        np.save(work / f"{name}.y.npy", ds.y)
        print(f"{name}: {len(y)} in {time.time() - t:.1f}s", flush=True)
    paths, y = discover(os.environ.get("SWEEP_DEVSET", ROOT.parent / "shared/data/sem-real-dev"))
    ds = load_dataset(paths, y, workers=16, dtype=np.float16)
    np.save(work / "dev.x.npy", ds.x)
    np.save(work / "dev.y.npy", ds.y)
    print("dev", len(y), flush=True)


def arch(kind: str):
    from training.models import ARCHITECTURES, Architecture
    if kind == "s1":
        return ARCHITECTURES["stage1"]
    if kind == "s1_s2stem":
        return Architecture("stage1", stem=16, outputs=1, max_params=100_000, stem_stride=2,
                            stages=((24, 0, 2), (32, 1, 2), (48, 1, 2), (64, 1, 2)))
    if kind == "s1_deep":
        return Architecture("stage1", stem=24, outputs=1, max_params=100_000, stem_stride=4,
                            stages=((32, 1, 2), (48, 1, 2), (64, 2, 2), (80, 1, 1)))
    if kind == "s1_aux":
        return replace(ARCHITECTURES["stage1"], aux_outputs=8)
    if kind == "s2":
        return ARCHITECTURES["stage2"]
    raise KeyError(kind)


V = {}  # name -> (arch, data, epochs, samples/epoch, lr, augment overrides)
for d in ("wide", "narrow"):
    V[f"s1_{d}"] = ("s1", d, 20, 12032, 0.004, {})
    V[f"s2_{d}_inv"] = ("s2", d, 10, 6016, 0.003, {})
V["s1_s2stem_narrow"] = ("s1_s2stem", "narrow", 20, 12032, 0.004, {})
V["s1_deep_narrow"] = ("s1_deep", "narrow", 20, 12032, 0.004, {})
V["s1_narrow_x4"] = ("s1", "narrow", 80, 12032, 0.004, {})
V["s1_narrow_augR"] = ("s1", "narrow", 20, 12032, 0.004,
                       {"p_resample": 0.7, "p_blur": 0.6, "blur_sigma": (0.5, 2.5)})
V["s2_narrow_noinv"] = ("s2", "narrow", 10, 6016, 0.003, {"p_invert": 0.0})
V["s2_narrow_noinv_x4"] = ("s2", "narrow", 40, 6016, 0.003, {"p_invert": 0.0})
V["s2_narrow_noinv_augR"] = ("s2", "narrow", 10, 6016, 0.003,
                             {"p_invert": 0.0, "p_resample": 0.7, "p_blur": 0.6,
                              "blur_sigma": (0.5, 2.5)})
V["s1_deep_narrow_x4"] = ("s1_deep", "narrow", 80, 12032, 0.004, {})
# second round: the recipe adopted after the first (stage 1 at 150 k samples), its budget
# curve, and an 8-way training-only aux head behind the binary logit
AUG_R = {"p_resample": 0.7, "p_blur": 0.6, "blur_sigma": (0.5, 2.5)}
V["r2_s1_150k"] = ("s1", "narrow", 15, 10048, 0.004, AUG_R)
V["r2_s1_300k"] = ("s1", "narrow", 30, 10048, 0.004, AUG_R)
V["r2_s1_aux_150k"] = ("s1_aux", "narrow", 15, 10048, 0.004, AUG_R)
V["r2_s1_aux_300k"] = ("s1_aux", "narrow", 30, 10048, 0.004, AUG_R)
ONLY = os.environ.get("SWEEP_ONLY")  # comma-separated name prefixes
if ONLY:
    V = {k: v for k, v in V.items() if any(k.startswith(p) for p in ONLY.split(","))}


def recall_at_spec(scores, pos, spec):
    thr = np.quantile(scores[~pos], spec)
    return float((scores[pos] > thr).mean())


def macro_f1(y, p, classes):
    f = {}
    for c in classes:
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        f[int(c)] = float(2 * tp / max(1, 2 * tp + fp + fn))
    return float(np.mean(list(f.values()))), f


def logits(model, x, dev):
    import torch
    model.eval().to(dev)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 512):
            out.append(model(torch.from_numpy(x[i:i + 512].astype(np.float32)).to(dev)).float().cpu().numpy())
    model.to("cpu")
    return np.concatenate(out)


def train(work: Path, name: str) -> None:
    import torch

    from training.augment import AugmentConfig
    from training.models import build_model, count_macs, count_parameters
    from training.train_loop import FitConfig, balanced_weights, fit
    torch.set_num_threads(1)
    a, data, epochs, spe, lr, aug = V[name]
    ar = arch(a)
    binary = ar.outputs == 1
    x = np.load(work / f"train_{data}.x.npy", mmap_mode="r")
    y = np.load(work / f"train_{data}.y.npy")
    torch.manual_seed(0)
    import training.models as tm
    tm.ARCHITECTURES["stage1" if binary else "stage2"] = ar
    model = build_model("stage1" if binary else "stage2")
    params, macs = count_parameters(model), count_macs(model)
    cfg = FitConfig(epochs=max(1, epochs // SCALE), samples_per_epoch=max(64, spe // SCALE), batch_size=64, lr=lr,
                    label_smoothing=0.0 if binary else 0.05, seed=1000,
                    augment=replace(AugmentConfig(), **aug))
    if binary:
        keep = np.ones(len(y), bool)
        targets = (y != 0).astype(np.float32)
        w = balanced_weights(y, {0: 0.5})
    else:
        keep = y > 0
        targets = y[keep] - 1
        w = balanced_weights(targets)
    t = time.time()
    aux = np.where(y < 0, 7, y) if ar.aux_outputs else None  # other_defect -> 7
    fr = fit(model, x[keep] if not keep.all() else x, targets, w, binary=binary, config=cfg,
             device=DEVICE, aux_targets=aux)
    res = {"name": name, "arch": a, "data": data, "params": params, "macs": macs,
           "train_s": time.time() - t, "history": fr.history[-1], "aug": aug,
           "epochs": epochs, "spe": spe}
    for ev in ("ho_wide", "ho_narrow", "sh_wide", "sh_narrow", "dev"):
        if not (work / f"{ev}.x.npy").exists():
            continue
        ex = np.load(work / f"{ev}.x.npy")
        ey = np.load(work / f"{ev}.y.npy")
        lg = logits(model, ex, DEVICE)
        if binary:
            s = lg[:, 0]
            pos = ey != 0
            r = {"auc": roc_auc(pos, s)}
            if ev == "dev":
                r["spec@r0.90"] = specificity_at_recall(pos, s, 0.90)
                r["recall@s0.60"] = recall_at_spec(s, pos, 0.60)
                thr = np.sort(s[pos])[int(0.1 * pos.sum())]
                r["recall_by_label@r0.90"] = {int(c): float((s[ey == c] >= thr).mean())
                                              for c in np.unique(ey)}
            else:
                r["spec@r0.995"] = specificity_at_recall(pos, s, 0.995)
                r["spec@r0.97"] = specificity_at_recall(pos, s, 0.97)
        else:
            keep = ey > 0
            p = lg[keep].argmax(1) + 1
            classes = [1, 2, 3, 5, 6] if ev == "dev" else [1, 2, 3, 4, 5, 6]
            mf, per = macro_f1(ey[keep], p, classes)
            r = {"mf1": mf, "per_class": per,
                 "confusion": np.array([[int(np.sum((ey[keep] == i) & (p == j))) for j in range(1, 7)]
                                        for i in range(1, 7)]).tolist()}
        res[ev] = r
    (work / "res").mkdir(exist_ok=True)
    (work / "res" / f"{name}.json").write_text(json.dumps(res, indent=1))
    torch.save(model.state_dict(), work / "res" / f"{name}.pt")
    print(f"{name} done in {time.time() - t:.0f}s", flush=True)


def collect(work: Path, out: Path) -> None:
    res = {}
    for p in sorted((work / "res").glob("*.json")):
        res[p.stem] = json.loads(p.read_text())
    (out / "results.json").write_text(json.dumps(res, indent=1))
    for k, r in res.items():
        if r["arch"].startswith("s1"):
            print(k, r["params"], f"{r['train_s']:.0f}s",
                  {e: round(r[e]["auc"], 3) for e in ("ho_wide", "ho_narrow", "sh_narrow", "dev")
                   if e in r},
                  "ho_n spec@.995", round(r["ho_narrow"]["spec@r0.995"], 3),
                  "dev spec@.9", round(r["dev"]["spec@r0.90"], 3), r["history"])
        else:
            print(k, f"{r['train_s']:.0f}s",
                  {e: round(r[e]["mf1"], 3) for e in ("ho_wide", "ho_narrow", "sh_narrow", "dev")
                   if e in r})


if __name__ == "__main__":
    cmd, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    if cmd == "prep":
        prep(work)
    elif cmd == "train":
        train(work, sys.argv[3])
    elif cmd == "collect":
        collect(work, Path(sys.argv[3]))
    elif cmd == "list":
        print(" ".join(V))
