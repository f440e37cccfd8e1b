"""ELPV benchmark: does synthetic pretraining help on real images? (``docs/elpv.md``)

One command reproduces the table::

    pip install elpv-dataset          # CC BY-NC-SA 4.0: installed, never committed
    python benchmarks/elpv_benchmark.py --out runs/elpv

For {from scratch, fine-tuned from the default bundle (``--init``)} × {100 %, 25 %, 10 %
of the 1,968-cell training split} × seeds {0, 1, 2}, ``semedge train`` (the real
pipeline: ingestion, stratified seeded val split, threshold for 95 % val recall, ONNX
int8 export) trains the stage-1 network on ``OUT/data/binary/train`` and evaluates it on
the 656 test cells. The label subsets are ``path,label`` CSVs (stratified, seeded).
Reported on the int8 ONNX model: accuracy at P(defective) ≥ 0.5, and at the pipeline's
threshold accuracy, defective recall and specificity; mean ± std and min–max over seeds.
The four-class variant (p0/p33/p67/p100) trains the same stage-1 architecture with four
outputs (fp32 PyTorch, argmax accuracy), from scratch and initialised from the default
bundle's stage-1 checkpoint (all but the head).

Writes ``OUT/results.json`` (every run) and prints the table; ``--quick`` runs one tiny
configuration to check the plumbing and prints the projected full run time. The full
protocol is hours of a 2-core machine, so it can be run in parts: ``--merge A/results.json
B/results.json`` adds the runs of earlier invocations with the same schedule to the table
(a run of this invocation replaces an earlier one of the same mode, labels and seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ANCHORS = {
    "binary": "Deitsch et al. 2019: VGG-19 fine-tuned (GPU) 88.42 %, SVM 82.44 % average "
              "accuracy; 2023 lightweight CPU CNN ≈ +1.3 points over the earlier binary best",
    "four": "2023 lightweight CPU CNN: 83.5 % on the four probability classes",
}
TARGET_ACCURACY = 0.90
# electroluminescence has one polarity: cracks and dead areas are always dark
EL_AUGMENT = {"p_invert": 0.0}
FOUR_SAMPLING = "natural"  # the four-class variant samples at the data's class frequencies


def _recipe(epochs: int, samples: int, seed: int, threads: int):
    from training.recipe import ModelRecipe, TrainRecipe

    return TrainRecipe(seed=seed, threads=threads, target_recall=0.95,
                       train_monolithic=False, calibration_per_class=64,
                       timing_seconds=0.2,
                       stage1=ModelRecipe(epochs=epochs, samples_per_epoch=samples,
                                          lr=4e-3, label_smoothing=0.0,
                                          augment=EL_AUGMENT))


def bundle_id(bundle: Path) -> str:
    """The first 12 hex digits of the bundle manifest's sha256: which bundle a run used."""
    from edge.bundle import sha256_file

    return sha256_file(Path(bundle) / "manifest.json")[:12]


