"""Add the TFLite int8 files to a trained bundle, behind the parity gate.

``semedge export --format tflite --bundle DIR --calibration TRAIN_DIR --eval NAME=DIR ...``:
convert stage 1 and stage 2 (ONNX fp32 → onnx2tf → int8 with float I/O, and full-integer),
evaluate them next to ONNX fp32 and int8 on every held-out set (and on the bundle's
validation split, reported only), refuse (and leave the bundle untouched) when the first
set fails the gate, else hash the files into
``manifest.json`` with their metrics and parity rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["TFLITE_STAGES", "CalibrationMismatch", "add_tflite_to_bundle", "calibration_images",
           "validation_images"]

TFLITE_STAGES = ("stage1", "stage2")
"""Stages converted (the monolithic baseline stays ONNX: only ``semedge bench`` runs it)."""


class CalibrationMismatch(ValueError):
    """An image the bundle's splits record is missing from, or differs in, the data folder."""


def calibration_images(bundle_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                       per_class: int | None = None, seed: int = 0
                       ) -> tuple[list[str], np.ndarray, str]:
    """The images to calibrate the TFLite models on: ``(paths, labels, where from)``.

    By default the very images ONNX Runtime's int8 models were calibrated on, as the
    bundle's ``splits.json`` marks them, found under ``data_dir`` and checked by sha256:
    both int8 formats then start from the same activation ranges' data (a fresh draw of
    the same size moves the flipped-tile count of one stage 2 between 10 and 24 of 1,200,
    docs/tflite.md). ``per_class`` given, or a bundle without marked images: a fresh
    class-balanced draw of ``per_class`` (default: the recipe's 48) images per class of ``data_dir``.
    """
    from training.data import balanced_subset, discover
    from training.ingest import calibration_rows, read_splits
    from training.recipe import TrainRecipe

    splits = Path(bundle_dir) / "splits.json"
    rows = calibration_rows(read_splits(splits)) if splits.is_file() else []
    if per_class is None and rows:
        paths, labels = _recorded_images(rows, Path(data_dir), splits, "calibration image")
        return paths, labels, "the ONNX int8 calibration images"
    paths, labels = discover(data_dir)
    pick = balanced_subset(labels, per_class or TrainRecipe.calibration_per_class, seed=seed)
    why = "a fresh draw" if rows else "a fresh draw: the bundle records no calibration images"
    return [paths[i] for i in pick], labels[pick], why


def validation_images(bundle_dir: str | os.PathLike, data_dir: str | os.PathLike
                      ) -> tuple[list[str], np.ndarray] | None:
    """The bundle's validation split found under ``data_dir`` (sha256 checked), or ``None``
    when the bundle records none. Never trained on; a second, larger sample for agreement."""
    from training.ingest import read_splits

    splits = Path(bundle_dir) / "splits.json"
    rows = [r for r in read_splits(splits)["files"] if r["split"] == "val"] \
        if splits.is_file() else []
    return _recorded_images(rows, Path(data_dir), splits, "validation image") if rows else None


def _recorded_images(rows: list[dict], data_dir: Path, splits: Path, what: str
                     ) -> tuple[list[str], np.ndarray]:
    from edge.bundle import sha256_file
    from training.ingest import LABELS

    paths, labels = [], []
    for row in rows:
        path = data_dir / row["path"]
        if not path.is_file():
            raise CalibrationMismatch(f"{path}: {what} recorded in {splits} is missing; pass "
                                      "the bundle's training folder")
        if sha256_file(path) != row["sha256"]:
            raise CalibrationMismatch(f"{path}: differs from the {what} recorded in {splits} "
                                      "(sha256); pass the bundle's training folder")
        paths.append(str(path))
        labels.append(LABELS[row["label"]])
    return paths, np.asarray(labels, dtype=np.int64)


