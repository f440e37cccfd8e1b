"""``semedge train`` and ``semedge export`` (wired in ``edge/_workstation.py``).

Importing this module is cheap: torch, onnx and onnxruntime are imported only when a
command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

__all__ = ["add_data_arguments", "add_export_arguments", "add_train_arguments", "run_data",
           "run_export", "run_train"]

EXPORT_FORMATS = ("onnx", "onnx-int8")


def _eval_set(text: str):
    from training.pipeline import EvalSet

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return EvalSet(name, Path(path))


DEFAULT_BUNDLE_NAME = "default"
"""``--init default`` / ``--complete-from default``: the bundle shipped in the package."""


def _bundle_folder(text: str | None) -> Path | None:
    """The folder ``text`` names: the shipped default bundle's for ``default`` (a folder
    of that name in the working directory is given as ``./default``)."""
    if text is None or text != DEFAULT_BUNDLE_NAME:
        return None if text is None else Path(text)
    from edge.bundle import default_bundle_path

    return default_bundle_path()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``semedge train``."""
    parser.add_argument("--data", type=Path, default=None,
                        help="ImageFolder: DIR/<label>/*.png|tif|jpg with labels from "
                             "docs/classes.md, other_defect and defective (any subset: "
                             "normal/defective trains stage 1 only, defect classes only "
                             "train stage 2 only)")
    parser.add_argument("--labels", type=Path, default=None, metavar="FILE.csv",
                        help="'path,label' rows instead of label folders (paths relative "
                             "to the CSV's folder)")
    parser.add_argument("--init", default=None, metavar="BUNDLE",
                        help="fine-tune from BUNDLE's checkpoints instead of training from "
                             "scratch ('default': the bundle shipped with semedge); a stage "
                             "the data cannot train is taken from it")
    parser.add_argument("--complete-from", default=None, metavar="BUNDLE",
                        help="train from scratch; a stage the data cannot train is taken "
                             "from BUNDLE ('default': the bundle shipped with semedge)")
    parser.add_argument("--drop-duplicates", action="store_true",
                        help="keep one copy of an image found twice with one label, drop "
                             "every copy of one found with conflicting labels (each "
                             "decision is reported); without it duplicates are an error")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="training recipe TOML (see docs/training.md); default: a "
                             "schedule scaled to the number of images, with early stopping")
    parser.add_argument("--eval", dest="eval_sets", action="append", type=_eval_set,
                        default=[], metavar="NAME=DIR",
                        help="held-out ImageFolder evaluated in every format (repeatable; "
                             "the first one gates the int8 export; a name starting with "
                             "'shifted' is held to the shifted targets). Without it, a test "
                             "split of --data is held out")
    parser.add_argument("--seed", type=int, default=None, help="overrides the recipe's seed")
    parser.add_argument("--target-recall", type=_fraction, default=None, metavar="R",
                        help="stage 1's validation recall target, 0 < R < 1 (default: the "
                             "recipe's; 0.95 without a recipe)")
    parser.add_argument("--max-recall-drop", type=_fraction, default=None, metavar="D",
                        help="stage-1 recall int8 may lose against fp32 on the gate set "
                             "before the export is refused (default 0.005, or two defects "
                             "of the set)")
    parser.add_argument("--max-macro-f1-drop", type=_fraction, default=None, metavar="D",
                        help="stage-2 macro-F1 int8 may lose likewise (default 0.01, or "
                             "any loss from two changed defect answers)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="overrides every model's epoch count")
    parser.add_argument("--samples-per-epoch", type=int, default=None,
                        help="overrides every model's samples per epoch")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and ONNX Runtime threads (default 2; per process "
                             "under torchrun)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models train: auto = CUDA when available, else the "
                             "CPU (thresholds, export and evaluation always run on the CPU)")
    parser.add_argument("--name", default="custom", help="bundle name in the manifest")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="where to save the PyTorch checkpoints (default OUT/checkpoints)")
    parser.add_argument("--no-monolithic", action="store_true",
                        help="skip the monolithic seven-class baseline")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--provenance-command", default=None,
                        help="command recorded in the manifest (default: this train command; "
                             "scripts/build-default-bundle records itself)")
    parser.add_argument("--pipeline-start", type=float, default=None,
                        help="UNIX time the whole recipe started (synth included): the "
                             "manifest then records provenance.pipeline_seconds")


