"""``semedge eval``: arguments, progress bar, terminal tables, JSON and PNGs.

The scanning, classifying and scoring are in :mod:`edge.evaluation`; this module only
parses, prints and writes files. Plots: ``confusion.png`` and ``stage1.png``
(matplotlib, Agg, imported lazily — not a runtime dependency) and ``worst_mistakes.png``
(a contact sheet drawn with OpenCV). Exit status: 0 done, 1 some image could not be read (the scorecard is
still written), 2 usage or setup error (data folder, bundle, target, backend,
``--plots`` without matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge._plotting import INSTALL_HINT, pyplot
from edge.evaluation import Prediction, Scorecard, mistake_kind, stage1_scores
from edge.metrics import roc_curve

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "INSTALL_HINT",
    "add_arguments",
    "contact_sheet",
    "print_scorecard",
    "run",
    "write_confusion_png",
    "write_json",
    "write_plots",
    "write_stage1_png",
]


CONFUSION_PNG = "confusion.png"
WORST_PNG = "worst_mistakes.png"
STAGE1_PNG = "stage1.png"

# BGR colours of the contact-sheet captions, by mistake kind
_KIND_COLOURS = {
    "missed": (60, 60, 255), "false_alarm": (0, 200, 255), "wrong_class": (80, 80, 255),
    "unknown": (230, 230, 230), "out_of_taxonomy_as_class": (255, 160, 60),
}


# ------------------------------------------------------------------------- format


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


# ------------------------------------------------------------------------ terminal


def print_scorecard(card: Scorecard, console: Console, *, worst: int = 8) -> None:
    """Readable rich tables: data, stage 1, stage 2 per class, out-of-taxonomy, the
    worst mistakes."""
    from rich.markup import escape
    from rich.table import Table

    d, run = card.data, card.run
    head = f"{d['read']} of {d['images']} images read"
    if d["errors"]:
        head += f", [red]{d['errors']} errors[/red]"
    if run:
        head += (f" — bundle {escape(run['bundle']['name'])!s} on {escape(run['target'])} "
                 f"({escape(run['backend'])}), {run['seconds']:.1f} s")
    console.print(head)
    folders = ", ".join(f"{escape(k)} {v}" for k, v in d["folders"].items())
    console.print(f"folders: {folders}", highlight=False)
    if d["missing_classes"]:
        console.print(f"classes with no images: {', '.join(d['missing_classes'])}",
                      highlight=False)

    s1 = card.stage1
    t = Table(title="stage 1: defective (any folder but normal) vs normal")
    for col in ("recall", "precision", "specificity", "TP", "FN", "TN", "FP"):
        t.add_column(col, justify="right")
    t.add_row(_f(s1["recall"]), _f(s1["precision"]), _f(s1["specificity"]),
              str(s1["tp"]), str(s1["fn"]), str(s1["tn"]), str(s1["fp"]))
    console.print(t)
    rank = s1["ranking"]
    at = " / ".join(f"{float(r) * 100:.0f} %" for r in rank["specificity_at_recall"])
    spec = " / ".join(_f(v) for v in rank["specificity_at_recall"].values())
    thresholds = " / ".join(_f(v, 4) for v in rank["threshold_at_recall"].values())
    console.print(f"stage 1 threshold-free (highest tile score per image): ROC AUC "
                  f"{_f(rank['roc_auc'])}; specificity at {at} recall: {spec} "
                  f"(stage1_threshold {thresholds})", highlight=False)
    if s1.get("by_visibility"):
        bands = "; ".join(f"{band} {_f(v['recall'])} ({v['flagged']}/{v['defects']})"
                          for band, v in s1["by_visibility"].items())
        console.print(f"stage 1 recall by defect visibility (Rose k: sub-visible < 3, "
                      f"marginal 3-5, visible >= 5): {bands}", highlight=False)

    if "skipped" in card.stage2:
        c = card.cascade
        console.print(f"{card.stage2['skipped']}; accuracy on {c['images']} images: "
                      f"{_f(c['accuracy'])}", highlight=False)
    else:
        _print_stage2(card, console)
    _print_out_of_taxonomy(card, console)
    _print_worst(card, console, worst)
    for p in card.errors[:10]:
        console.print(f"[red]error[/red]: {escape(p.error or '')}")
    if len(card.errors) > 10:
        console.print(f"… and {len(card.errors) - 10} more errors (see the JSON)")


def _print_stage2(card: Scorecard, console: Console) -> None:
    """Stage 2 per class, end to end and given flagged, and the whole cascade's line."""
    from rich.table import Table

    e2e, given = card.stage2["end_to_end"], card.stage2["given_flagged"]
    t = Table(title="stage 2 on taxonomy defects: end to end (a missed defect or unknown is "
                    "wrong) | given stage 1 flagged")
    for col in ("class", "images", "missed", "unknown", "precision", "recall", "F1",
                "recall | flagged", "F1 | flagged"):
        t.add_column(col, justify="left" if col == "class" else "right")
    cols = e2e["confusion"]["columns"]
    missed_col, unknown_col = cols.index("normal"), cols.index("unknown")
    for i, c in enumerate(e2e["confusion"]["rows"]):
        a = e2e["per_class"].get(c)
        if a is None:
            continue
        g = given["per_class"].get(c, {})
        row = e2e["confusion"]["matrix"][i]
        t.add_row(c, str(a["support"]), str(row[missed_col]), str(row[unknown_col]),
                  _f(a["precision"]), _f(a["recall"]), _f(a["f1"]),
                  _f(g.get("recall")), _f(g.get("f1")))
    t.add_section()
    t.add_row("macro-F1", str(e2e["images"]), str(e2e["missed"]), str(e2e["unknown"]),
              "", "", _f(e2e["macro_f1"]), "", _f(given["macro_f1"]))
    console.print(t)
    c = card.cascade
    console.print(f"whole cascade on taxonomy images ({c['images']}): accuracy "
                  f"{_f(c['accuracy'])}, 7-class macro-F1 {_f(c['macro_f1'])}",
                  highlight=False)


