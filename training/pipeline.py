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
from dataclasses import dataclass, field, replace
from pathlib import Path

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
INT8_SIZE_BUDGET = 1_000_000  # bytes, stage1.int8 + stage2.int8


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
    from training.train_loop import FitConfig  # noqa: PLC0415

    return FitConfig(epochs=m.epochs, samples_per_epoch=m.samples_per_epoch,
                     batch_size=m.batch_size, lr=m.lr, weight_decay=m.weight_decay,
                     label_smoothing=m.label_smoothing, dense_weight=m.dense_weight,
                     crop=m.crop, crop_share=m.crop_share, seed=seed,
                     augment=recipe.augment.with_overrides(m.augment))


def save_checkpoint(model, name: str, path: Path, recipe: TrainRecipe) -> Path:
    """A ``weights_only``-loadable checkpoint: tensors, strings and numbers only."""
    import torch  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": name, "size": recipe.size, "low": recipe.low, "high": recipe.high,
                "state_dict": {k: v.detach().cpu().clone() for k, v in
                               model.state_dict().items()}}, path)
    return path


def load_checkpoint(path: str | os.PathLike):
    """``(model, checkpoint dict)`` from ``save_checkpoint``, with ``weights_only=True``."""
    import torch  # noqa: PLC0415

    from training.models import TRAINING_ONLY, build_model  # noqa: PLC0415

    ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a semedge checkpoint (no 'model'/'state_dict' keys)")
    model = build_model(ckpt["model"])
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
    from training.data import OTHER_DEFECT  # noqa: PLC0415

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
    import threading  # noqa: PLC0415

    import torch  # noqa: PLC0415

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
    import torch  # noqa: PLC0415

    from training.cell_masks import UNKNOWN, cell_targets  # noqa: PLC0415

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


def _crop_or_whole_tiles(cfg, cells: np.ndarray | None, name: str, console):
    """``cfg`` as it is, or without crop training when some defect tile's place is not
    known (a real image labelled as a whole): a window could cut its defect off."""
    from training.cell_masks import UNKNOWN  # noqa: PLC0415

    if not (cfg.crop and cfg.crop_share > 0):
        return cfg
    unknown = 0 if cells is None else int((cells == UNKNOWN).any(axis=(1, 2)).sum())
    if cells is not None and unknown == 0:
        return cfg
    why = f"{unknown} defect tiles have no mask" if cells is not None else "no masks"
    console.log(f"{name}: whole tiles instead of {cfg.crop}-px crops ({why}: "
                "a window could cut a defect off)")
    return replace(cfg, crop=0, crop_share=0.0)


def choose_stage1_threshold(scores: np.ndarray, defective: np.ndarray,
                            visibility: np.ndarray, r: TrainRecipe
                            ) -> tuple[ThresholdChoice, dict]:
    """The stage-1 threshold for ``r.target_recall`` on the visible (and unrated) val
    defects, and its record: the choice, what it was chosen on, val recall per band."""
    from edge.visibility import VISIBLE, counts_as_target, recall_by_band  # noqa: PLC0415

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
        "stage2_macro_f1": m["stage2"]["macro_f1"],
        "stage2_accuracy": m["stage2"]["accuracy"],
        "ece": m["stage2"]["ece"],
        "cascade_accuracy": m["cascade"]["accuracy"],
    }
    if "monolithic" in m:
        out["monolithic_accuracy"] = m["monolithic"]["accuracy"]
        out["monolithic_macro_f1"] = m["monolithic"]["macro_f1"]
    if "agreement" in m:
        out["agreement_cascade"] = m["agreement"]["cascade"]
        out["agreement_stage1"] = m["agreement"]["stage1"]
        out["agreement_stage2"] = m["agreement"]["stage2"]
    return out


def _targets_for(name: str) -> tuple[str, dict]:
    key = "shifted" if name.startswith("shifted") else "default"
    return key, TARGETS[key]


def _check_targets(name: str, m: dict) -> dict:
    key, t = _targets_for(name)
    got = {"stage1_recall": m["stage1"]["recall"],
           "stage1_specificity": m["stage1"]["specificity"],
           "stage2_macro_f1": m["stage2"]["macro_f1"]}
    rows = {k: {"target": t[k], "value": got[k],
                "pass": bool(got[k] is not None and got[k] == got[k] and got[k] >= t[k])}
            for k in t}
    return {"targets": key, "checks": rows, "pass": all(r["pass"] for r in rows.values())}


