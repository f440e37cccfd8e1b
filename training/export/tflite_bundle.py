"""Add the TFLite int8 files to a trained bundle, behind the parity gate.

``semedge export --format tflite --bundle DIR --data TRAIN_DIR --eval NAME=DIR ...``:
convert stage 1 and stage 2 (ONNX fp32 → onnx2tf → int8 with float I/O, and full-integer),
evaluate them next to ONNX fp32 and int8 on every held-out set, refuse (and leave the
bundle untouched) when the first set fails the gate, else hash the files into
``manifest.json`` with their metrics and parity rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["TFLITE_STAGES", "add_tflite_to_bundle"]

TFLITE_STAGES = ("stage1", "stage2")
"""Stages converted (the monolithic baseline stays ONNX: only ``semedge bench`` runs it)."""


def add_tflite_to_bundle(bundle_dir: str | os.PathLike, *, data_dir: str | os.PathLike,
                         eval_sets: dict[str, str | os.PathLike], calibration_per_class: int = 48,
                         seed: int = 0, threads: int = 2, env: str | os.PathLike | None = None,
                         log=print) -> dict:
    """Convert, gate and register the TFLite files of ``bundle_dir``; returns the report.

    ``data_dir`` is the training ImageFolder (the calibration tiles are a class-balanced
    sample of it, normalized by the edge kernel); ``eval_sets`` maps a name to a held-out
    ImageFolder, the first one gating. Raises
    :class:`~training.export.gate.ExportRefused` when a variant fails the gate.
    """
    from edge.bundle import FORMATS, load_bundle, sha256_file  # noqa: PLC0415
    from training.data import balanced_subset, discover, load_dataset  # noqa: PLC0415
    from training.evaluate import evaluate_outputs, predict_onnx  # noqa: PLC0415
    from training.export.gate import ExportRefused  # noqa: PLC0415
    from training.export.tflite import FORMATS as TFLITE_FORMATS  # noqa: PLC0415
    from training.export.tflite import check_parity, convert_stages, predict_tflite  # noqa: PLC0415
    from training.pipeline import _summary  # noqa: PLC0415

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

    paths, labels = discover(data_dir)
    pick = balanced_subset(labels, calibration_per_class, seed=seed)
    calib = load_dataset([paths[i] for i in pick], labels[pick], **load_kw)
    log(f"calibration: {len(calib)} tiles from {data_dir}")
    onnx_files = {s: bundle.file(s, "onnx").path for s in TFLITE_STAGES}
    conversions = convert_stages(onnx_files, bundle_dir, calib.x, env=env)
    formats = tuple(TFLITE_FORMATS)

    evaluation: dict[str, dict[str, dict]] = {}
    for set_name, folder in eval_sets.items():
        p, y = discover(folder)
        ds = load_dataset(p, y, **load_kw)
        ref = {s: predict_onnx(onnx_files[s], ds.x, threads=threads) for s in TFLITE_STAGES}
        int8 = {s: predict_onnx(bundle.file(s, "onnx-int8").path, ds.x, threads=threads)
                for s in TFLITE_STAGES}
        evaluation[set_name] = {"onnx": evaluate_outputs(ref, ds.y, **thr, reference=ref),
                                "onnx-int8": evaluate_outputs(int8, ds.y, **thr, reference=ref)}
        for fmt in formats:
            outs = {s: predict_tflite(conversions[s].files[fmt], ds.x, stage=s, fmt=fmt,
                                      threads=threads) for s in TFLITE_STAGES}
            evaluation[set_name][fmt] = evaluate_outputs(outs, ds.y, **thr, reference=ref)
        log(f"{set_name}: " + ", ".join(
            f"{fmt} s1 recall {evaluation[set_name][fmt]['stage1']['recall']:.4f} "
            f"s2 mF1 {evaluation[set_name][fmt]['stage2']['macro_f1']:.4f}"
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
