"""Ingestion of real labelled folders: scan, pre-flight report, layouts, splits, leakage.

``semedge train --data DIR`` accepts folders as users have them (``docs/training.md``,
"Ingesting your own images"):

* an ImageFolder ``DIR/<label>/…`` (sub-folders of a label folder are read too), or a
  CSV ``path,label`` (``--labels FILE.csv``; paths relative to the CSV's folder);
* labels: the seven of ``docs/classes.md``, ``other_defect`` (a real defect outside the
  taxonomy) and ``defective`` (a defect whose class is not given); any subset;
* 8/16-bit PNG/TIFF/JPEG/BMP of any size (one image → one tile, ``training.data``).

The **layout** decides what is trained: stage 1 when there are ``normal`` images and
defective ones (any defect label); stage 2 when at least two of the six defect classes
are present; the monolithic baseline when both stages are. So a ``normal``/``defective``
folder trains stage 1 only, a folder of defect classes only trains stage 2 only.

:func:`scan` reads every file once (sha256 of its bytes, then decoded with the edge's
``read_image``) and collects every problem — unknown folder or label names, empty label
folders, files that are not images or cannot be read, the same image twice (by hash,
over the whole set, so duplicates can never straddle splits) — into an
:class:`IngestReport`. ``semedge train`` prints it and exits 2 before any training when
it lists an error. With ``--drop-duplicates`` an exact duplicate keeps one copy and a
duplicate with conflicting labels loses every copy, each decision a line of the report.
Nothing is skipped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from edge.classes import DEFECT_CLASSES
from training.labels import (
    DEFECTIVE,
    DEFECTIVE_FOLDER,
    IMAGE_SUFFIXES,
    LABEL_NAMES,
    LABELS,
    OTHER_DEFECT_FOLDER,
    DatasetError,
)

__all__ = [
    "DEFECTIVE",
    "DEFECTIVE_FOLDER",
    "LABELS",
    "IngestReport",
    "Layout",
    "LeakageError",
    "check_leakage",
    "layout_of",
    "calibration_rows",
    "read_splits",
    "scan",
    "write_splits",
]

PathLike = Union[str, os.PathLike]

SPLITS_FILE = "splits.json"


class LeakageError(ValueError):
    """An evaluation image is also a training/validation image (same sha256)."""


@dataclass(frozen=True)
class Layout:
    """What a labelled set can train.

    Attributes
    ----------
    stage1, stage2, monolithic : bool
    labels : tuple of str
        The label names present, in ``LABELS`` order.
    """

    stage1: bool
    stage2: bool
    monolithic: bool
    labels: tuple[str, ...]

    @property
    def stages(self) -> tuple[str, ...]:
        """The models this layout trains, in training order."""
        return tuple(s for s in ("stage1", "stage2", "monolithic") if getattr(self, s))

    @property
    def name(self) -> str:
        """``full``, ``stage1-only``, ``stage2-only`` or ``none``."""
        if self.stage1 and self.stage2:
            return "full"
        return "stage1-only" if self.stage1 else "stage2-only" if self.stage2 else "none"


def layout_of(labels: Iterable[str]) -> Layout:
    """The :class:`Layout` of a set holding these label names (see the module doc)."""
    present = set(labels)
    defect = [c for c in DEFECT_CLASSES if c in present]
    any_defect = bool(defect) or bool(present & {OTHER_DEFECT_FOLDER, DEFECTIVE_FOLDER})
    stage1 = "normal" in present and any_defect
    stage2 = len(defect) >= 2
    return Layout(stage1, stage2, stage1 and stage2,
                  tuple(n for n in LABELS if n in present))


@dataclass
class IngestReport:
    """Everything :func:`scan` found. ``errors`` non-empty means: do not train.

    Attributes
    ----------
    root : Path
    paths, labels, sha256, shapes, dtypes : lists, one entry per usable image
    errors : list of str
        One line per problem (the file or folder first).
    notes : list of str
        Facts worth knowing that are not errors (resizing, bit depths, layout).
    """

    root: Path
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    shapes: list[tuple[int, int]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # one line per duplicate decision

    @property
    def ok(self) -> bool:
        """Whether the pre-flight found no error."""
        return not self.errors

    @property
    def layout(self) -> Layout:
        """What the labels present can train."""
        return layout_of(LABEL_NAMES[v] for v in set(self.labels))

    def label_array(self) -> np.ndarray:
        """The label indices as an int64 array."""
        return np.asarray(self.labels, dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Images per label name (labels present only)."""
        c = Counter(self.labels)
        return {n: c[v] for n, v in LABELS.items() if c[v]}

    def lines(self, limit: int = 20) -> list[str]:
        """The human-readable report (errors first, at most ``limit`` per kind)."""
        out = [f"data {self.root}: {len(self.paths)} usable images "
               + ", ".join(f"{k} {v}" for k, v in self.counts().items())]
        lay = self.layout
        out.append(f"layout: {lay.name} (trains {', '.join(lay.stages) or 'nothing'})")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  dropped: {d}" for d in self.dropped[:limit]]
        if len(self.dropped) > limit:
            out.append(f"  … and {len(self.dropped) - limit} more duplicate decisions")
        if self.errors:
            out.append(f"{len(self.errors)} problem(s); nothing was trained:")
            by_kind: dict[str, list[str]] = defaultdict(list)
            for e in self.errors:
                by_kind[e.split(":", 1)[-1].strip().split(" ", 1)[0]].append(e)
            for group in by_kind.values():
                out += [f"  error: {e}" for e in group[:limit]]
                if len(group) > limit:
                    out.append(f"  … and {len(group) - limit} more like it")
        return out

    def raise_if_errors(self) -> None:
        """Raise :class:`DatasetError` listing the errors, if there are any."""
        if self.errors:
            raise DatasetError("\n".join(self.lines()))


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing_from_folders(root: Path, report: IngestReport) -> list[tuple[Path, str]]:
    items: list[tuple[Path, str]] = []
    loose = [p.name for p in root.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        report.errors.append(f"{root}: {len(loose)} image(s) outside label folders "
                             f"(e.g. {sorted(loose)[0]}); put them in DIR/<label>/ or pass "
                             "--labels FILE.csv")
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.startswith("."):
            continue
        if sub.name not in LABELS:
            report.errors.append(f"{sub}: unknown label folder; expected one of "
                                 f"{', '.join(LABELS)}")
            continue
        files = sorted(p for p in sub.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(sub).parts))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        for p in files:
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                report.errors.append(f"{p}: unsupported file type {p.suffix or '(none)'} in a "
                                     f"label folder (images: {', '.join(IMAGE_SUFFIXES)})")
        if not images:
            report.errors.append(f"{sub}: empty class (no images in the label folder)")
        items += [(p, sub.name) for p in images]
    return items