def init_checkpoints(bundle) -> dict[str, Path]:
    """The ``weights_only`` checkpoints a bundle ships (``manifest["checkpoints"]``, or
    ``checkpoints/<stage>.pt`` in bundles that do not list them), hash-checked."""
    from edge.bundle import BundleError, sha256_file  # noqa: PLC0415

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


def _scan_or_raise(path, *, labels_csv=None, size: int, workers: int, console, what: str):
    from training.ingest import scan  # noqa: PLC0415

    found = scan(path, labels_csv=labels_csv, size=size, workers=workers)
    if not found.ok:
        raise DatasetError(f"{what}:\n" + "\n".join(found.lines()))
    for line in found.lines():
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    return found


def _device_provenance(dist: Distributed) -> dict:
    """Where the models trained: device kind (and GPU name), world size, backend."""
    import torch  # noqa: PLC0415

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


def train_bundle(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 recipe: TrainRecipe | None = None, eval_sets: list[EvalSet] = (),
                 checkpoint_dir: str | os.PathLike | None = None, name: str = "custom",
                 command: str | None = None, recipe_path: str | None = None,
                 console=None, quiet: bool = False,
                 pipeline_start: float | None = None,
                 labels_csv: str | os.PathLike | None = None,
                 init: str | os.PathLike | None = None,
                 complete_from: str | os.PathLike | None = None,
                 device: str = "auto") -> TrainOutcome:
    """Train, export, evaluate and write a bundle into ``out_dir``.

    ``labels_csv``: ``path,label`` rows instead of label folders. ``init``: a bundle whose
    checkpoints initialise the models trained here (fine-tuning) and which supplies a
    stage the data cannot train (``training.ingest.layout_of``); ``complete_from``: a
    bundle that only supplies such a stage. Every data problem is reported before any
    training (:class:`training.data.DatasetError`, ``semedge train`` exit 2).

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` for the training
    itself; thresholds, export and evaluation run on the CPU. Launched by ``torchrun``
    (``WORLD_SIZE`` > 1), every rank trains its part of each batch
    (``DistributedDataParallel``) and rank 0 alone writes files; the others wait for it
    and return a ``TrainOutcome`` with ``manifest=None``.

    Raises :class:`training.export.gate.ExportRefused` (after writing ``report/``) when
    int8 drifts beyond budget; no ``manifest.json`` is written then.
    """
    from training.distributed import setup  # noqa: PLC0415

    dist = setup(device)  # before any work: a missing CUDA is an error here
    try:
        outcome = _train_bundle(
            data_dir, out_dir, recipe=recipe, eval_sets=eval_sets,
            checkpoint_dir=checkpoint_dir, name=name, command=command,
            recipe_path=recipe_path, console=console, quiet=quiet,
            pipeline_start=pipeline_start, labels_csv=labels_csv, init=init,
            complete_from=complete_from, dist=dist)
    except BaseException:
        dist.abort()
        raise
    dist.finish()  # rank 0 has written the bundle: every rank may go
    return outcome


