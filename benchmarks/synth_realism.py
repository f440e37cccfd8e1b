"""How far generated SEM images are from the real dev crops: a real-vs-generated detector.

    python benchmarks/synth_realism.py --generated procedural=DIR [--generated diffusion=DIR ...]
                                       [--real ../shared/data/sem-real-dev] [--size 128]
                                       [--folds 5] [--seed 0] [--json OUT.json]
                                       [--sheets DIR] [--sheet-n 16]

For every ``--generated`` ImageFolder (``semedge synth`` output of either engine) it trains
a classifier to tell its images from the real crops and reports the **5-fold
cross-validated ROC AUC** of that classifier (mean ± sample standard deviation over the
folds): 0.5 means the detector cannot tell the two apart, 1.0 that it always can. Lower
is more realistic. Also reported: the AUC of the pooled out-of-fold scores per label (how
recognisable each class's generated images are) and the AUC of each feature group alone
(what gives them away).

**Same images, same preprocessing on both sides.** Only labels present in the real folder
and in every generated folder are used (the dev set has no ``void``), with the same number
of images per label on both sides and in every comparison: per label the smallest count
of all folders, drawn at random (``--seed``) where a folder has more, so every generated
folder is compared with the same real images. Every image is read as 8-bit grayscale,
center-cropped to a square, resized to ``--size`` px (area interpolation when shrinking,
bicubic when enlarging) and scaled to [0, 1]; nothing else. The folds are stratified by
side and label.

**The detector: fixed image features + L2-regularised logistic regression**, not a CNN:
it runs in seconds on one core, is deterministic, needs no GPU or pretrained weights, has
one hyper-parameter (C = 1 on standardised features) and its feature groups say *what*
separates the sets. The features are classic texture and image-formation statistics:

* ``intensity``: 32-bin grey-level histogram, mean, standard deviation, percentiles;
* ``gradient``: histogram of log Sobel gradient magnitude (32 bins) and a 16-bin
  magnitude-weighted orientation histogram (a global HOG);
* ``spectrum``: radially averaged log power spectrum (32 bands, normalised): blur, noise
  and pattern pitch;
* ``lbp``: uniform local binary patterns (8 neighbours) at radii 1 and 2 (10 bins each):
  fine texture and noise.

A stronger detector (a CNN) can only find more differences, so these AUCs are lower
bounds on how distinguishable the sets are; they compare generators with each other.

``--sheets DIR`` writes contact sheets of the **generated** images only (never of the
real crops, whose licence forbids copying them): ``DIR/synth-<name>-<label>.png`` per
label (``--sheet-n`` images of 96 px, two rows) and ``DIR/synth-<name>.png`` (one row of
eight 72-px images per label). The real crops are read at run time, for evaluation only
(``../shared/data/sem-real-dev/README.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "data" / "sem-real-dev"
EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
GROUPS = ("intensity", "gradient", "spectrum", "lbp")


def labels_order() -> tuple[str, ...]:
    sys.path.insert(0, str(REPO))
    from synth.recipe import ALL_LABELS

    return tuple(ALL_LABELS)


def list_folder(root: Path, labels: tuple[str, ...]) -> dict[str, list[Path]]:
    """``{label: sorted image paths}`` of the label folders in ``root``."""
    out = {}
    for lab in labels:
        d = root / lab
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in EXTENSIONS)
            if files:
                out[lab] = files
    return out


def read_gray(path: Path, size: int) -> np.ndarray:
    """8-bit grayscale, center-cropped square, resized to ``size``, in [0, 1] (float32)."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{path}: not an image")
    h, w = img.shape
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s != size:
        interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img.astype(np.float32) / 255.0