def _listing_from_csv(csv_path: Path, report: IngestReport) -> list[tuple[Path, str]]:
    items: list[tuple[Path, str]] = []
    seen: dict[str, int] = {}
    base = csv_path.parent
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as err:
        report.errors.append(f"{csv_path}: cannot read labels CSV ({err})")
        return items
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
            continue
        if len(row) < 2:
            report.errors.append(f"{csv_path}:{n}: expected 'path,label', got {row!r}")
            continue
        rel, label = row[0].strip(), row[1].strip()
        if label not in LABELS:
            report.errors.append(f"{csv_path}:{n}: unknown label {label!r}; expected one of "
                                 f"{', '.join(LABELS)}")
            continue
        if rel in seen:
            report.errors.append(f"{csv_path}:{n}: {rel} is listed twice (first on line "
                                 f"{seen[rel]})")
            continue
        seen[rel] = n
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.errors.append(f"{path}: unsupported file type {path.suffix or '(none)'}")
            continue
        items.append((path, label))
    if not items and not report.errors:
        report.errors.append(f"{csv_path}: no labelled rows")
    return items


def _inspect(path: Path) -> tuple[str | None, tuple[int, int] | None, str | None, str | None]:
    """``(sha256, shape, dtype, error)`` of one file."""
    from edge import preprocess

    try:
        data = path.read_bytes()
    except OSError as err:
        return None, None, None, f"{path}: unreadable ({err.strerror or err})"
    try:
        image = preprocess.read_image(path)
    except Exception as err:  # noqa: BLE001 - ImageReadError, cv2.error…: one bad file, reported
        text = str(err)
        return None, None, None, text if str(path) in text else f"{path}: unreadable ({text})"
    return _sha256_bytes(data), (int(image.shape[0]), int(image.shape[1])), str(image.dtype), None


