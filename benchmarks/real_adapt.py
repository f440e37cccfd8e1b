"""Adaptation on real SEM images: fine-tuning the shipped bundle against training from
scratch, cross-validated on the real dev crops (``docs/real-sem.md``, "Adapting to your
own images").

    python benchmarks/real_adapt.py --out runs/adapt [--workers 2]

The dev crops (``../shared/data/sem-real-dev``, read at run time; its README allows
cross-validated adaptation experiments, and every bundle trained here is deleted once
scored) are split into 5 folds stratified by class and **grouped**: many crops are cut
from the same published figure, so images whose perceptual hashes (DCT hash, 63 bits)
differ in at most ``--group-distance`` bits are joined (transitively) into one group and
a group never straddles two folds. Exact duplicates are resolved first as
``semedge train --drop-duplicates`` does.

For {fine-tuned from the shipped bundle (``--init``), from scratch} × {25 %, 50 %,
100 % of the training folds' labels} × seeds {0, 1, 2} × 5 folds, the real training
pipeline (``train_bundle``: the plain command's data-scaled schedule with early stopping,
validation split, threshold for 95 % validation recall, ONNX int8 export) trains on the
four training folds and the int8 bundle (``x86-cpu``) is scored on the fifth. The same
fine-tuning at 100 % also runs on ungrouped folds (stratified only), to show how much a
split that ignores the groups overstates. The int8 drift gate is recorded per run, not
enforced (a refused bundle is scored too).

A run takes 4–7 minutes of one core (2026-12-07; from scratch the longest), so the whole
protocol is ~4 hours of a 2-core machine; it can be run in parts (``--seeds 0``,
``--shares 1``, ``--runs finetune``), and runs already in ``OUT/results.json`` are kept.
``--budget 0.25`` scales the schedule's samples (and its bounds) to a quarter, ~1 minute
a run.

Per run: stage-1 recall and specificity at the bundle's threshold, mapped macro-F1 (stage
2 end to end over the folders with examples: ``ler``, ``open``, ``short``, ``crack``,
``malformed_via``), and 7-way accuracy over every image (``other_defect`` counts as right
when answered ``unknown``). The synthetic-only shipped bundle is scored on every fold too.
Writes ``OUT/results.json`` (every run, appended as runs finish, so an interrupted
benchmark resumes where it stopped), ``OUT/summary.json``, ``OUT/adapt.png`` and
``OUT/groups.png`` (which crops were joined; it shows dev images, so it stays in ``OUT``).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEV_SET = ROOT.parent / "shared" / "data" / "sem-real-dev"
FOLDS = 5
SHARES = (0.25, 0.5, 1.0)
SEEDS = (0, 1, 2)
MODES = ("finetune", "scratch")
RUNS = (*MODES, "ungrouped")  # what --runs can pick
GROUP_DISTANCE = 12  # bits of 63: same-figure crops join at 6-12, random pairs differ ~31


@dataclass(frozen=True)
class Image:
    """One dev crop: its path, folder label and near-duplicate group."""

    path: str
    label: str
    group: int


@dataclass(frozen=True)
class Job:
    """One training run: ``mode`` from the bundle or from scratch on ``share`` of the
    labels of every fold but ``fold`` (``split``: ``grouped`` or ``ungrouped`` folds)."""

    mode: str
    split: str
    fold: int
    share: float
    seed: int
    budget: float = 1.0  # share of the data-scaled schedule's samples

    @property
    def tag(self) -> str:
        """A folder-safe name of the run."""
        tag = f"{self.mode}-{self.split}-f{self.fold}-{round(self.share * 100)}pct-s{self.seed}"
        return tag if self.budget == 1.0 else f"{tag}-b{self.budget:g}"


def perceptual_hash(path: str) -> np.ndarray:
    """63-bit DCT hash: the signs of the 8×8 lowest frequencies (DC left out) of the image
    reduced to 32×32, against their median."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    small = cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    return low > np.median(low)


