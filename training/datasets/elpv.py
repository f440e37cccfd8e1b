"""ELPV: 2,624 electroluminescence images of solar cells as an ImageFolder.

Source: the ``elpv-dataset`` package on PyPI (Buerhop-Lutz et al. 2018; Deitsch et al.,
"Automatic classification of defective photovoltaic module cells in electroluminescence
images", Solar Energy 185, 2019). 300×300 8-bit PNG cells from 44 modules, each with an
expert defect probability (0, 1/3, 2/3, 1) and a cell type (mono, poly). Licence CC
BY-NC-SA 4.0: installed at benchmark time (``pip install elpv-dataset``) and never
committed.

``write_elpv`` writes ``OUT/train/<label>/`` and ``OUT/test/<label>/`` (the PNG bytes are
copied as they are, so their sha256 is the package's), ``OUT/split.csv`` (every cell:
path, probability, type, label, split) and ``OUT/dataset.json``. Labels: ``binary`` —
``normal`` / ``defective`` (defective = probability ≥ 0.5, as Deitsch et al.); ``four`` —
``p0 p33 p67 p100``. Split: the Deitsch et al. protocol, stratified by probability ×
cell type, 25 % test (656 of 2,624 cells), seeded; per-stratum counts are rounded by the
largest remainder so the total is exact.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["ElpvMissing", "elpv_root", "read_labels", "split_elpv", "write_elpv"]

FOUR_CLASSES = ("p0", "p33", "p67", "p100")
CITATION = ("Deitsch et al., Automatic classification of defective photovoltaic module "
            "cells in electroluminescence images, Solar Energy 185 (2019) 455-468; "
            "Buerhop-Lutz et al., A benchmark for visual identification of defective solar "
            "cells in electroluminescence imagery, EU PVSEC 2018")


class ElpvMissing(ImportError):
    """The ``elpv-dataset`` package is not installed."""


def elpv_root() -> Path:
    """Folder holding ``labels.csv`` and ``images/`` of the installed package."""
    try:
        import elpv_dataset
    except ImportError:
        raise ElpvMissing("the ELPV data set is not installed: pip install elpv-dataset "
                          "(CC BY-NC-SA 4.0; do not commit the images)") from None
    return Path(elpv_dataset.__file__).resolve().parent / "data"


def read_labels(root: Path | None = None) -> list[dict]:
    """``[{path, probability, type}]`` in the package's order (``labels.csv``)."""
    root = elpv_root() if root is None else Path(root)
    rows = []
    for line in (root / "labels.csv").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        rows.append({"path": parts[0], "probability": float(parts[1]), "type": parts[2]})
    return rows


def _label(probability: float, classes: str) -> str:
    if classes == "binary":
        return "defective" if probability >= 0.5 else "normal"
    return FOUR_CLASSES[int(round(probability * 3))]


def split_elpv(rows: list[dict], *, test_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """``True`` for test cells: stratified by probability × type, seeded, exact total."""
    strata = [f"{round(r['probability'] * 3)}-{r['type']}" for r in rows]
    keys = sorted(set(strata))
    index = {k: np.flatnonzero(np.asarray(strata) == k) for k in keys}
    want = test_fraction * np.asarray([len(index[k]) for k in keys], dtype=np.float64)
    take = np.floor(want).astype(int)
    left = int(round(test_fraction * len(rows))) - int(take.sum())
    for j in np.argsort(-(want - take), kind="stable")[:max(0, left)]:
        take[j] += 1
    rng = np.random.default_rng(seed)
    test = np.zeros(len(rows), dtype=bool)
    for k, n in zip(keys, take):
        test[rng.permutation(index[k])[:n]] = True
    return test


def write_elpv(out: str | os.PathLike, *, classes: str = "binary", seed: int = 0,
               test_fraction: float = 0.25, limit: int | None = None,
               source: Path | None = None) -> dict:
    """Write ELPV as ``OUT/{train,test}/<label>/`` (see the module doc); returns a summary.

    ``limit``: only the first ``limit`` cells of ``labels.csv`` (for tests); ``source``: a
    folder laid out like the package's ``data/`` (default: the installed package).
    """
    if classes not in ("binary", "four"):
        raise ValueError(f"classes must be 'binary' or 'four', got {classes!r}")
    root = elpv_root() if source is None else Path(source)
    rows = read_labels(root)[:limit]
    test = split_elpv(rows, test_fraction=test_fraction, seed=seed)
    out = Path(out)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    table = []
    for row, is_test in zip(rows, test):
        split = "test" if is_test else "train"
        label = _label(row["probability"], classes)
        dst = out / split / label / Path(row["path"]).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / row["path"], dst)
        counts[split][label] = counts[split].get(label, 0) + 1
        table.append({**row, "label": label, "split": split,
                      "file": dst.relative_to(out).as_posix()})
    with open(out / "split.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "path", "probability", "type",
                                                "label", "split"])
        writer.writeheader()
        writer.writerows(table)
    summary = {"dataset": "elpv", "classes": classes, "seed": seed,
               "test_fraction": test_fraction, "cells": len(rows),
               "counts": {k: sum(v.values()) for k, v in counts.items()},
               "per_label": counts, "licence": "CC BY-NC-SA 4.0", "citation": CITATION,
               "split_rule": "stratified by probability x cell type, largest remainder"}
    (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