def scan(root: PathLike, *, labels_csv: PathLike | None = None, size: int = 224,
         workers: int = 2, drop_duplicates: bool = False) -> IngestReport:
    """Scan a labelled set and report every problem (see the module doc).

    Parameters
    ----------
    root : path
        The ImageFolder (or, with ``labels_csv``, the folder reported as the data root).
    labels_csv : path, optional
        ``path,label`` rows (an optional ``path,label`` header; ``#`` comments); paths
        relative to the CSV's folder.
    size : int
        Tile side: the report notes how many images are upscaled or downscaled to it.
    drop_duplicates : bool
        Instead of refusing the same image twice: keep one copy of an exact duplicate
        (the first path in sorted order) and drop every copy of one whose labels
        conflict; each decision is a line of ``dropped``.
    """
    root = Path(root)
    report = IngestReport(root=root)
    if labels_csv is not None:
        listing = _listing_from_csv(Path(labels_csv), report)
    elif not root.is_dir():
        report.errors.append(f"{root}: no such folder")
        return report
    else:
        listing = _listing_from_folders(root, report)
    if not listing:
        if not report.errors:
            report.errors.append(f"{root}: no images in label folders ({', '.join(LABELS)})")
        return report
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(lambda item: _inspect(item[0]), listing))
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, (digest, _, _, error) in enumerate(found):
        if error is not None:
            report.errors.append(error)
        else:
            by_hash[digest].append(i)
    keep = _resolve_duplicates(by_hash, listing, report, drop_duplicates)
    for i in sorted(keep):
        (path, label), (digest, shape, dtype, _) = listing[i], found[i]
        report.paths.append(str(path))
        report.labels.append(LABELS[label])
        report.sha256.append(digest)
        report.shapes.append(shape)
        report.dtypes.append(dtype)
    _add_notes(report, size)
    if report.paths and not report.layout.stages:
        report.errors.append(
            f"{root}: nothing to train with labels {', '.join(report.counts())}: stage 1 needs "
            "normal and defective images, stage 2 at least two of "
            f"{', '.join(DEFECT_CLASSES)}")
    return report


def _resolve_duplicates(by_hash: dict[str, list[int]], listing: list[tuple[Path, str]],
                        report: IngestReport, drop: bool) -> list[int]:
    """The listing indices to use: every image once. Identical bytes found twice are an
    error, or with ``drop`` one copy kept (same label) or all dropped (conflicting)."""
    keep: list[int] = []
    for digest, group in by_hash.items():
        if len(group) == 1:
            keep.append(group[0])
            continue
        group = sorted(group, key=lambda i: str(listing[i][0]))
        paths = [str(listing[i][0]) for i in group]
        labels = sorted({listing[i][1] for i in group})
        what = (f"conflicting labels {', '.join(labels)}" if len(labels) > 1
                else f"label {labels[0]}")
        if not drop:  # an error: every copy stays listed, nothing trains
            keep.extend(group)
            report.errors.append(f"{paths[0]}: duplicate image (sha256 {digest[:12]}…, "
                                 f"{what}) also at {', '.join(paths[1:])} "
                                 "(--drop-duplicates keeps one copy, drops conflicting ones)")
        elif len(labels) > 1:
            report.dropped.append(f"{', '.join(paths)}: the same image with {what}; "
                                  "all copies dropped")
        else:
            keep.append(group[0])
            report.dropped.append(f"{', '.join(paths[1:])}: a copy of {paths[0]} ({what}); "
                                  f"kept {paths[0]}")
    return keep