def _train_bundle(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  recipe: TrainRecipe | None = None, eval_sets: list[EvalSet] = (),
                  checkpoint_dir: str | os.PathLike | None = None, name: str = "custom",
                  command: str | None = None, recipe_path: str | None = None,
                  console=None, quiet: bool = False,
                  pipeline_start: float | None = None,
                  labels_csv: str | os.PathLike | None = None,
                  init: str | os.PathLike | None = None,
                  complete_from: str | os.PathLike | None = None,
                  dist: Distributed) -> TrainOutcome:
    """The body of :func:`train_bundle`, on the device and rank ``dist`` gives."""
    import onnxruntime  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    import edge  # noqa: PLC0415
    from edge.bundle import load_bundle  # noqa: PLC0415
    from training.calibration import (  # noqa: PLC0415
        expected_calibration_error,
        fit_temperature,
        select_unknown_threshold,
        softmax,
    )
    from training.evaluate import (  # noqa: PLC0415
        cascade_vs_monolithic,
        evaluate_outputs,
        predict_onnx,
        sigmoid,
        time_onnx,
    )
    from training.export.gate import DriftBudget, ExportRefused, check_drift  # noqa: PLC0415
    from training.export.onnx import export_onnx  # noqa: PLC0415
    from training.export.quantize import quantize_int8  # noqa: PLC0415
    from training.ingest import (  # noqa: PLC0415
        SPLITS_FILE,
        check_leakage,
        write_splits,
    )
    from training.models import build_model, count_macs, count_parameters  # noqa: PLC0415
    from training.report import summary_lines, write_report  # noqa: PLC0415
    from training.train_loop import (  # noqa: PLC0415
        balanced_weights,
        fit,
        predict_logits,
        set_determinism,
    )

    started = time.perf_counter()
    recipe = recipe if recipe is not None else TrainRecipe()
    if not dist.is_main:  # one process reports: rank 0
        console, quiet = Console(stderr=True, quiet=True), True
    console = console or Console(stderr=True, quiet=quiet)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    r = recipe

    # ---- 0. pre-flight: every problem before any training
    found = _scan_or_raise(data_dir, labels_csv=labels_csv, size=r.size, workers=r.threads,
                           console=console, what=f"semedge train: data {data_dir}")
    layout = found.layout
    trained = [m for m in layout.stages if m != "monolithic" or r.train_monolithic]
    missing = [m for m in ("stage1", "stage2") if m not in trained]
    if init is not None and complete_from is not None:
        raise DatasetError("give --init or --complete-from, not both")
    source_path = init if init is not None else complete_from
    if missing and source_path is None:
        raise DatasetError(
            f"{data_dir}: layout {layout.name} ({', '.join(found.counts())}) trains "
            f"{', '.join(trained)} only, and a bundle needs stage1 and stage2: pass "
            "--init BUNDLE (fine-tune from it and take the rest from it) or "
            "--complete-from BUNDLE (take the rest from it)")
    source = load_bundle(source_path) if source_path is not None else None
    if source is not None and missing and source.input_size != r.size:
        raise DatasetError(f"{source.root}: its models take {source.input_size}-px tiles, "
                           f"this recipe {r.size}: the {', '.join(missing)} it would supply "
                           "cannot be reused")
    init_ckpts: dict[str, Path] = {}
    if init is not None:
        init_ckpts = init_checkpoints(source)
        lacking = [m for m in trained if m not in init_ckpts]
        if lacking:
            raise DatasetError(f"{source.root}: no checkpoint for {', '.join(lacking)} "
                               "(--init needs BUNDLE/checkpoints/<model>.pt, listed in "
                               "manifest.checkpoints)")
    eval_found = {es.name: _scan_or_raise(es.path, size=r.size, workers=r.threads,
                                          console=console,
                                          what=f"semedge train: --eval {es.name}")
                  for es in eval_sets}
    for es_name, ef in eval_found.items():
        check_leakage(found.sha256, ef.sha256, what=f"--eval {es_name} ({ef.root})")

    if dist.is_main:  # rank 0 alone writes files
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("manifest.json",):
            (out_dir / stale).unlink(missing_ok=True)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir / "checkpoints"
    set_determinism(recipe.seed, recipe.threads)
    load_kw = {"size": r.size, "low": r.low, "high": r.high, "workers": r.threads}
    timings: dict[str, float] = {}

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        disable=quiet)
    with progress:
        # ---- 1. data
        t0 = time.perf_counter()
        paths, labels = found.paths, found.label_array()
        if eval_sets:
            val_idx, train_idx = stratified_split(labels, [r.val_fraction, 1.0],
                                                  seed=r.seed)
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
                out_dir / SPLITS_FILE, root=data_dir, paths=paths, labels=labels,
                sha256=found.sha256, split=split_of.tolist(), seed=r.seed,
                fractions={"val": r.val_fraction, "test": 0.0 if eval_sets else r.test_fraction},
                eval_sets={k: v.sha256 for k, v in eval_found.items()},
                calibration=is_calib.tolist())
        sub = lambda idx: ([paths[i] for i in idx], labels[idx])  # noqa: E731
        train = load_dataset(*sub(train_idx), dtype=np.float16, progress=progress,
                             description="normalizing train", **load_kw)
        val = load_dataset(*sub(val_idx), progress=progress, description="normalizing val",
                           **load_kw)
        calib = load_dataset([train.paths[i] for i in calib_local], train.y[calib_local],
                             progress=progress, description="normalizing calibration",
                             **load_kw)
        sets: dict[str, Dataset] = {}
        if len(test_idx):
            sets["test"] = load_dataset(*sub(test_idx), progress=progress,
                                        description="normalizing test", **load_kw)
        for es in eval_sets:
            ef = eval_found[es.name]
            p, y = ef.paths, ef.label_array()
            sets[es.name] = load_dataset(p, y, progress=progress,
                                         description=f"normalizing {es.name}", **load_kw)
        if not sets:
            raise ValueError("no held-out set: give --eval NAME=DIR or a test fraction > 0")
        timings["data"] = time.perf_counter() - t0
        console.log(f"train {train.counts()}  val {val.counts()}  "
                    + "  ".join(f"{k} {len(v)}" for k, v in sets.items()))

        # ---- 2. models
        masks = read_masks(data_dir)  # synth's defect masks, for the dense heads
        models: dict = {}
        specs = {
            "stage1": (np.ones(len(train), bool), (train.y != 0).astype(np.float32),
                       balanced_weights(train.y, {0: 0.5}), True),
            "stage2": (train.y > 0, train.y - 1, None, False),
            "monolithic": (train.y >= 0, train.y, None, False),
        }
        jobs: dict = {}
        for i, model_name in enumerate(MODELS):
            if model_name not in trained:
                continue
            keep, targets, weights, binary = specs[model_name]
            idx = np.flatnonzero(keep)
            if len(idx) == 0:
                raise ValueError(f"{data_dir}: no training tiles for {model_name}")
            w = weights[idx] if weights is not None else balanced_weights(targets[idx])
            model = build_model(model_name)
            if model_name in init_ckpts:
                model.load_state_dict(load_checkpoint(init_ckpts[model_name])[0].state_dict())
                model.train()
            cfg = _fit_config(getattr(r, model_name), r.seed + 1000 * (i + 1), r)
            x_train = train.x if len(idx) == len(train) else train.x[idx]
            aux = _aux_targets(train.y[idx]) if model_name == "stage1" else None
            dense = _dense_targets(model, [train.paths[k] for k in idx], train.y[idx],
                                   masks, r.size, crop=cfg.crop > 0 and cfg.crop_share > 0)
            cfg = _crop_or_whole_tiles(cfg, dense, model_name, console)
            models[model_name] = model
            jobs[model_name] = functools.partial(
                fit, model, x_train, targets[idx], w, binary=binary, config=cfg,
                progress=progress, description=model_name, aux_targets=aux,
                dense_targets=dense, device=dist.device)
        # under torchrun one model after another: two DDP models training side by side in
        # threads could issue their collectives in a different order on different ranks
        fits = _run_fits(jobs, concurrent=r.concurrent_stage1 and dist.world_size == 1,
                         threads=r.threads)
        if not dist.is_main:
            return TrainOutcome(out_dir, {}, None)
        for model_name, model in models.items():
            timings[f"train_{model_name}"] = fits[model_name].seconds
            save_checkpoint(model, model_name, ckpt_dir / f"{model_name}.pt", r)

        # ---- 3. thresholds and calibration on val (a supplied stage keeps its own)
        t0 = time.perf_counter()
        supplied = {m: f"{source.name} ({source.root})" for m in missing}
        if "stage1" in models:
            val_s1 = sigmoid(predict_logits(models["stage1"], val.x)[:, 0])
            choice, stage1_info = choose_stage1_threshold(
                val_s1, val.y != 0, read_visibility(data_dir, val.paths), r)
            console.log(f"stage 1 threshold {choice.threshold:.4f}: val recall "
                        f"{choice.recall:.4f} (95% lower bound {choice.lower_bound:.4f}), "
                        f"specificity {choice.specificity:.4f}, on "
                        f"{stage1_info['chosen_on']}; recall by visibility "
                        + ", ".join(f"{b} {v['recall']:.3f} of {v['defects']}" for b, v in
                                    stage1_info["val_recall_by_visibility"].items()))
        else:
            stage1_info = {**source.manifest["stage1"], "supplied_by": supplied["stage1"]}
        if "stage2" in models:
            intax = val.y > 0
            val_s2 = predict_logits(models["stage2"], val.x[intax])
            temperature = fit_temperature(val_s2, val.y[intax] - 1)
            ece_before = expected_calibration_error(softmax(val_s2), val.y[intax] - 1)
            ece_after = expected_calibration_error(softmax(val_s2, temperature),
                                                   val.y[intax] - 1)
            unknown = select_unknown_threshold(softmax(val_s2, temperature),
                                               coverage=r.unknown_coverage,
                                               max_threshold=r.unknown_max_threshold)
            console.log(f"stage 2 T={temperature:.3f} ECE {ece_before:.4f}→{ece_after:.4f}, "
                        f"unknown below {unknown:.3f}")
        else:
            s2 = source.manifest["stage2"]
            temperature, unknown = source.temperature, source.unknown_threshold
            ece_before, ece_after = s2.get("ece_before"), s2.get("ece_after")
        timings["calibrate"] = time.perf_counter() - t0

        # ---- 4. export
        t0 = time.perf_counter()
        files: dict[str, dict[str, Path]] = {}
        for model_name, model in models.items():
            fp32 = export_onnx(model, out_dir / f"{model_name}.onnx", size=r.size)
            int8 = quantize_int8(fp32, out_dir / f"{model_name}.int8.onnx", calib.x,
                                 method=r.calibration_method)
            files[model_name] = {"onnx": fp32, "onnx-int8": int8}
        for model_name in missing:  # supplied as they are (same tile size, checked above)
            files[model_name] = {}
            for fmt in ("onnx", "onnx-int8"):
                src = source.file(model_name, fmt).path
                dst = out_dir / (f"{model_name}.onnx" if fmt == "onnx"
                                 else f"{model_name}.int8.onnx")
                shutil.copyfile(src, dst)
                files[model_name][fmt] = dst
        timings["export"] = time.perf_counter() - t0

        # ---- 5. evaluate every format on every held-out set
        t0 = time.perf_counter()
        thr = {"threshold": float(stage1_info["threshold"]), "temperature": temperature,
               "unknown_threshold": unknown}
        evaluation: dict[str, dict[str, dict]] = {}
        set_roots = {"test": data_dir, **{es.name: es.path for es in eval_sets}}
        for set_name, ds in sets.items():
            thr["visibility"] = read_visibility(set_roots[set_name], ds.paths)
            ref = {k: predict_logits(m, ds.x) for k, m in models.items()}
            for k in missing:  # a supplied stage: its ONNX fp32 is the reference
                ref[k] = predict_onnx(files[k]["onnx"], ds.x, threads=r.threads)
            evaluation[set_name] = {"pytorch": evaluate_outputs(ref, ds.y, **thr,
                                                                reference=ref)}
            for fmt in ("onnx", "onnx-int8"):
                outs = {k: predict_onnx(files[k][fmt], ds.x, threads=r.threads)
                        for k in files}
                evaluation[set_name][fmt] = evaluate_outputs(outs, ds.y, **thr,
                                                             reference=ref)
        del thr["visibility"]
        timings["evaluate"] = time.perf_counter() - t0

        # ---- 6. cost, size, report
        t0 = time.perf_counter()
        costs = {"mmacs": {k: count_macs(m, r.size) / 1e6 for k, m in models.items()},
                 "ms": {k: time_onnx(files[k]["onnx-int8"], r.size, threads=r.threads,
                                  min_seconds=r.timing_seconds)
                        for k in models}}
        fp32_ms = {k: time_onnx(files[k]["onnx"], r.size, threads=r.threads,
                             min_seconds=r.timing_seconds) for k in models}
        timings["timing"] = time.perf_counter() - t0
    sizes = {k: {fmt: p.stat().st_size for fmt, p in v.items()} for k, v in files.items()}
    int8_total = sizes["stage1"]["onnx-int8"] + sizes["stage2"]["onnx-int8"]
    gate_set = next(iter(sets))
    report: dict = {
        "name": name,
        "gate_set": gate_set,
        "evaluation": evaluation,
        "targets": {s: _check_targets(s, evaluation[s]["onnx-int8"]) for s in sets},
        "cascade_vs_monolithic": (
            {s: cascade_vs_monolithic(evaluation[s]["onnx-int8"], costs) for s in sets}
            if "monolithic" in models else {}),
        "costs": {**costs, "ms_fp32": fp32_ms,
                  "note": "cost per tile: MMACs of one 224 tile, and median ms per tile of the "
                          "ONNX int8 model (ONNX Runtime CPU, batch 16, "
                          f"{r.threads} threads) on the machine that trained"},
        "sizes_bytes": sizes,
        "int8_stage1_plus_stage2_bytes": int8_total,
        "int8_size_budget_bytes": INT8_SIZE_BUDGET,
        "stage1_threshold": stage1_info,
        "layout": {"name": layout.name, "trained": trained, "supplied_by": supplied,
                   "init": str(init) if init is not None else None,
                   "labels": list(layout.labels)},
        "stage2_calibration": {"temperature": temperature, "ece_before": ece_before,
                               "ece_after": ece_after, "unknown_threshold": unknown,
                               "unknown_coverage": r.unknown_coverage},
        "training": {k: {"images_per_second": f.images_per_second, "seconds": f.seconds,
                         "samples": f.samples, "crop_samples": f.crop_samples,
                         "history": f.history,
                         "parameters": count_parameters(models[k])}
                     for k, f in fits.items()},
        "timings_seconds": timings,
        "ingest": found.lines(),
        "data": {"train": train.counts(), "val": val.counts(),
                 **{k: v.counts() for k, v in sets.items()}},
    }

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
    write_report(out_dir / "report", report)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if int8_total > INT8_SIZE_BUDGET:
        console.print(f"[yellow]warning: int8 stage1+stage2 are {int8_total:,} bytes, over "
                      f"the {INT8_SIZE_BUDGET:,}-byte budget[/]")
    if refused is not None:
        raise refused

    synth_info = recipe_of(data_dir)
    provenance = {
        "command": command or " ".join(sys.argv),
        "recipe": synth_info.get("recipe", "unknown"),
        "recipe_sha256": synth_info.get("recipe_sha256"),
        "data_seed": synth_info.get("seed"),
        "data": data_dir.name,
        "eval_sets": {es.name: es.path.name for es in eval_sets},
        "gate_set": gate_set,
        "seed": r.seed,
        "train_recipe": _portable_path(recipe_path) if recipe_path else "built-in defaults",
        "train_recipe_sha256": r.sha256(),
        "train_recipe_resolved": r.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "pipeline_seconds": (round(time.time() - pipeline_start, 1)
                             if pipeline_start is not None else None),
        "layout": layout.name,
        "trained": trained,
        "supplied_by": supplied,
        "init": ({"bundle": source.name, "path": str(source.root)}
                 if init is not None else None),
        "semedge_version": edge.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {r.threads} threads",
        **_device_provenance(dist),
    }
    if "stage1" in models:
        stage1 = {"threshold": choice.threshold, "target_recall": r.target_recall,
                  "val_recall": choice.recall, "val_recall_lower_bound": choice.lower_bound,
                  "val_recall_confidence": choice.confidence,
                  "val_specificity": choice.specificity,
                  "val_positives": choice.positives, "val_negatives": choice.negatives,
                  "chosen_on": stage1_info["chosen_on"],
                  "val_recall_by_visibility": stage1_info["val_recall_by_visibility"]}
    else:
        stage1 = stage1_info
    if "stage2" in models:
        stage2 = {"temperature": temperature, "unknown_threshold": unknown,
                  "ece_before": ece_before, "ece_after": ece_after,
                  "unknown_coverage": r.unknown_coverage}
    else:
        stage2 = {**source.manifest["stage2"], "supplied_by": supplied["stage2"]}
    metrics = {fmt: {s: _summary(evaluation[s][fmt]) for s in sets}
               for fmt in ("pytorch", "onnx", "onnx-int8")}
    model_info = {k: {"parameters": count_parameters(m), "mmacs": costs["mmacs"][k],
                      "outputs": m.arch.outputs} for k, m in models.items()}
    from training.bundle_writer import write_manifest  # noqa: PLC0415

    # checkpoints travel in the bundle (``--init`` needs them), wherever --checkpoints is
    bundle_ckpts: dict[str, Path] = {}
    for k in models:
        dst = out_dir / "checkpoints" / f"{k}.pt"
        if (ckpt_dir / f"{k}.pt").resolve() != dst.resolve():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ckpt_dir / f"{k}.pt", dst)
        bundle_ckpts[k] = dst
    large = "resize" if any(min(s) > r.size for s in found.shapes) else "tile"
    manifest = write_manifest(out_dir, name=name, size=r.size, low=r.low, high=r.high,
                              stage1=stage1, stage2=stage2, files=files, metrics=metrics,
                              provenance=provenance, models=model_info, large_image=large,
                              checkpoints=bundle_ckpts, splits=splits_path)
    console.log(f"bundle written to {out_dir} in {provenance['seconds']:.0f} s")
    return TrainOutcome(out_dir, report, manifest, None,
                        {k: ckpt_dir / f"{k}.pt" for k in models})