def _lbp(img: np.ndarray, radius: int) -> np.ndarray:
    """Uniform 8-neighbour LBP histogram (10 bins: 9 uniform codes by their count of
    ones, and one bin for all non-uniform codes), sampled on the square of ``radius``."""
    r = radius
    c = img[r:-r, r:-r]
    h, w = c.shape
    offsets = [(-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r)]
    bits = np.stack([img[r + dy:r + dy + h, r + dx:r + dx + w] >= c for dy, dx in offsets])
    ones = bits.sum(0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(0)
    code = np.where(transitions <= 2, ones, 9)
    return np.bincount(code.ravel(), minlength=10).astype(np.float64) / code.size


def features(img: np.ndarray) -> dict[str, np.ndarray]:
    """The four feature groups of one [0, 1] grayscale image."""
    n = img.shape[0]
    hist = np.histogram(img, bins=32, range=(0.0, 1.0))[0] / img.size
    intensity = np.r_[hist, img.mean(), img.std(), np.percentile(img, [1, 10, 50, 90, 99])]

    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    mhist = np.histogram(np.log10(mag + 1e-3), bins=32, range=(-3.0, 1.0))[0] / img.size
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    ohist = np.histogram(ang, bins=16, range=(0.0, np.pi), weights=mag)[0]
    ohist = ohist / max(float(ohist.sum()), 1e-12)
    gradient = np.r_[mhist, ohist, mag.mean()]

    f = np.fft.fftshift(np.fft.fft2(img - img.mean()))
    power = np.abs(f) ** 2
    yy, xx = np.indices(power.shape)
    rad = np.hypot(yy - n // 2, xx - n // 2) / (n / 2)
    band = np.minimum((rad * 32).astype(int), 32)
    prof = np.bincount(band.ravel(), weights=power.ravel(), minlength=33)[:32]
    cnt = np.bincount(band.ravel(), minlength=33)[:32]
    prof = prof / np.maximum(cnt, 1)
    spectrum = np.log10(prof / max(float(prof.sum()), 1e-20) + 1e-12)

    lbp = np.r_[_lbp(img, 1), _lbp(img, 2)]
    return {"intensity": intensity, "gradient": gradient, "spectrum": spectrum, "lbp": lbp}


def feature_matrix(paths: list[Path], size: int) -> dict[str, np.ndarray]:
    rows = [features(read_gray(p, size)) for p in paths]
    return {g: np.stack([r[g] for r in rows]) for g in GROUPS}


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> np.ndarray:
    """L2-regularised logistic regression (intercept not penalised); returns weights with
    the intercept last. ``x`` should be standardised."""
    from scipy.optimize import minimize

    xb = np.c_[x, np.ones(len(x))]
    t = 2.0 * y - 1.0
    reg = np.r_[np.ones(x.shape[1]), 0.0] / c

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = t * (xb @ w)
        value = np.logaddexp(0.0, -z).sum() + 0.5 * float(np.sum(reg * w * w))
        grad = xb.T @ (-t / (1.0 + np.exp(z))) + reg * w
        return float(value), grad

    res = minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})
    return res.x


def stratified_folds(strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per sample: each stratum shuffled and dealt round-robin to the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(strata), dtype=int)
    start = 0
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        fold[idx] = (np.arange(len(idx)) + start) % k
        start += len(idx)  # the next stratum continues where this one stopped
    return fold


def cross_validated_auc(x: np.ndarray, y: np.ndarray, fold: np.ndarray, c: float = 1.0
                        ) -> tuple[list[float], np.ndarray]:
    """Per-fold ROC AUC and the out-of-fold scores (y = 1: generated)."""
    from edge.metrics import roc_auc

    scores = np.empty(len(y))
    aucs = []
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd[sd < 1e-12] = 1.0
        w = fit_logistic((x[tr] - mu) / sd, y[tr], c)
        scores[te] = np.c_[(x[te] - mu) / sd, np.ones(int(te.sum()))] @ w
        aucs.append(float(roc_auc(y[te], scores[te])))
    return aucs, scores


def choose(files: dict[str, dict[str, list[Path]]], seed: int) -> dict[str, dict[str, list[Path]]]:
    """Per label, the same number of images from every folder (the smallest count)."""
    common = [lab for lab in files["real"] if all(lab in f for f in files.values())]
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[Path]]] = {name: {} for name in files}
    for lab in common:
        n = min(len(f[lab]) for f in files.values())
        for name, f in files.items():
            pick = np.sort(rng.choice(len(f[lab]), size=n, replace=False))
            out[name][lab] = [f[lab][i] for i in pick]
    return out