def _add_notes(report: IngestReport, size: int) -> None:
    if not report.shapes:
        return
    shapes = np.asarray(report.shapes)
    short = shapes.min(axis=1)
    small, large = int((short < size).sum()), int((short > size).sum())
    n = len(shapes)
    depth = Counter(report.dtypes)
    report.notes.append("bit depth: " + ", ".join(
        f"{k.replace('uint8', '8-bit').replace('uint16', '16-bit')} {v}" for k, v in
        sorted(depth.items())))
    report.notes.append(f"sizes: {len(set(map(tuple, shapes)))} distinct, shorter side "
                        f"{int(short.min())}–{int(short.max())} px (tile {size})")
    if small:
        report.notes.append(f"{small}/{n} images smaller than the tile are upscaled "
                            "(INTER_LINEAR, the edge's small_image rule)")
    if large:
        report.notes.append(
            f"{large}/{n} images larger than the tile are downscaled (INTER_AREA, up to "
            f"{float(short.max()) / size:.2f}×) and center-cropped: the bundle then records "
            "preprocess.large_image = 'resize' so the edge does the same")
    if (shapes[:, 0] != shapes[:, 1]).any():
        report.notes.append(f"{int((shapes[:, 0] != shapes[:, 1]).sum())}/{n} images are not "
                            "square: the center crop keeps the middle of the longer side")


# ----------------------------------------------------------------------- splits


def write_splits(path: PathLike, *, root: PathLike, paths: Sequence[str],
                 labels: Sequence[int], sha256: Sequence[str], split: Sequence[str],
                 seed: int, fractions: dict[str, float],
                 eval_sets: dict[str, Sequence[str]] | None = None,
                 calibration: Sequence[bool] | None = None) -> Path:
    """Write ``splits.json``: every image of the data set with its split and sha256.

    ``eval_sets`` maps an evaluation set's name to its images' sha256 (kept so anyone can
    re-check that it shares no image with ``train``/``val``). ``calibration`` marks the
    images the int8 models were calibrated on (``"calibration": true``), so a later
    export to another format calibrates on the very same tiles.
    """
    root = Path(root)
    rows = []
    marks = calibration if calibration is not None else [False] * len(paths)
    for p, y, h, s, c in zip(paths, labels, sha256, split, marks):
        rel = os.path.relpath(p, root) if Path(p).is_relative_to(root) else str(p)
        row = {"path": Path(rel).as_posix(), "label": LABEL_NAMES[int(y)], "sha256": h,
               "split": s}
        if c:
            row["calibration"] = True
        rows.append(row)
    data = {"seed": int(seed), "fractions": fractions, "root": str(root),
            "counts": dict(Counter(r["split"] for r in rows)), "files": rows,
            "eval_sets": {k: sorted(v) for k, v in (eval_sets or {}).items()}}
    path = Path(path)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def calibration_rows(splits: dict) -> list[dict]:
    """The ``splits.json`` rows marked as int8 calibration images (empty for old bundles)."""
    return [row for row in splits.get("files", []) if row.get("calibration")]


def read_splits(path: PathLike) -> dict:
    """``splits.json`` of a bundle (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLITS_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def check_leakage(training: Iterable[str] | PathLike, evaluation: Iterable[str],
                  *, what: str = "evaluation set") -> None:
    """Raise :class:`LeakageError` if an evaluation image hash is a training one.

    ``training``: the sha256 of the train and val images, or a bundle folder /
    ``splits.json`` (its ``train`` and ``val`` rows). ``evaluation``: sha256 of the
    images to evaluate on.
    """
    if isinstance(training, (str, os.PathLike)):
        rows = read_splits(training)["files"]
        seen = {r["sha256"]: r["path"] for r in rows if r["split"] in ("train", "val")}
    else:
        seen = {h: h for h in training}
    shared = [h for h in evaluation if h in seen]
    if shared:
        raise LeakageError(f"{what}: {len(shared)} image(s) are also training/validation "
                           f"images (same sha256), e.g. {seen[shared[0]]}; evaluation must "
                           "not see training images")


def hashes_of(paths: Iterable[PathLike]) -> list[str]:
    """sha256 of each file's bytes."""
    return [_sha256_bytes(Path(p).read_bytes()) for p in paths]
