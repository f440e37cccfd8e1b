"""``semedge train`` end to end: data → three models → thresholds and calibration →
ONNX fp32 → ONNX int8 → evaluation of every format → drift gate → report → manifest.

The steps, in order (``docs/training.md`` has the reasoning):

1. discover the ImageFolder; stratified split into train / val (and an internal test
   split when no ``--eval`` set is given); normalize every image once with
   ``edge.preprocess.tile`` into memory (train: float16, val/test/calibration: float32);
2. train stage 1 (normal vs defective: the six classes and ``other_defect``; half of
   every epoch normal, the other half spread evenly over the defect folders), stage 2
   (six classes, balanced; ``other_defect`` unused) and the monolithic baseline (seven
   classes, balanced);
3. on val: the stage-1 threshold for the target recall (+ Clopper–Pearson bound),
   stage-2 temperature (NLL), ECE before/after, the ``unknown`` threshold;
4. export ONNX fp32; quantize to int8 on a class-balanced calibration set of training
   tiles (edge preprocessing output, float32, no augmentation);
5. evaluate PyTorch fp32, ONNX fp32 and ONNX int8 on each held-out set; refuse the
   export if int8 drifts beyond budget on the first (gate) set;
6. time each ONNX model, compare the cascade with the monolithic model at defect rates
   2 / 10 / 50 %, write ``report/`` and ``manifest.json``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.visibility import read_visibility
from training.cell_masks import read_masks
from training.data import (
    Dataset,
    DatasetError,
    balanced_subset,
    load_dataset,
    recipe_of,
    stratified_split,
)
from training.distributed import Distributed
from training.recipe import ModelRecipe, TrainRecipe
from training.thresholds import ThresholdChoice, select_threshold

__all__ = ["TARGETS", "EvalSet", "TrainOutcome", "train_bundle"]

MODELS = ("stage1", "stage2", "monolithic")
TARGETS = {
    "default": {"stage1_recall": 0.995, "stage1_specificity": 0.97, "stage2_macro_f1": 0.95},
    "shifted": {"stage1_recall": 0.97, "stage1_specificity": 0.90, "stage2_macro_f1": 0.85},
}
"""Acceptance targets; an eval set named ``shifted*`` is held to ``shifted``, any other to
``default``."""
INT8_SIZE_BUDGET = 1_500_000  # bytes, stage1.int8 + stage2.int8 (the cascade's size rule)


@dataclass(frozen=True)
class EvalSet:
    """A held-out ImageFolder evaluated in every format."""

    name: str
    path: Path


@dataclass
class TrainOutcome:
    """What ``train_bundle`` produced."""

    out_dir: Path
    report: dict
    manifest: Path | None
    refused: str | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)


def _fit_config(m: ModelRecipe, seed: int, recipe: TrainRecipe):
    from training.train_loop import FitConfig

    return FitConfig(epochs=m.epochs, samples_per_epoch=m.samples_per_epoch,
                     batch_size=m.batch_size, lr=m.lr, weight_decay=m.weight_decay,
                     label_smoothing=m.label_smoothing, dense_weight=m.dense_weight,
                     crop=m.crop, crop_share=m.crop_share,
                     outlier_weight=m.outlier_weight, patience=m.patience, seed=seed,
                     augment=recipe.augment.with_overrides(m.augment))


def save_checkpoint(model, name: str, path: Path, recipe: TrainRecipe) -> Path:
    """A ``weights_only``-loadable checkpoint: tensors, strings and numbers only."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": name, "size": recipe.size, "low": recipe.low, "high": recipe.high,
                "state_dict": {k: v.detach().cpu().clone() for k, v in
                               model.state_dict().items()}}, path)
    return path


def load_checkpoint(path: str | os.PathLike):
    """``(model, checkpoint dict)`` from ``save_checkpoint``, with ``weights_only=True``."""
    import torch

    from training.models import TRAINING_ONLY, build_model

    ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a semedge checkpoint (no 'model'/'state_dict' keys)")
    head = ckpt["state_dict"].get("head.weight")
    model = build_model(ckpt["model"], None if head is None else int(head.shape[0]))
    # older bundles lack the training-only heads that were added later (never exported)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    wrong = list(unexpected) + [k for k in missing if not k.startswith(TRAINING_ONLY)]
    if wrong:
        raise ValueError(f"{path}: checkpoint does not fit model {ckpt['model']!r} "
                         f"(mismatched keys: {', '.join(sorted(wrong)[:6])})")
    model.eval()
    return model, ckpt


def _aux_targets(labels: np.ndarray) -> np.ndarray | None:
    """Stage 1's aux-head targets: the label behind the binary one (``CLASSES`` index,
    ``other_defect`` → 7, a bare ``defective`` → ignored); ``None`` when the data has
    fewer than two defect labels (a binary layout: nothing to learn beyond the target)."""
    from training.data import OTHER_DEFECT

    aux = np.where(labels == OTHER_DEFECT, 7, labels)
    aux = np.where(aux < 0, -100, aux)
    if len(np.unique(aux[aux > 0])) < 2:
        return None
    return aux.astype(np.int64)