def near_duplicate_groups(paths: list[str], max_distance: int = GROUP_DISTANCE) -> np.ndarray:
    """Group id per path: hashes at most ``max_distance`` bits apart share a group
    (connected components of that graph)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    hashes = np.stack([perceptual_hash(p) for p in paths])
    distance = (hashes[:, None, :] != hashes[None, :, :]).sum(-1)
    _, groups = connected_components(csr_matrix(distance <= max_distance), directed=False)
    return groups


def load_images(root: Path, max_distance: int) -> tuple[list[Image], dict]:
    """The dev crops after the duplicate policy of ``--drop-duplicates``, with their
    groups; and what the policy and the grouping decided."""
    from training.ingest import scan
    from training.labels import LABEL_NAMES

    report = scan(root, drop_duplicates=True)
    report.raise_if_errors()
    groups = near_duplicate_groups(report.paths, max_distance)
    images = [Image(p, LABEL_NAMES[y], int(g))
              for p, y, g in zip(report.paths, report.labels, groups)]
    sizes = np.bincount(groups)
    info = {"images": len(images), "duplicate_decisions": report.dropped,
            "groups": int(len(sizes)), "images_in_shared_groups": int(sizes[sizes > 1].sum()),
            "largest_group": int(sizes.max()), "group_distance": max_distance}
    return images, info


def assign_folds(images: list[Image], *, grouped: bool, seed: int = 0) -> np.ndarray:
    """Fold (0–4) per image, stratified by label; grouped folds keep each group whole."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.array([im.label for im in images])
    folds = np.empty(len(images), np.int64)
    if grouped:
        splitter = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed)
        parts = splitter.split(y, y, groups=np.array([im.group for im in images]))
    else:
        parts = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(y, y)
    for k, (_, test) in enumerate(parts):
        folds[test] = k
    return folds


def fold_folders(images: list[Image], folds: np.ndarray, out: Path) -> list[Path]:
    """One folder per fold, ``<label>/<file>`` symbolic links to its crops (what
    ``semedge eval`` reads)."""
    folders = []
    for k in range(FOLDS):
        folder = out / str(k)
        for im, f in zip(images, folds):
            if f == k:
                link = folder / im.label / Path(im.path).name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(Path(im.path).resolve())
        folders.append(folder)
    return folders