def write_sheets(name: str, folder: dict[str, list[Path]], out: Path, n: int, tile: int = 96,
                 overview_tile: int = 72) -> list[Path]:
    """Contact sheets of one generated folder: per label (``n`` images of ``tile`` px in two
    rows) and one overview (eight images of ``overview_tile`` px per label)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def grid(imgs: list[np.ndarray], cols: int) -> np.ndarray:
        tile = imgs[0].shape[0]
        rows = -(-len(imgs) // cols)
        sheet = np.full((rows * (tile + 2), cols * (tile + 2)), 255, np.uint8)
        for k, im in enumerate(imgs):
            r, c = divmod(k, cols)
            sheet[r * (tile + 2):r * (tile + 2) + tile, c * (tile + 2):c * (tile + 2) + tile] = im
        return sheet

    def load(p: Path, side: int = tile) -> np.ndarray:
        return np.rint(read_gray(p, side) * 255).astype(np.uint8)

    for lab, paths in folder.items():
        imgs = [load(p) for p in paths[:n]]
        path = out / f"synth-{name}-{lab}.png"
        cv2.imwrite(str(path), grid(imgs, max(1, -(-len(imgs) // 2))),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        written.append(path)
    rows = [[load(p, overview_tile) for p in paths[:8]] for paths in folder.values()]
    blank = np.full((overview_tile, overview_tile), 255, np.uint8)
    overview = np.concatenate([grid(r + [blank] * (8 - len(r)), 8) for r in rows])
    path = out / f"synth-{name}.png"
    cv2.imwrite(str(path), overview, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", action="append", required=True, metavar="NAME=DIR",
                        help="a generated ImageFolder (repeatable)")
    parser.add_argument("--real", type=Path, default=DEV_SET,
                        help=f"the real labelled crops (default: {DEV_SET})")
    parser.add_argument("--size", type=int, default=128, help="side in px (default 128)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="image choice and folds")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--sheets", type=Path, default=None,
                        help="write contact sheets of the generated images into this folder")
    parser.add_argument("--sheet-n", type=int, default=16, help="images per label sheet")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))

    labels = labels_order()
    gen: dict[str, Path] = {}
    for spec in args.generated:
        name, sep, folder = spec.partition("=")
        if not sep or not name or name == "real" or name in gen:
            parser.error(f"--generated {spec!r}: expected a new NAME=DIR (NAME not 'real')")
        gen[name] = Path(folder)
    if args.folds < 2 or args.size < 16:
        parser.error("--folds must be >= 2 and --size >= 16")
    files = {"real": list_folder(args.real, labels)}
    for name, folder in gen.items():
        files[name] = list_folder(folder, labels)
        if not files[name]:
            parser.error(f"{folder}: no images in label folders ({', '.join(labels)})")
    if not files["real"]:
        parser.error(f"{args.real}: no images in label folders")

    if args.sheets is not None:
        for name in gen:
            for p in write_sheets(name, files[name], args.sheets, args.sheet_n):
                print(f"wrote {p}")

    chosen = choose(files, args.seed)
    used = {lab: len(v) for lab, v in chosen["real"].items()}
    print(f"images per side: {sum(used.values())} ({', '.join(f'{k} {v}' for k, v in used.items())}); "
          f"{args.size} px, {args.folds} folds, seed {args.seed}")
    real_paths = [p for lab in used for p in chosen["real"][lab]]
    real_labels = [lab for lab in used for _ in chosen["real"][lab]]
    real_feats = feature_matrix(real_paths, args.size)
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "per_label": used,
                    "sets": {}}
    for name in gen:
        paths = [p for lab in used for p in chosen[name][lab]]
        feats = feature_matrix(paths, args.size)
        y = np.r_[np.zeros(len(real_paths)), np.ones(len(paths))]
        lab_all = np.array(real_labels + real_labels)
        fold = stratified_folds(np.char.add(y.astype(int).astype(str), lab_all), args.folds,
                                args.seed)
        x = np.concatenate([np.c_[tuple(real_feats[g] for g in GROUPS)],
                            np.c_[tuple(feats[g] for g in GROUPS)]])
        aucs, scores = cross_validated_auc(x, y, fold)
        from edge.metrics import roc_auc

        by_label = {lab: float(roc_auc(y[lab_all == lab], scores[lab_all == lab])) for lab in used}
        by_group = {}
        for g in GROUPS:
            xg = np.concatenate([real_feats[g], feats[g]])
            ga, _ = cross_validated_auc(xg, y, fold)
            by_group[g] = {"mean": float(np.mean(ga)), "std": float(np.std(ga, ddof=1))}
        res = {"folder": str(gen[name]), "fold_auc": aucs, "mean": float(np.mean(aucs)),
               "std": float(np.std(aucs, ddof=1)), "pooled_auc_by_label": by_label,
               "feature_group_auc": by_group}
        result["sets"][name] = res
        print(f"{name}: AUC {res['mean']:.3f} ± {res['std']:.3f} "
              f"(folds {', '.join(f'{a:.3f}' for a in aucs)})")
        print("  by label: " + ", ".join(f"{k} {v:.3f}" for k, v in by_label.items()))
        print("  by feature group alone: "
              + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in by_group.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