def run_train(args: argparse.Namespace) -> int:
    """Train all stages, export ONNX fp32 + int8, evaluate, write the bundle."""
    from dataclasses import replace

    from edge.bundle import BundleError
    from training.data import DatasetError
    from training.export.gate import ExportRefused
    from training.pipeline import train_bundle
    from training.recipe import load_recipe

    if args.data is None and args.labels is None:
        print("semedge train: give --data DIR (an ImageFolder) or --labels FILE.csv",
              file=sys.stderr)
        return 2
    from training.distributed import DeviceError, resolve_device

    try:
        resolve_device(args.device)
    except DeviceError as err:
        print(f"semedge train: {err}", file=sys.stderr)
        return 2
    if args.data is None:
        args.data = args.labels.parent
    try:
        recipe = load_recipe(args.recipe)
    except ValueError as err:
        print(f"semedge train: {err}", file=sys.stderr)
        return 2
    recipe = recipe.with_overrides(seed=args.seed, threads=args.threads,
                                   max_recall_drop=args.max_recall_drop,
                                   max_macro_f1_drop=args.max_macro_f1_drop
                                   ).with_epochs(args.epochs)
    if args.samples_per_epoch is not None:
        recipe = replace(recipe, **{k: replace(getattr(recipe, k),
                                               samples_per_epoch=args.samples_per_epoch)
                                    for k in ("stage1", "stage2", "monolithic")})
    if args.no_monolithic:
        recipe = replace(recipe, train_monolithic=False)
    command = args.provenance_command or _command_line(args)
    try:
        train_bundle(args.data, args.out, recipe=recipe, eval_sets=args.eval_sets,
                     checkpoint_dir=args.checkpoints, name=args.name, command=command,
                     recipe_path=str(args.recipe) if args.recipe else None, quiet=args.quiet,
                     pipeline_start=args.pipeline_start, labels_csv=args.labels,
                     init=_bundle_folder(args.init),
                     complete_from=_bundle_folder(args.complete_from), device=args.device,
                     drop_duplicates=args.drop_duplicates,
                     scale_to_data=(args.recipe is None and args.epochs is None
                                    and args.samples_per_epoch is None),
                     target_recall=args.target_recall)
    except ExportRefused as err:
        print(f"semedge train: {err}\n{_refusal_hint(args.out)}", file=sys.stderr)
        return 3
    except (DatasetError, BundleError, ValueError) as err:
        text = str(err)
        print(text if text.startswith("semedge train") else f"semedge train: {text}",
              file=sys.stderr)
        return 2
    return 0


def _refusal_hint(out: Path) -> str:
    """What a refused user can do next."""
    return (f"semedge train: no bundle written; the numbers are in {out / 'report'}. Train "
            "again with another --seed, or, having read them, allow more drift with "
            "--max-recall-drop / --max-macro-f1-drop")