def add_tflite_to_bundle(bundle_dir: str | os.PathLike, *, data_dir: str | os.PathLike,
                         eval_sets: dict[str, str | os.PathLike],
                         calibration_per_class: int | None = None,
                         seed: int = 0, threads: int = 2, env: str | os.PathLike | None = None,
                         log=print) -> dict:
    """Convert, gate and register the TFLite files of ``bundle_dir``; returns the report.

    ``data_dir`` is the training ImageFolder; the calibration tiles are the bundle's own
    int8 calibration images found there (:func:`calibration_images`), normalized by the
    edge kernel; ``eval_sets`` maps a name to a held-out
    ImageFolder, the first one gating. Raises
    :class:`~training.export.gate.ExportRefused` when a variant fails the gate.
    """
    from edge.bundle import FORMATS, load_bundle, sha256_file
    from training.data import discover, load_dataset
    from training.evaluate import evaluate_outputs, predict_onnx
    from training.export.gate import ExportRefused
    from training.export.tflite import FORMATS as TFLITE_FORMATS
    from training.export.tflite import check_parity, convert_stages, predict_tflite
    from training.pipeline import _summary

    if not eval_sets:
        raise ValueError("give at least one held-out set (--eval NAME=DIR): the parity gate needs it")
    bundle = load_bundle(bundle_dir)
    bundle_dir = Path(bundle.root)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    load_kw = {"size": bundle.input_size, "low": bundle.low, "high": bundle.high,
               "workers": threads}
    thr = {"threshold": bundle.stage1_threshold, "temperature": bundle.temperature,
           "unknown_threshold": bundle.unknown_threshold}

    paths, labels, source = calibration_images(bundle_dir, data_dir,
                                               per_class=calibration_per_class, seed=seed)
    calib = load_dataset(paths, labels, **load_kw)
    log(f"calibration: {len(calib)} tiles from {data_dir} ({source})")
    stages = ("stage1",) if bundle.binary else TFLITE_STAGES
    widths = {"stage1": 1, "stage2": bundle.stage2_outputs}
    onnx_files = {s: bundle.file(s, "onnx").path for s in stages}
    conversions = convert_stages(onnx_files, bundle_dir, calib.x, env=env)
    formats = tuple(TFLITE_FORMATS)

    sources = {name: discover(folder) for name, folder in eval_sets.items()}
    val = validation_images(bundle_dir, data_dir)
    if val is not None and "val" not in sources:
        sources["val"] = val
        log(f"also reported, not gating: the bundle's validation split ({len(val[0])} images)")
    evaluation: dict[str, dict[str, dict]] = {}
    for set_name, (p, y) in sources.items():
        ds = load_dataset(p, y, **load_kw)
        ref = {s: predict_onnx(onnx_files[s], ds.x, threads=threads) for s in stages}
        int8 = {s: predict_onnx(bundle.file(s, "onnx-int8").path, ds.x, threads=threads)
                for s in stages}
        evaluation[set_name] = {"onnx": evaluate_outputs(ref, ds.y, **thr, reference=ref),
                                "onnx-int8": evaluate_outputs(int8, ds.y, **thr, reference=ref)}
        for fmt in formats:
            outs = {s: predict_tflite(conversions[s].files[fmt], ds.x, stage=s, fmt=fmt,
                                      threads=threads, outputs=widths[s]) for s in stages}
            evaluation[set_name][fmt] = evaluate_outputs(outs, ds.y, **thr, reference=ref)
        log(f"{set_name}: " + ", ".join(
            f"{fmt} s1 recall {evaluation[set_name][fmt]['stage1']['recall']:.4f}"
            + ("" if bundle.binary else
               f" s2 mF1 {evaluation[set_name][fmt]['stage2']['macro_f1']:.4f}")
            for fmt in ("onnx", "onnx-int8", *formats)))

    gate_set = next(iter(eval_sets))
    report = {"gate_set": gate_set,
              "conversions": {s: c.summary() for s, c in conversions.items()},
              "parity": {}, "evaluation": {s: {f: _summary(m) for f, m in e.items()}
                                           for s, e in evaluation.items()}}
    refused = None
    for fmt in formats:
        try:
            report["parity"][fmt] = check_parity(evaluation[gate_set], fmt)
        except ExportRefused as err:
            report["parity"][fmt] = err.drops.get(fmt, err.drops)
            refused = refused or err
    report_dir = bundle_dir / "report"
    report_dir.mkdir(exist_ok=True)
    (report_dir / "tflite.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if refused is not None:
        for c in conversions.values():
            for path in c.files.values():
                Path(path).unlink(missing_ok=True)
        raise refused

    for stage, conv in conversions.items():
        for fmt, path in conv.files.items():
            manifest["files"][stage][fmt] = {
                "path": Path(path).resolve().relative_to(bundle_dir.resolve()).as_posix(),
                "sha256": sha256_file(path), "format": FORMATS[fmt]}
    for fmt in formats:
        manifest["metrics"][fmt] = {s: report["evaluation"][s][fmt] for s in evaluation}
        manifest["metrics"][fmt]["parity"] = report["parity"][fmt]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_bundle(bundle_dir)  # the updated manifest must verify
    return report