def training_csv(images: list[Image], folds: np.ndarray, job: Job, out: Path) -> Path:
    """``path,label`` rows of ``job.share`` of each label of the training folds (seeded)."""
    from training.data import stratified_split
    from training.labels import LABELS

    train = [im for im, f in zip(images, folds) if f != job.fold]
    labels = np.array([LABELS[im.label] for im in train])
    pick = (stratified_split(labels, [job.share, 1.0], seed=job.seed)[0]
            if job.share < 1 else np.arange(len(train)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([str(Path(train[i].path).resolve()), train[i].label] for i in pick)
    return out


def scores(card) -> dict:
    """Stage-1 recall / specificity, mapped macro-F1 (stage 2 end to end), 7-way
    accuracy (``other_defect`` right when answered ``unknown``) and the ``unknown``
    shares of ``other_defect`` and of the taxonomy defects, of a scorecard."""
    from edge.classes import UNKNOWN

    ok = [p for p in card.predictions if p.ok]
    right = sum(p.label == p.truth if p.in_taxonomy else p.label == UNKNOWN for p in ok)
    return {"recall": card.stage1["recall"], "specificity": card.stage1["specificity"],
            "auc": card.stage1["ranking"]["roc_auc"],
            "macro_f1": card.stage2["end_to_end"]["macro_f1"],
            "accuracy7": right / len(ok), "images": len(ok),
            "unknown_share_other": card.out_of_taxonomy["unknown_share"],
            "unknown_share_known": card.stage2["end_to_end"]["unknown_share"]}


def score_bundle(bundle: Path | None, folder: Path) -> dict:
    """``scores`` of a bundle (``None``: the shipped one), int8 on ``x86-cpu``."""
    import edge
    from edge.evaluation import evaluate

    return scores(evaluate(edge.load(bundle, target="x86-cpu"), folder))


def run_job(job: Job, images: list[Image], folds: np.ndarray, fold_dir: Path, out: Path,
            threads: int) -> dict:
    """Train one bundle as ``semedge train --labels CSV [--init default] --drop-duplicates``
    does (data-scaled schedule, no monolithic baseline), score it on the held-out fold,
    delete it.

    The int8 drift gate is recorded, not enforced, so that a refused export is still
    scored: ``gate`` says what the product's gate decides on the held-out fold.
    ``job.budget`` scales the schedule's samples per image and its bounds."""
    from training import schedule

    scaled = {m: tuple(int(v * job.budget) for v in bounds)
              for m, bounds in schedule.SAMPLES_PER_IMAGE.items()}
    with mock.patch.dict(schedule.SAMPLES_PER_IMAGE, scaled):
        return _train_and_score(job, images, folds, fold_dir, out, threads)


def _train_and_score(job: Job, images: list[Image], folds: np.ndarray, fold_dir: Path,
                     out: Path, threads: int) -> dict:
    """The body of :func:`run_job`, inside its schedule."""
    from edge.bundle import default_bundle_path
    from training.export.gate import ExportRefused, changed_answers, check_drift
    from training.pipeline import EvalSet, train_bundle
    from training.recipe import TrainRecipe

    work = out / "work" / job.tag
    shutil.rmtree(work, ignore_errors=True)  # an interrupted run's leftovers
    labels = training_csv(images, folds, job, work / "labels.csv")
    recipe = TrainRecipe(seed=job.seed, threads=threads, train_monolithic=False,
                         max_recall_drop=1.0, max_macro_f1_drop=1.0)
    init = {"init": default_bundle_path()} if job.mode == "finetune" else {}
    row = {**job.__dict__, "tag": job.tag}  # budget included
    t0 = time.perf_counter()
    outcome = train_bundle(work, work / "bundle", recipe=recipe, labels_csv=labels,
                           eval_sets=[EvalSet("fold", fold_dir)], drop_duplicates=True,
                           scale_to_data=True, quiet=True, name=job.tag, **init)
    row["train_seconds"] = time.perf_counter() - t0
    rep = outcome.report
    row["best_epoch"] = {m: f["best_epoch"] for m, f in rep["training"].items()}
    fold_eval = rep["evaluation"]["fold"]
    try:
        check_drift(fold_eval["onnx"], fold_eval["onnx-int8"])
        row["gate"] = "passed"
    except ExportRefused:
        row["gate"] = "refused"
    row["drift"] = {k: d["drop"] for k, d in rep["drift"].items()}
    row["stage2_changed_answers"] = changed_answers(fold_eval["onnx-int8"])
    row.update(score_bundle(work / "bundle", fold_dir))
    row["seconds"] = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)  # trained on dev crops: never kept
    return row


METRICS = ("accuracy7", "macro_f1", "recall", "specificity", "auc")


def summarize(rows: list[dict], baseline: dict[str, list[dict]]) -> list[dict]:
    """Per (budget, split, mode, share): each metric's 5-fold mean per seed, their mean and
    std over seeds (the seed spread), the per-fold means over seeds, and the shipped
    bundle's 5-fold mean on the same folds."""
    out = []
    keys = sorted({(r.get("budget", 1.0), r["split"], r["mode"], r["share"]) for r in rows})
    for key in keys:
        budget, split, mode, share = key
        runs = [r for r in rows
                if (r.get("budget", 1.0), r["split"], r["mode"], r["share"]) == key]
        entry: dict = {"budget": budget, "split": split, "mode": mode, "share": share,
                       "runs": len(runs), "seeds": sorted({r["seed"] for r in runs}),
                       "gate_refused": sum(r["gate"] == "refused" for r in runs)}
        for m in METRICS:
            per_seed = [np.mean([r[m] for r in runs if r["seed"] == s])
                        for s in sorted({r["seed"] for r in runs})]
            per_fold = [float(np.mean([r[m] for r in runs if r["fold"] == k]))
                        for k in sorted({r["fold"] for r in runs})]
            entry[m] = {"mean": float(np.mean(per_seed)), "seed_std": float(np.std(per_seed)),
                        "fold_std": float(np.std(per_fold)), "per_fold": per_fold,
                        "shipped": float(np.mean([b[m] for b in baseline[split]]))}
        out.append(entry)
    return out


def print_table(summary: list[dict]) -> None:
    """The summary as a Markdown table (mean ± seed spread; fold spread in brackets)."""
    print("| schedule | split | init | labels | runs | 7-way accuracy | mapped macro-F1 |"
          " stage-1 recall | stage-1 specificity | stage-1 AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e in summary:
        cells = [f"{e[m]['mean']:.3f} ± {e[m]['seed_std']:.3f} [{e[m]['fold_std']:.3f}]"
                 for m in METRICS]
        print(f"| ×{e['budget']:g} | {e['split']} | {e['mode']} | {round(e['share'] * 100)} % | "
              f"{e['runs']} | "
              + " | ".join(cells) + " |")
    if summary:
        shipped = " · ".join(f"{m} {summary[0][m]['shipped']:.3f}" for m in METRICS)
        print(f"\nshipped synthetic-only bundle on the {summary[0]['split']} folds: {shipped}")


def plot(summary: list[dict], path: Path) -> None:
    """7-way accuracy, mapped macro-F1 and stage-1 specificity against the label share,
    fine-tuned and from scratch (grouped folds; bars: seed spread), the shipped bundle
    as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    grouped = [e for e in summary if e["split"] == "grouped"]
    lines = sorted({(e["mode"], e["budget"]) for e in grouped})
    for ax, m in zip(axes, ("accuracy7", "macro_f1", "specificity")):
        for mode, budget in lines:
            es = sorted((e for e in grouped if (e["mode"], e["budget"]) == (mode, budget)),
                        key=lambda e: e["share"])
            ax.errorbar([e["share"] * 100 for e in es], [e[m]["mean"] for e in es],
                        yerr=[e[m]["seed_std"] for e in es], marker="o", capsize=3,
                        label=f"{mode}, schedule ×{budget:g}")
        if grouped:
            ax.axhline(grouped[0][m]["shipped"], ls="--", c="grey", label="shipped")
        ax.set_xlabel("labels of the training folds (%)")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("real SEM dev crops, grouped 5-fold: fine-tuned vs from scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def groups_sheet(images: list[Image], path: Path, rows: int = 10, per_row: int = 8) -> None:
    """Contact sheet of the largest near-duplicate groups, one group per row."""
    import cv2

    sizes = np.bincount([im.group for im in images])
    sheet = []
    for g in np.argsort(-sizes, kind="stable")[:rows]:
        members = [im for im in images if im.group == g][:per_row]
        thumbs = []
        for im in members:
            t = cv2.resize(cv2.imread(im.path, cv2.IMREAD_GRAYSCALE), (112, 112))
            cv2.putText(t, im.label[:8], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
            thumbs.append(t)
        thumbs += [np.zeros((112, 112), np.uint8)] * (per_row - len(thumbs))
        sheet.append(np.hstack(thumbs))
    cv2.imwrite(str(path), np.vstack(sheet))


def plan(seeds: tuple[int, ...], budget: float = 1.0, shares: tuple[float, ...] = SHARES,
         quick: bool = False, runs: tuple[str, ...] = RUNS) -> list[Job]:
    """Every run of the protocol for ``seeds`` and label ``shares``, seed by seed
    (``quick``: two runs, to check the plumbing); ``runs`` picks among fine-tuned and
    from-scratch on grouped folds and fine-tuned on ungrouped folds (at 100 % only)."""
    if quick:
        return [Job("finetune", "grouped", 0, 0.25, 0, budget),
                Job("scratch", "grouped", 0, 0.25, 0, budget)]
    jobs = []
    for seed in seeds:  # the headline comparisons first: a partial run still answers them
        for share in sorted(shares, reverse=True):
            jobs += [Job(mode, "grouped", k, share, seed, budget)
                     for mode in MODES if mode in runs for k in range(FOLDS)]
            if share == 1.0 and "ungrouped" in runs:
                jobs += [Job("finetune", "ungrouped", k, 1.0, seed, budget)
                         for k in range(FOLDS)]
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--data", type=Path, default=DEV_SET)
    parser.add_argument("--workers", type=int, default=2, help="runs side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--group-distance", type=int, default=GROUP_DISTANCE)
    parser.add_argument("--budget", type=float, default=1.0,
                        help="share of the default schedule's samples (default 1: the plain "
                             "command's schedule)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="training seeds (default 0 1 2; runs already in OUT are kept)")
    parser.add_argument("--shares", type=float, nargs="+", default=list(SHARES),
                        help="shares of the training folds' labels (default 0.25 0.5 1)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS),
                        help="fine-tuned and from scratch on grouped folds, fine-tuned on "
                             "ungrouped folds (default all three)")
    parser.add_argument("--quick", action="store_true", help="two runs: check the plumbing")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"real_adapt: {args.data}: no such folder (the real dev crops)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    images, info = load_images(args.data, args.group_distance)
    print(f"{info['images']} crops, {info['groups']} groups "
          f"({info['images_in_shared_groups']} crops share one; largest {info['largest_group']}); "
          f"{len(info['duplicate_decisions'])} duplicate decisions", flush=True)
    groups_sheet(images, args.out / "groups.png")
    folds = {s: assign_folds(images, grouped=s == "grouped") for s in ("grouped", "ungrouped")}
    dirs = {s: fold_folders(images, folds[s], args.out / "folds" / s) for s in folds}
    baseline_path = args.out / "baseline.json"  # the shipped bundle on every fold
    if baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
    else:
        baseline = {s: [score_bundle(None, d) for d in dirs[s]] for s in dirs}
        baseline_path.write_text(json.dumps(baseline, indent=1))
    results_path = args.out / "results.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["tag"] for r in rows}
    todo = [j for j in plan(tuple(args.seeds), args.budget, tuple(args.shares), args.quick,
                            tuple(args.runs)) if j.tag not in done]
    print(f"{len(todo)} runs to go ({len(done)} already in {results_path})", flush=True)
    t0 = time.perf_counter()
    # spawn, not fork: the scoring above started the kernels' OpenMP threads, and a forked
    # child of an OpenMP process hangs in its first parallel region
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, j, images, folds[j.split], dirs[j.split][j.fold],
                               args.out, args.threads) for j in todo]
        failed = [tag for tag in (_collect(fut, job, n, len(todo), rows, results_path, t0)
                                  for n, (job, fut) in enumerate(zip(todo, futures), 1))
                  if tag is not None]
    summary = summarize(rows, baseline)
    (args.out / "summary.json").write_text(json.dumps(
        {"data": info, "baseline": baseline, "summary": summary}, indent=1))
    print_table(summary)
    plot(summary, args.out / "adapt.png")
    if failed:
        print(f"real_adapt: {len(failed)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _collect(fut, job: Job, n: int, total: int, rows: list[dict], results_path: Path,
             t0: float) -> str | None:
    """Wait for one run: append its row to ``results_path`` and print it, or print why
    it failed and return its tag (the other runs go on)."""
    try:
        row = fut.result()
    except Exception as err:  # noqa: BLE001 — one run's failure must not lose the others
        print(f"[{n}/{total}] {job.tag} failed: {type(err).__name__}: {err}", flush=True)
        return job.tag
    rows.append(row)
    results_path.write_text(json.dumps(rows, indent=1))
    shown = {m: round(row[m], 3) for m in METRICS if m in row}
    left = (time.perf_counter() - t0) / n * (total - n)
    print(f"[{n}/{total}] {row['tag']} {row['seconds']:.0f} s, gate {row['gate']},"
          f" {shown}; ~{left / 60:.0f} min left", flush=True)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