def _print_out_of_taxonomy(card: Scorecard, console: Console) -> None:
    """Per out-of-taxonomy folder: flagged by stage 1, and ``unknown`` of those."""
    from rich.markup import escape
    from rich.table import Table

    o = card.out_of_taxonomy
    if o["images"]:
        t = Table(title="defects outside the taxonomy")
        for col in ("folder", "images", "flagged by stage 1", "unknown (of flagged)"):
            t.add_column(col, justify="left" if col == "folder" else "right")
        for name, row in o["by_folder"].items():
            t.add_row(escape(name), str(row["images"]),
                      f"{row['flagged']} ({_pct(row['flagged_share'])})",
                      f"{row['unknown']} ({_pct(row['unknown_share_of_flagged'])})")
        if len(o["by_folder"]) > 1:
            t.add_section()
            t.add_row("all", str(o["images"]), f"{o['flagged']} ({_pct(o['flagged_share'])})",
                      f"{o['unknown']} ({_pct(o['unknown_share_of_flagged'])})")
        console.print(t)
    else:
        console.print("no out-of-taxonomy folder: out-of-taxonomy shares not measured",
                      highlight=False)


def _print_worst(card: Scorecard, console: Console, worst: int) -> None:
    """The worst mistakes, most confident first."""
    from rich.markup import escape
    from rich.table import Table

    if card.worst and worst:
        t = Table(title=f"worst mistakes (top {min(worst, len(card.worst))})")
        for col in ("file", "truth", "answer", "score", "stage 1", "kind"):
            t.add_column(col, justify="right" if col in ("score", "stage 1") else "left")
        for p in card.worst[:worst]:
            t.add_row(escape(p.path), escape(p.truth), p.label, _f(p.score),
                      _f(p.stage1_score), mistake_kind(p.truth, p.label) or "")
        console.print(t)


# ---------------------------------------------------------------------------- files


def write_json(card: Scorecard, path: str | Path) -> None:
    """Write the scorecard JSON (``-``: stdout)."""
    text = json.dumps(card.to_json(), indent=1, allow_nan=False)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")