def _run_fits(jobs: dict, *, concurrent: bool, threads: int) -> dict:
    """Run the fit calls ``jobs`` (model name → callable), in order; with ``concurrent``,
    stage 1 runs in a thread of its own beside the others, each with half the threads.

    Stage 1's small convolutions barely use a second core (measured here: 1.2× from 1 to
    2 threads, stage 2 1.7×), so on 2 cores stage 1 on one core beside stage 2 and the
    monolithic model on the other trains far more samples in the same wall time. Each
    model's numbers are deterministic for a seed either way (one sampler and augmentation
    generator per model), but differ between the two modes (reduction order).
    """
    import threading

    import torch

    if not concurrent or "stage1" not in jobs or len(jobs) < 2:
        return {name: job() for name, job in jobs.items()}
    fits: dict = {}
    failure: list[BaseException] = []

    def stage1() -> None:
        try:
            torch.set_num_threads(max(1, threads // 2))
            fits["stage1"] = jobs["stage1"]()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(err)

    torch.set_num_threads(max(1, threads // 2))
    worker = threading.Thread(target=stage1, name="stage1-training", daemon=True)
    worker.start()
    try:
        for name, job in jobs.items():
            if name != "stage1":
                fits[name] = job()
    finally:
        worker.join()
        torch.set_num_threads(threads)
    if failure:
        raise failure[0]
    return {name: fits[name] for name in jobs}


def _dense_targets(model, paths: list[str], labels: np.ndarray, masks: dict[str, dict],
                   size: int, *, crop: bool = False) -> np.ndarray | None:
    """Cell maps over ``model``'s last feature grid (``training.cell_masks``), for its
    training-only dense head or for ``crop`` training; ``None`` when it needs none or no
    training image has a known mask."""
    import torch

    from training.cell_masks import UNKNOWN, cell_targets

    if (getattr(model, "dense", None) is None and not crop) or not masks:
        return None
    # (the probe runs in training mode, as the shipped bundle was built: it counts one
    # BatchNorm batch, whose running statistics thousands of training steps overwrite)
    with torch.no_grad():
        grid = int(model.features(torch.zeros(1, 1, size, size)).shape[-1])
    cells = cell_targets(paths, labels, masks, size=size, grid=grid)
    if not (cells[labels != 0] != UNKNOWN).any():
        return None
    return cells


UNMASKED_SHARE_FOR_CROPS = 0.01
"""Crop training needs to know where the defects are: up to this share of the defect
tiles may lack it (they then train in the whole-tile steps only)."""


def _crop_or_whole_tiles(cfg, cells: np.ndarray | None, labels: np.ndarray, name: str,
                         console):
    """``cfg`` as it is, or without crop training when more than
    :data:`UNMASKED_SHARE_FOR_CROPS` of the defect tiles have no known place (real
    images labelled as a whole; a defect drawn with an empty mask)."""
    from training.cell_masks import UNKNOWN

    if not (cfg.crop and cfg.crop_share > 0):
        return cfg
    defects = int((np.asarray(labels) != 0).sum())
    unknown = defects if cells is None else int((cells == UNKNOWN).any(axis=(1, 2)).sum())
    if unknown <= UNMASKED_SHARE_FOR_CROPS * defects:
        if unknown:
            console.log(f"{name}: {unknown} defect tiles without a known place train in "
                        "the whole-tile steps only")
        return cfg
    console.log(f"{name}: whole tiles instead of {cfg.crop}-px crops ({unknown} of "
                f"{defects} defect tiles have no mask: a window could cut a defect off)")
    return replace(cfg, crop=0, crop_share=0.0)


def choose_stage1_threshold(scores: np.ndarray, defective: np.ndarray,
                            visibility: np.ndarray, r: TrainRecipe
                            ) -> tuple[ThresholdChoice, dict]:
    """The stage-1 threshold for ``r.target_recall`` on the visible (and unrated) val
    defects, and its record: the choice, what it was chosen on, val recall per band."""
    from edge.visibility import VISIBLE, counts_as_target, recall_by_band

    target = counts_as_target(defective, visibility)
    choice = select_threshold(scores[target], defective[target], r.target_recall,
                              confidence=r.recall_confidence)
    left_out = int((defective & ~target).sum())
    info = {**choice._asdict(),
            "chosen_on": (f"visible defects (k >= {VISIBLE:g}) and unrated ones; "
                          f"{left_out} sub-visible or marginal left out"),
            "val_recall_by_visibility": recall_by_band(defective, scores >= choice.threshold,
                                                       visibility)}
    return choice, info


def _summary(m: dict) -> dict:
    """The manifest's compact per-format, per-set metrics."""
    out = {
        "tiles": m["tiles"],
        "stage1_recall": m["stage1"]["recall"],
        "stage1_precision": m["stage1"]["precision"],
        "stage1_specificity": m["stage1"]["specificity"],
        "stage2_macro_f1": m.get("stage2", {}).get("macro_f1"),
        "stage2_accuracy": m.get("stage2", {}).get("accuracy"),
        "ece": m.get("stage2", {}).get("ece"),
        "cascade_accuracy": m["cascade"]["accuracy"],
    }
    if "monolithic" in m:
        out["monolithic_accuracy"] = m["monolithic"]["accuracy"]
        out["monolithic_macro_f1"] = m["monolithic"]["macro_f1"]
    if "agreement" in m:
        out["agreement_cascade"] = m["agreement"]["cascade"]
        out["agreement_stage1"] = m["agreement"]["stage1"]
        out["agreement_stage2"] = m["agreement"].get("stage2")
    return out


def _targets_for(name: str) -> tuple[str, dict]:
    key = "shifted" if name.startswith("shifted") else "default"
    return key, TARGETS[key]


def _check_targets(name: str, m: dict) -> dict:
    key, t = _targets_for(name)
    got = {"stage1_recall": m["stage1"]["recall"],
           "stage1_specificity": m["stage1"]["specificity"],
           "stage2_macro_f1": m.get("stage2", {}).get("macro_f1")}
    rows = {k: {"target": t[k], "value": got[k],
                "pass": bool(got[k] is not None and got[k] == got[k] and got[k] >= t[k])}
            for k in t if "stage2" in m or not k.startswith("stage2")}
    return {"targets": key, "checks": rows, "pass": all(r["pass"] for r in rows.values())}


def init_checkpoints(bundle) -> dict[str, Path]:
    """The ``weights_only`` checkpoints a bundle ships (``manifest["checkpoints"]``, or
    ``checkpoints/<stage>.pt`` in bundles that do not list them), hash-checked."""
    from edge.bundle import BundleError, sha256_file

    listed = bundle.manifest.get("checkpoints")
    out: dict[str, Path] = {}
    if isinstance(listed, dict):
        for stage, entry in listed.items():
            path = bundle.root / entry["path"]
            if not path.is_file():
                raise BundleError(path, f"missing: listed as the {stage} checkpoint")
            if sha256_file(path) != entry["sha256"]:
                raise BundleError(path, "sha256 mismatch with manifest.checkpoints")
            out[stage] = path
    else:
        for stage in MODELS:
            path = bundle.root / "checkpoints" / f"{stage}.pt"
            if path.is_file():
                out[stage] = path
    return out


def _scan_or_raise(path, *, labels_csv=None, size: int, workers: int, console, what: str,
                   drop_duplicates: bool = False):
    from training.ingest import scan

    found = scan(path, labels_csv=labels_csv, size=size, workers=workers,
                 drop_duplicates=drop_duplicates)
    if not found.ok:
        raise DatasetError(f"{what}:\n" + "\n".join(found.lines()))
    for line in found.lines():
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    return found


def _device_provenance(dist: Distributed) -> dict:
    """Where the models trained: device kind (and GPU name), world size, backend."""
    import torch

    name = torch.cuda.get_device_name(dist.device) if dist.kind == "cuda" else None
    return {"device": dist.kind, "device_name": name, "world_size": dist.world_size,
            "distributed_backend": dist.backend}


def _portable_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies inside it (a manifest
    should not carry the builder's home folder), else as given."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class _Request:
    """What ``train_bundle`` was asked to do (its arguments, resolved)."""

    data_dir: Path
    out_dir: Path
    recipe: TrainRecipe
    eval_sets: tuple[EvalSet, ...]
    checkpoint_dir: Path | None
    name: str
    command: str | None
    recipe_path: str | None
    pipeline_start: float | None
    labels_csv: str | os.PathLike | None
    init: str | os.PathLike | None
    complete_from: str | os.PathLike | None
    drop_duplicates: bool
    scale_to_data: bool = False  # no recipe given: training.schedule.scaled_recipe
    target_recall: float | None = None  # overrides the recipe's (and the scaled default)


@dataclass
class _Preflight:
    """The checked inputs: the data's scan, what trains, what a source bundle supplies."""

    found: Any  # training.ingest.Scan
    trained: list[str]
    missing: list[str]
    source: Any  # edge.bundle.Bundle | None
    init_ckpts: dict[str, Path]
    eval_found: dict[str, Any]
    binary: bool = False  # normal/defective data, no source: a stage-1-only bundle


@dataclass
class _Data:
    """The normalized tiles of every split, and where the split was written."""

    train: Dataset
    val: Dataset
    calib: Dataset
    sets: dict[str, Dataset]
    splits_path: Path | None


@dataclass
class _Calibration:
    """Stage 1's threshold and stage 2's temperature and ``unknown`` threshold."""

    stage1_info: dict
    choice: ThresholdChoice | None
    temperature: float
    unknown: float
    ece_before: float | None
    ece_after: float | None
    val_stage1: tuple | None = None  # (scores, defective) the threshold was chosen on

    def thresholds(self) -> dict:
        return {"threshold": float(self.stage1_info["threshold"]),
                "temperature": self.temperature, "unknown_threshold": self.unknown}


def train_bundle(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 recipe: TrainRecipe | None = None, eval_sets: Sequence[EvalSet] = (),
                 checkpoint_dir: str | os.PathLike | None = None, name: str = "custom",
                 command: str | None = None, recipe_path: str | None = None,
                 console: Any = None, quiet: bool = False,
                 pipeline_start: float | None = None,
                 labels_csv: str | os.PathLike | None = None,
                 init: str | os.PathLike | None = None,
                 complete_from: str | os.PathLike | None = None,
                 device: str = "auto", drop_duplicates: bool = False,
                 scale_to_data: bool = False,
                 target_recall: float | None = None) -> TrainOutcome:
    """Train, export, evaluate and write a bundle into ``out_dir``.

    ``labels_csv``: ``path,label`` rows instead of label folders. ``init``: a bundle whose
    checkpoints initialise the models trained here (fine-tuning) and which supplies a
    stage the data cannot train (``training.ingest.layout_of``); ``complete_from``: a
    bundle that only supplies such a stage. Every data problem is reported before any
    training (:class:`training.data.DatasetError`, ``semedge train`` exit 2);
    ``drop_duplicates`` resolves the same image found twice instead (``training.ingest``).
    ``scale_to_data``: the schedule of :func:`training.schedule.scaled_recipe` (samples
    scaled to the training images, early stopping on the validation score);
    ``target_recall``: stage 1's target recall instead of the recipe's.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` for the training
    itself; thresholds, export and evaluation run on the CPU. Launched by ``torchrun``
    (``WORLD_SIZE`` > 1), every rank trains its part of each batch
    (``DistributedDataParallel``) and rank 0 alone writes files; the others wait for it
    and return a ``TrainOutcome`` with ``manifest=None``.

    Raises :class:`training.export.gate.ExportRefused` (after writing ``report/``) when
    int8 drifts beyond budget; no ``manifest.json`` is written then.
    """
    from training.distributed import setup

    request = _Request(
        Path(data_dir), Path(out_dir), recipe if recipe is not None else TrainRecipe(),
        tuple(eval_sets), Path(checkpoint_dir) if checkpoint_dir else None, name, command,
        recipe_path, pipeline_start, labels_csv, init, complete_from, drop_duplicates,
        scale_to_data, target_recall)
    dist = setup(device)  # before any work: a missing CUDA is an error here
    try:
        outcome = _train_bundle(request, dist, console, quiet)
    except BaseException:
        dist.abort()
        raise
    dist.finish()  # rank 0 has written the bundle: every rank may go
    return outcome


def _train_bundle(q: _Request, dist: Distributed, console: Any, quiet: bool) -> TrainOutcome:
    """The body of :func:`train_bundle`, on the device and rank ``dist`` gives."""
    from rich.console import Console

    from training.train_loop import set_determinism

    started = time.perf_counter()
    r = q.recipe
    if not dist.is_main:  # one process reports: rank 0
        console, quiet = Console(stderr=True, quiet=True), True
    console = console or Console(stderr=True, quiet=quiet)
    pre = _preflight(q, console)
    if dist.is_main:  # rank 0 alone writes files; a stale manifest must not survive
        q.out_dir.mkdir(parents=True, exist_ok=True)
        (q.out_dir / "manifest.json").unlink(missing_ok=True)
    ckpt_dir = q.checkpoint_dir or q.out_dir / "checkpoints"
    set_determinism(r.seed, r.threads)
    timings: dict[str, float] = {}
    with _progress(console, quiet) as progress:
        t0 = time.perf_counter()
        data = _load_data(q, pre, dist, progress)
        timings["data"] = time.perf_counter() - t0
        console.log(f"train {data.train.counts()}  val {data.val.counts()}  "
                    + "  ".join(f"{k} {len(v)}" for k, v in data.sets.items()))
        q = _scheduled(q, pre, data.train, console)
        r = q.recipe
        models, fits = _train_models(q, pre, data, dist, progress, console)
        if not dist.is_main:
            return TrainOutcome(q.out_dir, {}, None)
        for model_name, model in models.items():
            timings[f"train_{model_name}"] = fits[model_name].seconds
            save_checkpoint(model, model_name, ckpt_dir / f"{model_name}.pt", r)
        t0 = time.perf_counter()
        cal = _calibrate(q, pre, models, data.val, console)
        timings["calibrate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = _export(q, pre, models, data.calib)
        timings["export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluation = _evaluate(q, pre, models, files, data.sets, cal)
        timings["evaluate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        costs = _costs(r, models, files)
        timings["timing"] = time.perf_counter() - t0
    report = _report(q, pre, data, models, fits, files, evaluation, costs, cal, timings)
    if cal.val_stage1 is not None and cal.choice is not None:
        from training.report import plot_stage1_tradeoff

        plot_stage1_tradeoff(*cal.val_stage1, cal.choice,
                             q.out_dir / "report" / "stage1_tradeoff.png")
    _gate_and_write_report(q, report, evaluation, started, console)
    provenance = _provenance(q, pre, dist, report["gate_set"], started)
    manifest = _write_bundle_manifest(q, pre, models, files, evaluation, costs, cal,
                                      provenance, ckpt_dir, data.splits_path)
    console.log(f"bundle written to {q.out_dir} in {provenance['seconds']:.0f} s")
    return TrainOutcome(q.out_dir, report, manifest, None,
                        {k: ckpt_dir / f"{k}.pt" for k in models})


def _progress(console: Any, quiet: bool) -> Any:
    """The rich progress display of a training run (hidden when ``quiet``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=quiet)


def _preflight(q: _Request, console: Any) -> _Preflight:
    """Every data and bundle problem, before any training (``DatasetError``)."""
    from edge.bundle import load_bundle
    from training.ingest import check_leakage

    r = q.recipe
    found = _scan_or_raise(q.data_dir, labels_csv=q.labels_csv, size=r.size,
                           workers=r.threads, console=console,
                           what=f"semedge train: data {q.data_dir}",
                           drop_duplicates=q.drop_duplicates)
    layout = found.layout
    trained = [m for m in layout.stages if m != "monolithic" or r.train_monolithic]
    missing = [m for m in ("stage1", "stage2") if m not in trained]
    if q.init is not None and q.complete_from is not None:
        raise DatasetError("give --init or --complete-from, not both")
    source_path = q.init if q.init is not None else q.complete_from
    binary = missing == ["stage2"] and source_path is None
    if binary:
        missing = []  # a stage-1-only bundle: nothing to supply
    if missing and source_path is None:
        raise DatasetError(
            f"{q.data_dir}: layout {layout.name} ({', '.join(found.counts())}) trains "
            f"{', '.join(trained)} only, and a bundle needs stage1: pass "
            "--init BUNDLE (fine-tune from it and take the rest from it) or "
            "--complete-from BUNDLE (take the rest from it)")
    source = load_bundle(source_path) if source_path is not None else None
    if source is not None and missing and source.input_size != r.size:
        raise DatasetError(f"{source.root}: its models take {source.input_size}-px tiles, "
                           f"this recipe {r.size}: the {', '.join(missing)} it would supply "
                           "cannot be reused")
    init_ckpts = _init_checkpoints_for(source, trained) if q.init is not None else {}
    eval_found = {es.name: _scan_or_raise(es.path, size=r.size, workers=r.threads,
                                          console=console,
                                          what=f"semedge train: --eval {es.name}",
                                          drop_duplicates=q.drop_duplicates)
                  for es in q.eval_sets}
    for es_name, ef in eval_found.items():
        check_leakage(found.sha256, ef.sha256, what=f"--eval {es_name} ({ef.root})")
    return _Preflight(found, trained, missing, source, init_ckpts, eval_found, binary)


def _init_checkpoints_for(source: Any, trained: list[str]) -> dict[str, Path]:
    """``--init``: the source bundle's checkpoint of every model trained here."""
    init_ckpts = init_checkpoints(source)
    lacking = [m for m in trained if m not in init_ckpts]
    if lacking:
        raise DatasetError(f"{source.root}: no checkpoint for {', '.join(lacking)} "
                           "(--init needs BUNDLE/checkpoints/<model>.pt, listed in "
                           "manifest.checkpoints)")
    return init_ckpts


def _load_data(q: _Request, pre: _Preflight, dist: Distributed, progress: Any) -> _Data:
    """Split (train / val, and test without ``--eval``), write ``splits.json``, and
    normalize every split once into memory."""
    from training.ingest import SPLITS_FILE, write_splits

    r = q.recipe
    load_kw = {"size": r.size, "low": r.low, "high": r.high, "workers": r.threads,
               "progress": progress}
    paths, labels = pre.found.paths, pre.found.label_array()
    if q.eval_sets:
        val_idx, train_idx = stratified_split(labels, [r.val_fraction, 1.0], seed=r.seed)
        test_idx = np.zeros(0, dtype=np.int64)
    else:
        test_idx, val_idx, train_idx = stratified_split(
            labels, [r.test_fraction, r.val_fraction, 1.0], seed=r.seed)
    split_of = np.full(len(paths), "train", dtype=object)
    split_of[val_idx] = "val"
    split_of[test_idx] = "test"
    calib_local = balanced_subset(labels[train_idx], r.calibration_per_class, seed=r.seed)
    is_calib = np.zeros(len(paths), dtype=bool)
    is_calib[train_idx[calib_local]] = True
    splits_path = None
    if dist.is_main:
        splits_path = write_splits(
            q.out_dir / SPLITS_FILE, root=q.data_dir, paths=paths, labels=labels,
            sha256=pre.found.sha256, split=split_of.tolist(), seed=r.seed,
            fractions={"val": r.val_fraction,
                       "test": 0.0 if q.eval_sets else r.test_fraction},
            eval_sets={k: v.sha256 for k, v in pre.eval_found.items()},
            calibration=is_calib.tolist())

    def subset(idx: np.ndarray) -> tuple[list[str], np.ndarray]:
        return [paths[i] for i in idx], labels[idx]

    train = load_dataset(*subset(train_idx), dtype=np.float16,
                         description="normalizing train", **load_kw)
    val = load_dataset(*subset(val_idx), description="normalizing val", **load_kw)
    calib = load_dataset([train.paths[i] for i in calib_local], train.y[calib_local],
                         description="normalizing calibration", **load_kw)
    sets: dict[str, Dataset] = {}
    if len(test_idx):
        sets["test"] = load_dataset(*subset(test_idx), description="normalizing test",
                                    **load_kw)
    for es in q.eval_sets:
        ef = pre.eval_found[es.name]
        sets[es.name] = load_dataset(ef.paths, ef.label_array(),
                                     description=f"normalizing {es.name}", **load_kw)
    if not sets:
        raise ValueError("no held-out set: give --eval NAME=DIR or a test fraction > 0")
    return _Data(train, val, calib, sets, splits_path)


def _stage2_rows(labels: np.ndarray, other_output: bool, outliers: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(tiles kept, targets)`` of stage 2: the six classes as 0–5, and the
    ``other_defect`` tiles as ``OTHER_OUTPUT`` with ``other_output``, as -1 (a uniform
    answer) with ``outliers``, otherwise left out."""
    from training.labels import OTHER_DEFECT, OTHER_OUTPUT

    keep = (labels > 0) | ((other_output or outliers) & (labels == OTHER_DEFECT))
    other_target = OTHER_OUTPUT if other_output else -1
    return keep, np.where(labels == OTHER_DEFECT, other_target, labels - 1)


def _stage2_spec(labels: np.ndarray, m: ModelRecipe) -> tuple:
    """Stage 2's ``(tiles kept, targets, weights, binary)`` (:func:`_stage2_rows`); the
    ``other_defect`` tiles, when trained, are drawn as often as one class."""
    keep, targets = _stage2_rows(labels, m.other_output, m.outlier_weight > 0)
    return keep, targets, None, False


def _scheduled(q: _Request, pre: _Preflight, train: Dataset, console: Any) -> _Request:
    """``q`` with the data-scaled schedule (when asked) and the target recall applied."""
    from dataclasses import replace

    from training.labels import OTHER_DEFECT
    from training.schedule import OTHER_OUTPUT_MIN_IMAGES, scaled_recipe

    r = q.recipe
    if q.scale_to_data:
        images = {"stage1": len(train), "stage2": int((train.y > 0).sum()),
                  "monolithic": int((train.y >= 0).sum())}
        other = int((train.y == OTHER_DEFECT).sum())
        r = scaled_recipe(r, {m: images[m] for m in pre.trained}, other)
        if "stage2" in pre.trained and other:
            console.log(f"{other} other_defect training images: " + (
                "stage 2 learns them as an output answered unknown" if r.stage2.other_output
                else f"fewer than {OTHER_OUTPUT_MIN_IMAGES}, so stage 1 alone trains on "
                "them"))
        console.log("schedule scaled to the data (no recipe): " + ", ".join(
            f"{m} up to {getattr(r, m).epochs} × {getattr(r, m).samples_per_epoch:,} samples, "
            f"stopping after {getattr(r, m).patience} epochs without a better validation "
            "score" for m in pre.trained))
    if q.target_recall is not None:
        r = replace(r, target_recall=q.target_recall)
    return replace(q, recipe=r)


def _val_score(model_name: str, val: Dataset, other_output: bool = False):
    """The validation score early stopping watches: stage 1's ROC AUC, the class
    models' macro-F1 over the classes present, stage 2's other output one of them
    (None: no validation tile to score)."""
    from edge.metrics import confusion_matrix, macro_f1, roc_auc
    from training.train_loop import predict_logits

    if model_name == "stage1":
        truth = val.y != 0
        if truth.all() or not truth.any():
            return None
        return lambda model: roc_auc(truth, predict_logits(model, val.x)[:, 0])
    if model_name == "stage2":
        keep, targets = _stage2_rows(val.y, other_output)
        truth, classes = targets[keep], 7 if other_output else 6
    else:
        keep, truth, classes = val.y >= 0, val.y[val.y >= 0], 7
    if not keep.any():
        return None

    def score(model) -> float:
        pred = predict_logits(model, val.x[keep]).argmax(1)
        return macro_f1(confusion_matrix(truth, pred, classes), np.unique(truth))

    return score


def _initial_model(name: str, init: Path | None, other_output: bool):
    """A fresh model, or ``init``'s checkpoint (fine-tuning); ``other_output`` widens
    stage 2's head by the other output (a bundle's head that has one keeps it)."""
    from training.labels import OTHER_OUTPUT
    from training.models import build_model, widen_head

    outputs = OTHER_OUTPUT + 1 if other_output else None
    if init is None:
        return build_model(name, outputs)
    model = load_checkpoint(init)[0]
    if outputs is not None:
        widen_head(model, outputs)
    model.train()
    return model


def _has_other_output(model) -> bool:
    """Whether ``model`` is a stage 2 with the other output (index ``OTHER_OUTPUT``);
    ``None`` (no stage 2) has none."""
    from training.labels import OTHER_OUTPUT

    return (model is not None and model.arch.name == "stage2"
            and model.arch.outputs > OTHER_OUTPUT)


def _train_models(q: _Request, pre: _Preflight, data: _Data, dist: Distributed,
                  progress: Any, console: Any) -> tuple[dict, dict]:
    """Build (or ``--init``) and train every model this data trains: ``(models, fits)``."""
    from training.train_loop import balanced_weights, fit

    r, train = q.recipe, data.train
    masks = read_masks(q.data_dir)  # synth's defect masks: dense heads, crop training
    specs = {
        "stage1": (np.ones(len(train), bool), (train.y != 0).astype(np.float32),
                   balanced_weights(train.y, {0: 0.5}), True),
        "stage2": _stage2_spec(train.y, r.stage2),
        "monolithic": (train.y >= 0, train.y, None, False),
    }
    models: dict = {}
    jobs: dict = {}
    for i, model_name in enumerate(MODELS):
        if model_name not in pre.trained:
            continue
        keep, targets, weights, binary = specs[model_name]
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            raise ValueError(f"{q.data_dir}: no training tiles for {model_name}")
        w = weights[idx] if weights is not None else balanced_weights(targets[idx])
        model = _initial_model(model_name, pre.init_ckpts.get(model_name),
                               model_name == "stage2" and r.stage2.other_output)
        cfg = _fit_config(getattr(r, model_name), r.seed + 1000 * (i + 1), r)
        x_train = train.x if len(idx) == len(train) else train.x[idx]
        aux = _aux_targets(train.y[idx]) if model_name == "stage1" else None
        dense = _dense_targets(model, [train.paths[k] for k in idx], train.y[idx],
                               masks, r.size, crop=cfg.crop > 0 and cfg.crop_share > 0)
        cfg = _crop_or_whole_tiles(cfg, dense, train.y[idx], model_name, console)
        models[model_name] = model
        jobs[model_name] = functools.partial(
            fit, model, x_train, targets[idx], w, binary=binary, config=cfg,
            progress=progress, description=model_name, aux_targets=aux,
            dense_targets=dense, device=dist.device,
            validate=(_val_score(model_name, data.val, _has_other_output(model))
                      if cfg.patience > 0 else None))
    # under torchrun one model after another: two DDP models training side by side in
    # threads could issue their collectives in a different order on different ranks
    fits = _run_fits(jobs, concurrent=r.concurrent_stage1 and dist.world_size == 1,
                     threads=r.threads)
    return models, fits


def _calibrate(q: _Request, pre: _Preflight, models: dict, val: Dataset,
               console: Any) -> _Calibration:
    """Stage 1's threshold and stage 2's temperature and ``unknown`` threshold, on val
    (a stage a source bundle supplies keeps its own)."""
    from training.calibration import (
        expected_calibration_error,
        fit_temperature,
        select_unknown_threshold,
        softmax,
    )
    from training.evaluate import sigmoid
    from training.labels import OTHER_OUTPUT
    from training.train_loop import predict_logits

    r = q.recipe
    choice, val_stage1 = None, None
    if "stage1" in models:
        val_s1 = sigmoid(predict_logits(models["stage1"], val.x)[:, 0])
        val_stage1 = (val_s1, val.y != 0)
        choice, stage1_info = choose_stage1_threshold(
            val_s1, val.y != 0, read_visibility(q.data_dir, val.paths), r)
        console.log(f"stage 1 threshold {choice.threshold:.4f}: val recall "
                    f"{choice.recall:.4f} (95% lower bound {choice.lower_bound:.4f}), "
                    f"specificity {choice.specificity:.4f}, on "
                    f"{stage1_info['chosen_on']}; recall by visibility "
                    + ", ".join(f"{b} {v['recall']:.3f} of {v['defects']}" for b, v in
                                stage1_info["val_recall_by_visibility"].items()))
    else:
        stage1_info = {**pre.source.manifest["stage1"],
                       "supplied_by": _supplied(pre)["stage1"]}
    if pre.binary:
        return _Calibration(stage1_info, choice, 1.0, 0.0, None, None, val_stage1)
    if "stage2" not in models:
        s2 = pre.source.manifest["stage2"]
        return _Calibration(stage1_info, choice, pre.source.temperature,
                            pre.source.unknown_threshold, s2.get("ece_before"),
                            s2.get("ece_after"), val_stage1)
    keep, targets = _stage2_rows(val.y, _has_other_output(models["stage2"]))
    val_s2 = predict_logits(models["stage2"], val.x[keep])
    truth = targets[keep]
    temperature = fit_temperature(val_s2, truth)
    ece_before = expected_calibration_error(softmax(val_s2), truth)
    ece_after = expected_calibration_error(softmax(val_s2, temperature), truth)
    # the floor keeps ``coverage`` of the six classes' tiles labelled, by their top class
    known = truth < OTHER_OUTPUT
    unknown = select_unknown_threshold(softmax(val_s2, temperature)[known, :OTHER_OUTPUT],
                                       coverage=r.unknown_coverage,
                                       max_threshold=r.unknown_max_threshold)
    console.log(f"stage 2 T={temperature:.3f} ECE {ece_before:.4f}→{ece_after:.4f}, "
                f"unknown below {unknown:.3f}")
    return _Calibration(stage1_info, choice, temperature, unknown, ece_before, ece_after,
                        val_stage1)


def _supplied(pre: _Preflight) -> dict[str, str]:
    """Stage → the source bundle that supplies it (the stages this data cannot train)."""
    return {m: f"{pre.source.name} ({pre.source.root})" for m in pre.missing}


def _export(q: _Request, pre: _Preflight, models: dict, calib: Dataset
            ) -> dict[str, dict[str, Path]]:
    """ONNX fp32 and int8 of every trained model; a supplied stage's files copied as
    they are (same tile size, checked in the pre-flight)."""
    from training.export.onnx import export_onnx
    from training.export.quantize import quantize_int8

    r, out_dir = q.recipe, q.out_dir
    files: dict[str, dict[str, Path]] = {}
    for model_name, model in models.items():
        fp32 = export_onnx(model, out_dir / f"{model_name}.onnx", size=r.size)
        int8 = quantize_int8(fp32, out_dir / f"{model_name}.int8.onnx", calib.x,
                             method=r.calibration_method)
        files[model_name] = {"onnx": fp32, "onnx-int8": int8}
    for model_name in pre.missing:
        files[model_name] = {}
        for fmt, dst_name in (("onnx", f"{model_name}.onnx"),
                              ("onnx-int8", f"{model_name}.int8.onnx")):
            dst = out_dir / dst_name
            shutil.copyfile(pre.source.file(model_name, fmt).path, dst)
            files[model_name][fmt] = dst
    return files


def _evaluate(q: _Request, pre: _Preflight, models: dict, files: dict, sets: dict,
              cal: _Calibration) -> dict[str, dict[str, dict]]:
    """Every format (PyTorch, ONNX fp32, ONNX int8) on every held-out set."""
    from training.evaluate import evaluate_outputs, predict_onnx
    from training.train_loop import predict_logits

    threads = q.recipe.threads
    set_roots = {"test": q.data_dir, **{es.name: es.path for es in q.eval_sets}}
    evaluation: dict[str, dict[str, dict]] = {}
    for set_name, ds in sets.items():
        thr = {**cal.thresholds(), "visibility": read_visibility(set_roots[set_name],
                                                                 ds.paths)}
        ref = {k: predict_logits(m, ds.x) for k, m in models.items()}
        for k in pre.missing:  # a supplied stage: its ONNX fp32 is the reference
            ref[k] = predict_onnx(files[k]["onnx"], ds.x, threads=threads)
        evaluation[set_name] = {"pytorch": evaluate_outputs(ref, ds.y, **thr, reference=ref)}
        for fmt in ("onnx", "onnx-int8"):
            outs = {k: predict_onnx(files[k][fmt], ds.x, threads=threads) for k in files}
            evaluation[set_name][fmt] = evaluate_outputs(outs, ds.y, **thr, reference=ref)
    return evaluation


def _costs(r: TrainRecipe, models: dict, files: dict) -> dict:
    """Per-tile cost of every trained model: MMACs, and ms of ONNX int8 and fp32."""
    from training.evaluate import time_onnx
    from training.models import count_macs

    def ms(fmt: str) -> dict[str, float]:
        return {k: time_onnx(files[k][fmt], r.size, threads=r.threads,
                             min_seconds=r.timing_seconds) for k in models}

    return {"mmacs": {k: count_macs(m, r.size) / 1e6 for k, m in models.items()},
            "ms": ms("onnx-int8"), "ms_fp32": ms("onnx")}


def _report(q: _Request, pre: _Preflight, data: _Data, models: dict, fits: dict,
            files: dict, evaluation: dict, costs: dict, cal: _Calibration,
            timings: dict) -> dict:
    """``report/metrics.json``: every number of the run."""
    from training.evaluate import cascade_vs_monolithic
    from training.models import count_parameters

    r, sets = q.recipe, data.sets
    sizes = {k: {fmt: p.stat().st_size for fmt, p in v.items()} for k, v in files.items()}
    per_tile = {"mmacs": costs["mmacs"], "ms": costs["ms"]}
    layout = pre.found.layout
    return {
        "name": q.name,
        "gate_set": next(iter(sets)),
        "evaluation": evaluation,
        "targets": {s: _check_targets(s, evaluation[s]["onnx-int8"]) for s in sets},
        "cascade_vs_monolithic": (
            {s: cascade_vs_monolithic(evaluation[s]["onnx-int8"], per_tile) for s in sets}
            if "monolithic" in models else {}),
        "costs": {**costs,
                  "note": "cost per tile: MMACs of one 224 tile, and median ms per tile of the "
                          "ONNX int8 model (ONNX Runtime CPU, batch 16, "
                          f"{r.threads} threads) on the machine that trained"},
        "sizes_bytes": sizes,
        "int8_stage1_plus_stage2_bytes": (sizes["stage1"]["onnx-int8"]
                                          + sizes.get("stage2", {}).get("onnx-int8", 0)),
        "int8_size_budget_bytes": INT8_SIZE_BUDGET,
        "stage1_threshold": cal.stage1_info,
        "layout": {"name": layout.name, "trained": pre.trained, "supplied_by": _supplied(pre),
                   "init": str(q.init) if q.init is not None else None,
                   "labels": list(layout.labels)},
        "stage2_calibration": (None if pre.binary else {
            "temperature": cal.temperature, "ece_before": cal.ece_before,
            "ece_after": cal.ece_after, "unknown_threshold": cal.unknown,
            "unknown_coverage": r.unknown_coverage}),
        "training": {k: {"images_per_second": f.images_per_second, "seconds": f.seconds,
                         "samples": f.samples, "crop_samples": f.crop_samples,
                         "best_epoch": f.best_epoch, "stopped_early": f.stopped_early,
                         "history": f.history,
                         "parameters": count_parameters(models[k])}
                     for k, f in fits.items()},
        "timings_seconds": timings,
        "ingest": pre.found.lines(),
        "data": {"train": data.train.counts(), "val": data.val.counts(),
                 **{k: v.counts() for k, v in sets.items()}},
    }


def _gate_and_write_report(q: _Request, report: dict, evaluation: dict, started: float,
                           console: Any) -> None:
    """The drift gate on the first held-out set, then ``report/`` and its summary;
    raises ``ExportRefused`` (after writing the report) when int8 drifted too far."""
    from training.export.gate import DriftBudget, ExportRefused, check_drift
    from training.report import summary_lines, write_report

    r, gate_set = q.recipe, report["gate_set"]
    refused = None
    try:
        report["drift"] = check_drift(evaluation[gate_set]["onnx"],
                                      evaluation[gate_set]["onnx-int8"],
                                      DriftBudget(r.max_recall_drop, r.max_macro_f1_drop))
    except ExportRefused as err:
        report["drift"] = err.drops
        report["refused"] = str(err)
        refused = err
    report["seconds"] = time.perf_counter() - started
    write_report(q.out_dir / "report", report)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    int8_total = report["int8_stage1_plus_stage2_bytes"]
    if int8_total > INT8_SIZE_BUDGET:
        console.print(f"[yellow]warning: int8 stage1+stage2 are {int8_total:,} bytes, over "
                      f"the {INT8_SIZE_BUDGET:,}-byte budget[/]")
    if refused is not None:
        raise refused


def _provenance(q: _Request, pre: _Preflight, dist: Distributed, gate_set: str,
                started: float) -> dict:
    """The manifest's ``provenance``: command, data, seeds, recipe, versions, machine."""
    import onnxruntime
    import torch

    import edge

    r = q.recipe
    synth_info = recipe_of(q.data_dir)
    return {
        "command": q.command or " ".join(sys.argv),
        "recipe": synth_info.get("recipe", "unknown"),
        "recipe_sha256": synth_info.get("recipe_sha256"),
        "data_seed": synth_info.get("seed"),
        "data": q.data_dir.name,
        "eval_sets": {es.name: es.path.name for es in q.eval_sets},
        "gate_set": gate_set,
        "seed": r.seed,
        "train_recipe": _portable_path(q.recipe_path) if q.recipe_path else "built-in defaults",
        "train_recipe_sha256": r.sha256(),
        "train_recipe_resolved": r.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "pipeline_seconds": (round(time.time() - q.pipeline_start, 1)
                             if q.pipeline_start is not None else None),
        "layout": pre.found.layout.name,
        "trained": pre.trained,
        "supplied_by": _supplied(pre),
        "init": ({"bundle": pre.source.name, "path": str(pre.source.root)}
                 if q.init is not None else None),
        "semedge_version": edge.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {r.threads} threads",
        **_device_provenance(dist),
    }


def _write_bundle_manifest(q: _Request, pre: _Preflight, models: dict, files: dict,
                           evaluation: dict, costs: dict, cal: _Calibration,
                           provenance: dict, ckpt_dir: Path, splits_path: Path | None) -> Path:
    """Copy the checkpoints into the bundle (``--init`` needs them, wherever
    ``--checkpoints`` is) and write ``manifest.json``."""
    from training.bundle_writer import write_manifest
    from training.models import count_parameters

    r, out_dir = q.recipe, q.out_dir
    sets = list(evaluation)
    metrics = {fmt: {s: _summary(evaluation[s][fmt]) for s in sets}
               for fmt in ("pytorch", "onnx", "onnx-int8")}
    model_info = {k: {"parameters": count_parameters(m), "mmacs": costs["mmacs"][k],
                      "outputs": m.arch.outputs} for k, m in models.items()}
    bundle_ckpts: dict[str, Path] = {}
    for k in models:
        dst = out_dir / "checkpoints" / f"{k}.pt"
        if (ckpt_dir / f"{k}.pt").resolve() != dst.resolve():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ckpt_dir / f"{k}.pt", dst)
        bundle_ckpts[k] = dst
    large = "resize" if any(min(s) > r.size for s in pre.found.shapes) else "tile"
    return write_manifest(out_dir, name=q.name, size=r.size, low=r.low, high=r.high,
                          stage1=_stage1_manifest(r, cal, "stage1" in models),
                          stage2=_stage2_manifest(r, pre, cal, "stage2" in models,
                                                  _has_other_output(models.get("stage2"))),
                          files=files, metrics=metrics, provenance=provenance,
                          models=model_info, large_image=large, checkpoints=bundle_ckpts,
                          splits=splits_path)


def _stage1_manifest(r: TrainRecipe, cal: _Calibration, trained: bool) -> dict:
    """The manifest's ``stage1``: the threshold and how it was chosen."""
    if not trained or cal.choice is None:
        return cal.stage1_info
    c = cal.choice
    return {"threshold": c.threshold, "target_recall": r.target_recall,
            "val_recall": c.recall, "val_recall_lower_bound": c.lower_bound,
            "val_recall_confidence": c.confidence, "val_specificity": c.specificity,
            "val_positives": c.positives, "val_negatives": c.negatives,
            "chosen_on": cal.stage1_info["chosen_on"],
            "val_recall_by_visibility": cal.stage1_info["val_recall_by_visibility"]}


def _stage2_manifest(r: TrainRecipe, pre: _Preflight, cal: _Calibration,
                     trained: bool, other_output: bool) -> dict | None:
    """The manifest's ``stage2``: temperature, ``unknown`` threshold, ECE, whether it has
    the other output (None for a stage-1-only bundle)."""
    if pre.binary:
        return None
    if not trained:
        return {**pre.source.manifest["stage2"], "supplied_by": _supplied(pre)["stage2"]}
    return {"temperature": cal.temperature, "unknown_threshold": cal.unknown,
            "ece_before": cal.ece_before, "ece_after": cal.ece_after,
            "unknown_coverage": r.unknown_coverage, "other_output": other_output}