def _command_line(args: argparse.Namespace) -> str:
    """The ``semedge train`` command that reproduces this run (for the manifest)."""
    parts = ["semedge", "train", "--data", str(args.data), "--out", str(args.out)]
    for flag, value in (("--labels", args.labels), ("--init", args.init),
                        ("--complete-from", args.complete_from)):
        if value is not None:
            parts += [flag, str(value)]
    if args.recipe is not None:
        parts += ["--recipe", str(args.recipe)]
    for es in args.eval_sets:
        parts += ["--eval", f"{es.name}={es.path}"]
    for flag, value in (("--seed", args.seed), ("--target-recall", args.target_recall),
                        ("--max-recall-drop", args.max_recall_drop),
                        ("--max-macro-f1-drop", args.max_macro_f1_drop),
                        ("--epochs", args.epochs),
                        ("--samples-per-epoch", args.samples_per_epoch),
                        ("--threads", args.threads), ("--checkpoints", args.checkpoints),
                        ("--device", None if args.device == "auto" else args.device)):
        if value is not None:
            parts += [flag, str(value)]
    if args.name != "custom":
        parts += ["--name", args.name]
    if args.no_monolithic:
        parts.append("--no-monolithic")
    if args.drop_duplicates:
        parts.append("--drop-duplicates")
    return " ".join(shlex.quote(p) for p in parts)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``semedge export``."""
    parser.add_argument("--setup-tflite", action="store_true",
                        help="create the pinned onnx2tf/TensorFlow environment "
                             "(scripts/setup-tflite) and exit")
    parser.add_argument("--format", choices=(*EXPORT_FORMATS, "tflite"),
                        help="onnx (fp32) or onnx-int8 (static QDQ, uint8 activations) of one "
                             "--checkpoint; tflite: add TFLite int8 files to a --bundle")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint written by semedge train (OUT/checkpoints/*.pt)")
    parser.add_argument("--out", type=Path, default=None, help="ONNX file to write")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="ImageFolder to calibrate int8 on (class-balanced subset); for "
                             "tflite, the bundle's training folder")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder to add the TFLite files to (--format tflite)")
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=DIR",
                        type=_eval_set,
                        help="held-out ImageFolder for the TFLite parity gate (the first gates)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="draw this many calibration images per class instead of reusing "
                             "the ones the bundle's ONNX int8 models were calibrated on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)


def _run_tflite_export(args: argparse.Namespace) -> int:
    from training.export.gate import ExportRefused
    from training.export.tflite import TFLiteEnvMissing
    from training.export.tflite_bundle import add_tflite_to_bundle

    if args.bundle is None or args.calibration is None or not args.eval:
        print("semedge export: --format tflite needs --bundle DIR, --calibration TRAIN_DIR and "
              "at least one --eval NAME=DIR", file=sys.stderr)
        return 2
    try:
        eval_sets = {es.name: es.path for es in args.eval}
        report = add_tflite_to_bundle(args.bundle, data_dir=args.calibration, eval_sets=eval_sets,
                                      calibration_per_class=args.per_class, seed=args.seed,
                                      threads=args.threads,
                                      log=lambda m: print(m, file=sys.stderr))
    except TFLiteEnvMissing as err:
        print(f"semedge export: {err}", file=sys.stderr)
        return 2
    except ExportRefused as err:
        print(f"semedge export: {err}", file=sys.stderr)
        return 3
    for fmt, row in report["parity"].items():
        print(f"{fmt}: agreement vs ONNX fp32 {row['agreement_vs_onnx']}, pass {row['pass']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Re-export one checkpoint as ONNX fp32 or int8.

    This writes a model file only; a bundle's manifest (hashes, thresholds, metrics)
    comes from ``semedge train``, which runs the drift gate.
    """
    import tempfile

    if args.setup_tflite:
        from training.export.tflite import run_setup

        return run_setup()
    if args.format == "tflite":
        return _run_tflite_export(args)
    if args.format is None or args.checkpoint is None or args.out is None:
        print("semedge export: give --format onnx|onnx-int8 with --checkpoint and --out, "
              "--format tflite with --bundle, or --setup-tflite", file=sys.stderr)
        return 2

    from training.data import DatasetError, balanced_subset, discover, load_dataset
    from training.export.onnx import export_onnx
    from training.export.quantize import quantize_int8
    from training.pipeline import load_checkpoint
    from training.recipe import TrainRecipe

    try:
        model, ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"semedge export: {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    size = int(ckpt.get("size", 224))
    if args.format == "onnx":
        export_onnx(model, args.out, size=size)
        print(args.out)
        return 0
    if args.calibration is None:
        print("semedge export: --format onnx-int8 needs --calibration DIR (an ImageFolder)",
              file=sys.stderr)
        return 2
    try:
        paths, labels = discover(args.calibration)
    except DatasetError as err:
        print(f"semedge export: {err}", file=sys.stderr)
        return 2
    pick = balanced_subset(labels, args.per_class or TrainRecipe.calibration_per_class, seed=args.seed)
    calib = load_dataset([paths[i] for i in pick], labels[pick], size=size,
                         low=float(ckpt.get("low", 1.0)), high=float(ckpt.get("high", 99.0)))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx", size=size)
        quantize_int8(fp32, args.out, calib.x)
    print(args.out)
    return 0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``semedge data`` (public data sets written as ImageFolders)."""
    sub = parser.add_subparsers(dest="dataset", required=True)
    elpv = sub.add_parser("elpv", help="ELPV solar-cell EL images (pip install elpv-dataset; "
                                       "CC BY-NC-SA 4.0, never commit the output)")
    elpv.add_argument("--out", required=True, type=Path, help="folder to write")
    elpv.add_argument("--classes", choices=("binary", "four"), default="binary",
                      help="binary: normal/defective (probability >= 0.5); four: p0 p33 p67 "
                           "p100 (the expert probability)")
    elpv.add_argument("--seed", type=int, default=0, help="seed of the 75/25 split")
    elpv.add_argument("--test-fraction", type=float, default=0.25)
    elpv.add_argument("--limit", type=int, default=None,
                      help="write only the first N cells (tests)")


def run_data(args: argparse.Namespace) -> int:
    """Write a public data set as ``OUT/train/<label>/`` and ``OUT/test/<label>/``."""
    from training.datasets.elpv import ElpvMissing, write_elpv

    try:
        summary = write_elpv(args.out, classes=args.classes, seed=args.seed,
                             test_fraction=args.test_fraction, limit=args.limit)
    except ElpvMissing as err:
        print(f"semedge data: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: train {summary['counts']['train']}, test {summary['counts']['test']}")
    return 0