def subset_csv(train_dir: Path, fraction: float, seed: int, out: Path) -> Path:
    """A ``path,label`` CSV with ``fraction`` of each label of ``train_dir`` (seeded)."""
    from training.data import discover, stratified_split

    paths, labels = discover(train_dir)
    pick = stratified_split(labels, [fraction, 1.0], seed=seed)[0] if fraction < 1 else \
        np.arange(len(paths))
    names = {0: "normal", -2: "defective"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for i in pick:
            w.writerow([Path(paths[i]).relative_to(out.parent).as_posix()
                        if Path(paths[i]).is_relative_to(out.parent) else paths[i],
                        names[int(labels[i])]])
    return out


def run_binary(data: Path, runs: Path, *, mode: str, fraction: float, seed: int,
               bundle: Path, epochs: int, samples: int, threads: int) -> dict:
    """One ``semedge train`` run; returns the test metrics of the int8 stage 1, or the
    reason when the int8 drift gate refused the export (``refused``)."""
    from training.export.gate import ExportRefused
    from training.pipeline import EvalSet, train_bundle

    tag = f"{mode}-{int(round(fraction * 100))}pct-seed{seed}"
    labels = subset_csv(data / "train", fraction, seed, data / f"labels-{tag}.csv")
    kw = {"init": bundle} if mode == "init" else {"complete_from": bundle}
    t0 = time.perf_counter()
    try:
        outcome = train_bundle(data / "train", runs / tag,
                               recipe=_recipe(epochs, samples, seed, threads),
                               eval_sets=[EvalSet("test", data / "test")], labels_csv=labels,
                               name=f"elpv-{tag}", quiet=True, **kw)
    except ExportRefused as err:  # the int8 drift gate said no: a result, not a crash
        return {"mode": mode, "fraction": fraction, "seed": seed, "tag": tag,
                "refused": str(err), "seconds": time.perf_counter() - t0,
                "bundle": bundle_id(bundle)}
    seconds = time.perf_counter() - t0
    rep = outcome.report
    s1 = rep["evaluation"]["test"]["onnx-int8"]["stage1"]
    fit = rep["training"]["stage1"]
    return {"mode": mode, "fraction": fraction, "seed": seed, "tag": tag,
            "accuracy_at_0.5": s1["accuracy_at_0.5"], "accuracy": s1["accuracy"],
            "recall": s1["recall"], "specificity": s1["specificity"],
            "threshold": rep["stage1_threshold"]["threshold"],
            "val_recall": rep["stage1_threshold"]["recall"],
            "train_images": sum(rep["data"]["train"].values()),
            "train_seconds": fit["seconds"], "images_per_second": fit["images_per_second"],
            "seconds": seconds, "parameters": fit["parameters"], "bundle": bundle_id(bundle)}


def run_four(data: Path, *, mode: str, fraction: float, seed: int, bundle: Path,
             epochs: int, samples: int, threads: int) -> dict:
    """Four-class variant: the stage-1 architecture with four outputs (argmax).

    Sampled at the data's own class frequencies (``FOUR_SAMPLING``), not balanced: the
    measure is plain accuracy, as in the literature, and ⅓/⅔ cells are rare and
    ambiguous (balanced sampling gave 62.0 % on seed 0, docs/elpv.md)."""
    import torch

    from training.augment import AugmentConfig
    from training.data import load_dataset, stratified_split
    from training.models import ARCHITECTURES, TileNet, build_model
    from training.pipeline import init_checkpoints, load_checkpoint
    from training.train_loop import (
        FitConfig,
        fit,
        predict_logits,
        set_determinism,
    )

    set_determinism(seed, threads)
    classes = ("p0", "p33", "p67", "p100")

    def folder(split):
        paths = []
        labels = []
        for k, c in enumerate(classes):
            files = sorted((data / split / c).glob("*.png"))
            paths += [str(p) for p in files]
            labels += [k] * len(files)
        return paths, np.asarray(labels)

    paths, y = folder("train")
    if fraction < 1:
        keep = stratified_split(y, [fraction, 1.0], seed=seed)[0]
        paths, y = [paths[i] for i in keep], y[keep]
    tp, ty = folder("test")
    train = load_dataset(paths, y, dtype=np.float16, workers=threads)
    test = load_dataset(tp, ty, workers=threads)
    model = TileNet(replace(ARCHITECTURES["stage1"], outputs=4))
    fresh = build_model("stage1")
    state = {k: v for k, v in fresh.state_dict().items() if not k.startswith("head.")}
    if mode == "init":
        from edge.bundle import load_bundle

        src = load_checkpoint(init_checkpoints(load_bundle(bundle))["stage1"])[0]
        state = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    model.load_state_dict({**model.state_dict(), **state})
    t0 = time.perf_counter()
    res = fit(model, train.x, y, np.ones(len(y)), binary=False,
              config=FitConfig(epochs=epochs, samples_per_epoch=samples, seed=seed, lr=4e-3,
                                augment=AugmentConfig().with_overrides(EL_AUGMENT)))
    with torch.no_grad():
        pred = predict_logits(model, test.x).argmax(axis=1)
    return {"mode": mode, "fraction": fraction, "seed": seed,
            "accuracy": float((pred == ty).mean()), "sampling": FOUR_SAMPLING,
            "seconds": time.perf_counter() - t0,
            "images_per_second": res.images_per_second, "bundle": bundle_id(bundle)}


def run_key(row: dict) -> tuple:
    """What makes two runs the same run: mode, share of labels, seed."""
    return (row["mode"], round(float(row["fraction"]), 4), int(row["seed"]))


def merge_runs(current: dict[str, list[dict]], earlier: list[Path], *, epochs: int,
               samples: int) -> dict[str, list[dict]]:
    """``current`` (``{"binary": rows, "four": rows}``) plus the rows of ``earlier``
    results files trained on the same schedule; later files and ``current`` win on a
    clash. Each merged row names its file (``from``)."""
    merged: dict[str, dict[tuple, dict]] = {"binary": {}, "four": {}}
    for path in earlier:
        prior = json.loads(Path(path).read_text(encoding="utf-8"))
        settings = prior.get("settings", {})
        schedule = (settings.get("epochs"), settings.get("samples_per_epoch"))
        if schedule != (str(epochs), str(samples)):
            raise SystemExit(f"{path}: trained {schedule[0]} epochs × {schedule[1]} samples, "
                             f"not {epochs} × {samples}; runs of another schedule do not "
                             "belong in one table")
        for row in prior.get("four", []):
            if row.get("sampling") != FOUR_SAMPLING:
                raise SystemExit(f"{path}: its four-class runs were sampled "
                                 f"{row.get('sampling', 'balanced')}, not {FOUR_SAMPLING}")
        for kind in merged:
            for row in prior.get(kind, []):
                merged[kind][run_key(row)] = {**row, "from": str(path)}
    for kind in merged:
        for row in current.get(kind, []):
            merged[kind][run_key(row)] = row
    return {kind: sorted(rows.values(), key=run_key) for kind, rows in merged.items()}


def summarize(rows: list[dict], keys: list[str]) -> list[dict]:
    out = []
    for mode in ("scratch", "init"):
        for fraction in sorted({r["fraction"] for r in rows}, reverse=True):
            runs = [r for r in rows if r["mode"] == mode and r["fraction"] == fraction]
            group = [r for r in runs if "refused" not in r]
            if not group:
                continue
            row = {"mode": mode, "fraction": fraction, "seeds": len(group),
                   "refused": len(runs) - len(group)}
            for k in keys:
                v = np.asarray([g[k] for g in group], dtype=np.float64)
                row[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1
                          else 0.0, "min": float(v.min()), "max": float(v.max())}
            out.append(row)
    return out


def print_table(title: str, summary: list[dict], keys: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'init':8} {'labels':>6} " + " ".join(f"{k:>30}" for k in keys))
    for row in summary:
        cells = [f"{100 * row[k]['mean']:6.2f} ± {100 * row[k]['std']:4.2f} "
                 f"[{100 * row[k]['min']:5.1f}–{100 * row[k]['max']:5.1f}]"[:30]
                 for k in keys]
        refused = f"  ({row['refused']} run(s) refused by the int8 gate)" if row.get("refused") else ""
        print(f"{row['mode']:8} {int(row['fraction'] * 100):>5}% " +
              " ".join(f"{c:>30}" for c in cells) + refused)


def main(argv: list[str] | None = None) -> int:
    from edge.bundle import default_bundle_path
    from training.datasets.elpv import write_elpv

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "elpv")
    p.add_argument("--bundle", type=Path, default=default_bundle_path(),
                   help="bundle to fine-tune from (--init) and to take stage 2 from")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    p.add_argument("--modes", nargs="+", default=["scratch", "init"],
                   choices=["scratch", "init"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--samples-per-epoch", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-four", action="store_true", help="skip the four-class variant")
    p.add_argument("--no-binary", action="store_true", help="skip the binary runs")
    p.add_argument("--merge", type=Path, nargs="+", default=[], metavar="RESULTS_JSON",
                   help="results.json files of earlier parts of the protocol (same schedule) "
                        "to include in the table")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: the table of the --merge files")
    p.add_argument("--quick", action="store_true",
                   help="one tiny run (10 %% labels, seed 0, 2 epochs × 256 samples) and "
                        "the projected time of the full benchmark")
    args = p.parse_args(argv)
    if args.table_only:
        if not args.merge:
            p.error("--table-only needs --merge")
        args.modes, args.no_four = [], True
    if args.quick:  # its projection needs a binary run
        args.seeds, args.fractions, args.modes = [0], [0.1], args.modes[:1]
        args.no_binary = False
        full_epochs, full_samples = args.epochs, args.samples_per_epoch
        args.epochs, args.samples_per_epoch = 2, 256
    data = args.out / "data"
    for classes in ("binary", "four") if not args.table_only else ():
        if not (data / classes / "dataset.json").is_file():
            write_elpv(data / classes, classes=classes, seed=0)
    started = time.perf_counter()
    binary = []
    for mode in args.modes if not args.no_binary else ():
        for fraction in args.fractions:
            for seed in args.seeds:
                row = run_binary(data / "binary", args.out / "runs", mode=mode,
                                 fraction=fraction, seed=seed, bundle=args.bundle,
                                 epochs=args.epochs, samples=args.samples_per_epoch,
                                 threads=args.threads)
                print(json.dumps(row), flush=True)
                binary.append(row)
    four = []
    if not args.no_four:
        for mode in args.modes:
            for fraction in args.fractions:
                for seed in args.seeds:
                    row = run_four(data / "four", mode=mode, fraction=fraction, seed=seed,
                                   bundle=args.bundle, epochs=args.epochs,
                                   samples=args.samples_per_epoch, threads=args.threads)
                    print(json.dumps(row), flush=True)
                    four.append(row)
    keys = ["accuracy_at_0.5", "accuracy", "recall", "specificity"]
    if args.merge:
        merged = merge_runs({"binary": binary, "four": four}, args.merge,
                            epochs=args.epochs, samples=args.samples_per_epoch)
        binary, four = merged["binary"], merged["four"]
    result = {"binary": binary, "four": four,
              "binary_summary": summarize(binary, keys),
              "four_summary": summarize(four, ["accuracy"]) if four else [],
              "anchors": ANCHORS, "target_binary_accuracy": TARGET_ACCURACY,
              "settings": {k: str(v) for k, v in vars(args).items()},
              "seconds": time.perf_counter() - started}
    if args.quick:
        per_sample = (binary[0]["train_seconds"] / (args.epochs * args.samples_per_epoch))
        overhead = binary[0]["seconds"] - binary[0]["train_seconds"]
        n_runs = 2 * 3 * 3
        full_train = per_sample * full_epochs * full_samples
        four_s = (four[0]["seconds"] / (args.epochs * args.samples_per_epoch)
                  * full_epochs * full_samples) if four else 0.0
        result["projection"] = {
            "seconds_per_binary_run": full_train + overhead,
            "seconds_per_four_run": four_s,
            "runs": n_runs, "total_hours": n_runs * (full_train + overhead + four_s) / 3600}
        print(json.dumps(result["projection"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print_table("ELPV binary (int8 stage 1, 656 test cells); anchors: " + ANCHORS["binary"],
                result["binary_summary"], keys)
    if four:
        print_table("ELPV four classes (fp32, argmax); anchor: " + ANCHORS["four"],
                    result["four_summary"], ["accuracy"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