def write_confusion_png(card: Scorecard, path: str | Path) -> None:
    """The image-level confusion matrix (rows: folders with images; columns: the
    answers) as a PNG; colour = share of the row, text = count."""
    plt = pyplot()
    conf = card.confusion
    matrix = np.asarray(conf["matrix"], np.int64)
    keep = matrix.sum(axis=1) > 0
    rows = [r for r, k in zip(conf["rows"], keep) if k]
    matrix = matrix[keep] if keep.any() else np.zeros((1, len(conf["columns"])), np.int64)
    rows = rows or ["(no images)"]
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.85 * len(conf["columns"]), 1.2 + 0.55 * len(rows)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [f"{r} ({n})" for r, n in zip(rows, matrix.sum(axis=1))])
    ax.set_xlabel("answer")
    ax.set_ylabel("folder (images)")
    s1 = card.stage1
    second = ("stage 1 only" if "skipped" in card.stage2 else
              f"stage-2 macro-F1 {_f(card.stage2['end_to_end']['macro_f1'])}")
    ax.set_title(f"stage-1 recall {_f(s1['recall'])}, specificity {_f(s1['specificity'])}; "
                 f"{second}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_stage1_png(card: Scorecard, path: str | Path) -> None:
    """Stage 1 on these images as a PNG: the ROC curve of the image scores with the
    run's operating point and the thresholds of :data:`RANKING_RECALLS`, and the score
    histograms of normal and defective images (each as a share of its group) with the
    run's threshold."""
    plt = pyplot()
    truth, scores = stage1_scores(card.predictions)
    s1, rank = card.stage1, card.stage1["ranking"]
    threshold = card.run.get("stage1_threshold")
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    if truth.any() and (~truth).any():
        far, rec = roc_curve(truth, scores)
        roc.plot(far, rec, color="tab:blue", lw=1.5,
                 label=f"images (AUC {_f(rank['roc_auc'])})")
    roc.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    markers = iter("os^vD")
    for key, t in rank["threshold_at_recall"].items():
        spec = rank["specificity_at_recall"][key]
        if math.isfinite(t) and math.isfinite(spec):
            roc.plot(1 - spec, float(key), next(markers, "o"), color="tab:green", ms=5,
                     label=f"recall {key}: threshold {t:.3g}, specificity {spec:.2f}")
    if math.isfinite(s1["recall"]) and math.isfinite(s1["specificity"]):
        roc.plot(1 - s1["specificity"], s1["recall"], "*", color="tab:red", ms=11,
                 label=("this run" if threshold is None else f"this run (threshold {threshold:.3g})"))
    roc.set_xlim(-0.02, 1.02)
    roc.set_ylim(-0.02, 1.02)
    roc.set_xlabel("false-alarm rate (normal images flagged)")
    roc.set_ylabel("recall (defect images flagged)")
    roc.set_title("stage 1: image score (highest tile)", fontsize=9)
    roc.legend(loc="lower right", fontsize=8)
    bins = np.linspace(0.0, 1.0, 41)
    for mask, name, colour in ((~truth, "normal", "tab:green"), (truth, "defective", "tab:red")):
        if mask.any():
            hist.hist(scores[mask], bins=bins, alpha=0.55, color=colour,
                      weights=np.full(int(mask.sum()), 1.0 / mask.sum()),
                      label=f"{name} ({int(mask.sum())} images)")
    if threshold is not None:
        hist.axvline(threshold, color="k", lw=1, ls="--", label=f"threshold {threshold:.3g}")
    hist.set_xlabel("stage-1 score (highest tile)")
    hist.set_ylabel("share of the group")
    hist.legend(fontsize=8)
    hist.set_title(f"recall {_f(s1['recall'])}, specificity {_f(s1['specificity'])}",
                   fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _thumbnail(path: Path, size: int) -> np.ndarray:
    """The image, percentile-normalized like the cascade sees it, fitted into a
    ``size`` square (uint8 gray); a grey square with an X when it cannot be read."""
    import cv2

    from edge import preprocess

    cell = np.full((size, size), 64, np.uint8)
    try:
        image = preprocess.read_image(path)
        gray = (preprocess.normalize(image) * 255.0 + 0.5).astype(np.uint8)
    except Exception:  # noqa: BLE001  (a file that changed since: still draw the cell)
        cv2.line(cell, (0, 0), (size - 1, size - 1), 160, 1)
        cv2.line(cell, (0, size - 1), (size - 1, 0), 160, 1)
        return cell
    h, w = gray.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    small = cv2.resize(gray, (nw, nh), interpolation=interp)
    y, x = (size - nh) // 2, (size - nw) // 2
    cell[y:y + nh, x:x + nw] = small
    return cell


def contact_sheet(card: Scorecard, root: str | Path, path: str | Path, *,
                  cell: int = 176, columns: int = 6) -> int:
    """Write the worst mistakes as a PNG grid, each image captioned with
    ``truth -> answer``, the score and stage-1 score, and the file name.

    Returns
    -------
    int
        Images drawn (0 writes a sheet that says there were no mistakes).
    """
    import cv2

    root = Path(root)
    items = card.worst
    font, caption = cv2.FONT_HERSHEY_SIMPLEX, 46
    columns = max(1, min(columns, len(items) or 1))
    n_rows = max(1, math.ceil(len(items) / columns))
    header = 28
    sheet = np.full((header + n_rows * (cell + caption), columns * cell, 3), 24, np.uint8)
    wrong = sum(mistake_kind(p.truth, p.label) is not None for p in card.predictions if p.ok)
    title = (f"worst mistakes: {len(items)} of {wrong} wrong answers"
             if items else "no mistakes")
    cv2.putText(sheet, title, (6, 19), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    for k, p in enumerate(items):
        r, c = divmod(k, columns)
        y0, x0 = header + r * (cell + caption), c * cell
        thumb = _thumbnail(root / p.path, cell - 4)
        sheet[y0 + 2:y0 + cell - 2, x0 + 2:x0 + cell - 2] = thumb[..., None]
        kind = mistake_kind(p.truth, p.label) or ""
        colour = _KIND_COLOURS.get(kind, (255, 255, 255))
        lines = [f"{p.truth} -> {p.label}",
                 f"score {p.score:.2f}  s1 {p.stage1_score:.2f}",
                 Path(p.path).name]
        for i, text in enumerate(lines):
            text = text.encode("ascii", "replace").decode()
            while len(text) > 4 and cv2.getTextSize(text, font, 0.38, 1)[0][0] > cell - 6:
                text = text[:-2] + "~"
            cv2.putText(sheet, text, (x0 + 3, y0 + cell + 12 + 14 * i), font, 0.38,
                        colour if i == 0 else (200, 200, 200), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"{path}: could not write the contact sheet")
    return len(items)


def write_plots(card: Scorecard, root: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``confusion.png``, ``stage1.png`` and ``worst_mistakes.png`` into ``out_dir``.

    Raises
    ------
    ImportError
        matplotlib is missing (with the install hint).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_confusion_png(card, out / CONFUSION_PNG)
    write_stage1_png(card, out / STAGE1_PNG)
    contact_sheet(card, root, out / WORST_PNG)
    return [out / CONFUSION_PNG, out / STAGE1_PNG, out / WORST_PNG]


# ------------------------------------------------------------------------------ CLI


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``semedge eval``."""
    p.add_argument("--data", required=True, metavar="DIR",
                   help="labelled folder: sub-folders named after the classes (normal, ler, "
                        "open, short, void, malformed_via, crack); any other sub-folder "
                        "holds defects outside the taxonomy")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="model bundle folder (default: the bundle shipped in the package)")
    p.add_argument("--target", default="auto", help="target profile (default: auto)")
    p.add_argument("--provider", action="append", dest="providers", metavar="EP",
                   help="onnxruntime execution provider to use instead of the profile's; "
                        "repeat for a priority list; a missing one is an error")
    p.add_argument("--json", metavar="FILE", dest="json_path",
                   help="write the scorecard with every prediction as JSON "
                        "('-': stdout, the tables go to stderr)")
    p.add_argument("--plots", metavar="DIR",
                   help=f"write {CONFUSION_PNG}, {STAGE1_PNG} and {WORST_PNG} into DIR "
                        "(needs matplotlib)")
    p.add_argument("--worst", type=_count, default=24, metavar="N",
                   help="mistakes on the contact sheet and in the JSON (default: 24)")
    p.add_argument("--queue", type=_count, default=0, metavar="N",
                   help="also write the N images to label next (wrong answers, then the "
                        "least sure) as a CSV that `semedge train --labels` reads")
    p.add_argument("--queue-csv", metavar="FILE", default="label-queue.csv",
                   help="where --queue writes (default: label-queue.csv; an existing file "
                        "is never overwritten)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def _error(message: str) -> int:
    print(f"semedge eval: error: {message}", file=sys.stderr)
    return 2


def _write_queue(card: Scorecard, root: Path, threshold: float, args: argparse.Namespace,
                 err: Console) -> int:
    """``--queue N``: the CSV, and the queue in the scorecard's ``run``; 2 if the CSV
    cannot be written."""
    from edge.label_queue import label_queue, write_queue_csv

    items = label_queue(card.predictions, args.queue, threshold)
    try:
        path = write_queue_csv(items, root, args.queue_csv)
    except FileExistsError:
        return _error(f"{args.queue_csv}: exists; --queue never overwrites (give "
                      "--queue-csv FILE)")
    except OSError as exc:
        return _error(f"{args.queue_csv}: cannot write the queue ({exc})")
    card.run["queue"] = {"csv": str(path), "images": [
        {"path": q.prediction.path, "truth": q.prediction.truth, "label": q.prediction.label,
         "score": q.prediction.score, "why": q.why} for q in items]}
    err.print(f"semedge eval: {len(items)} images to label next → {path} (edit its "
              "label column, then `semedge train --labels` reads it)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``semedge eval`` with parsed ``args``; return the exit status."""
    from rich.console import Console

    from edge.backends import BackendUnavailable, ProviderError
    from edge.bundle import BundleError, default_bundle_path
    from edge.cascade import load
    from edge.evaluation import evaluate, scan_data

    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error(INSTALL_HINT)
    try:
        data = scan_data(args.data)
    except ValueError as exc:
        return _error(str(exc))
    try:
        cascade = load(args.bundle, target=args.target, providers=args.providers)
    except BundleError as exc:
        default = default_bundle_path()
        if args.bundle is None and not (default / "manifest.json").is_file():
            return _error(f"no default bundle is installed in this semedge package "
                          f"({default} has no manifest.json); evaluate a bundle folder "
                          "with `semedge eval --data DIR --bundle BUNDLE`")
        return _error(str(exc))
    except (ValueError, BackendUnavailable, ProviderError) as exc:
        return _error(str(exc))
    to_stdout = args.json_path == "-"
    console = Console(stderr=to_stdout, highlight=False)
    err = Console(stderr=True, highlight=False)
    err.print(f"semedge eval: {cascade.target_reason}; {len(data)} images in "
              f"{len(data.folders)} folders of {data.root}")
    if data.ignored:
        err.print(f"semedge eval: {len(data.ignored)} image(s) directly in {data.root} "
                  "(in no class folder) ignored")

    progress = task = None
    if not args.no_progress and len(data) > 1 and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True, console=err)
        task = progress.add_task("evaluating", total=len(data))

    def advance(_pred: Prediction) -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    if progress:
        progress.start()
    try:
        card = evaluate(cascade, data, worst=args.worst, on_result=advance)
    finally:
        if progress:
            progress.stop()
    print_scorecard(card, console)
    if args.queue:
        status = _write_queue(card, data.root, cascade.threshold, args, err)
        if status:
            return status
    if args.json_path:
        write_json(card, args.json_path)
        if not to_stdout:
            err.print(f"semedge eval: scorecard JSON → {args.json_path}")
    if args.plots:
        try:
            paths = write_plots(card, data.root, args.plots)
        except (ImportError, OSError) as exc:
            return _error(str(exc))
        err.print(f"semedge eval: plots → {', '.join(str(p) for p in paths)}")
    return 1 if card.errors else 0
