"""Datasets: in-memory generation, ImageFolder writing with a manifest, contact sheets."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from synth.compose import Record, render
from synth.recipe import Recipe, load_recipe

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


@runtime_checkable
class Generator(Protocol):
    """Anything that yields labelled images: the procedural renderer now, a diffusion model later."""

    def generate(self, labels: Iterable[str], per_class: int, seed: int, size: int
                 ) -> Iterator[tuple[np.ndarray, Record]]:
        """Yield (image, record) for images 0..per_class-1 of every label, label-major."""
        ...


class ProceduralGenerator:
    """The procedural SEM renderer driven by a recipe."""

    def __init__(self, recipe: str | Path | Recipe = "default") -> None:
        self.recipe = load_recipe(recipe)

    def generate(self, labels: Iterable[str], per_class: int, seed: int, size: int
                 ) -> Iterator[tuple[np.ndarray, Record]]:
        """Render ``per_class`` images of each label: ``(image, record)`` pairs, in order."""
        for label in labels:
            for i in range(per_class):
                yield render(self.recipe, label, i, seed, size)


def _check_counts(per_class: int, size: int | None, fields: int = 0, workers: int = 1) -> None:
    for name, val, low in (("per_class", per_class, 0), ("fields", fields, 0),
                           ("workers", workers, 1)):
        if not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {val!r}")
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 32):
        raise ValueError(f"size must be an integer >= 32, got {size!r}")


def generate(recipe: str | Path | Recipe = "default", per_class: int = 10, seed: int = 0,
             size: int | None = None, labels: Iterable[str] | None = None
             ) -> Iterator[tuple[np.ndarray, Record]]:
    """Yield (image, record) for every label of the recipe, without touching disk."""
    rec = load_recipe(recipe)
    _check_counts(per_class, size)
    labs = tuple(labels) if labels is not None else rec.labels
    for lab in labs:
        if lab not in rec.labels:
            raise ValueError(f"label {lab!r} not rendered by recipe {rec.name!r}; "
                             f"allowed: {', '.join(rec.labels)}")
    return ProceduralGenerator(rec).generate(labs, per_class, seed,
                                             int(size or rec["recipe"]["size"]))


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes (8- or 16-bit grayscale); deterministic for a given array."""
    ok, buf = cv2.imencode(".png", img, PNG_PARAMS)
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


# ---- writing ----------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def tune_malloc() -> bool:
    """Keep freed heap memory in this process (glibc only; returns whether it applied).

    Every image allocates a few MB of short-lived arrays (the supersampled canvas, float
    temporaries). With glibc's defaults the heap top is trimmed after each image and large arrays
    are mmapped, so the next image page-faults all of it in again (~200 faults, ~0.5 ms of CPU
    per image). Raising the mmap and trim thresholds lets the memory be reused instead. Pixels are
    unaffected. Called in the synth worker processes and by the ``semedge synth`` CLI, not on
    library import (it would change the caller's allocator for good).
    """
    if _STATE.get("malloc_tuned") is not None:
        return bool(_STATE["malloc_tuned"])
    ok = False
    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
        if mallopt is not None and hasattr(libc, "gnu_get_libc_version"):
            m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
            ok = bool(mallopt(m_mmap_threshold, 16 << 20)) & bool(
                mallopt(m_trim_threshold, 256 << 20)) & bool(mallopt(m_top_pad, 4 << 20))
    except OSError:  # pragma: no cover - no loadable libc
        ok = False
    _STATE["malloc_tuned"] = ok
    return ok


def _init(recipe: Recipe, out: str, seed: int, size: int) -> None:
    cv2.setNumThreads(1)
    _STATE.update(recipe=recipe, out=out, seed=seed, size=size)


def _pool_init(recipe: Recipe, out: str, seed: int, size: int) -> None:
    tune_malloc()
    _init(recipe, out, seed, size)


def _work(task: tuple[str, int]) -> str:
    label, i = task
    st = _STATE
    img, rec = render(st["recipe"], label, i, st["seed"], st["size"])
    data = encode_png(img)
    rel = f"{label}/{label}_{i}.png"
    with open(os.path.join(st["out"], rel), "wb") as fh:
        fh.write(data)
    rec.path = rel
    rec.sha256 = hashlib.sha256(data).hexdigest()
    return json.dumps(rec.to_json(), separators=(",", ":"))


def _field_work(k: int) -> str:
    from synth.fields import render_field

    st = _STATE
    img, lmap, rec = render_field(st["recipe"], k, st["seed"])
    data = encode_png(img)
    rel, mrel = f"fields/field_{k}.png", f"fields/field_{k}_mask.png"
    with open(os.path.join(st["out"], rel), "wb") as fh:
        fh.write(data)
    cv2.imwrite(os.path.join(st["out"], mrel), lmap)
    rec.update(path=rel, mask_path=mrel, sha256=hashlib.sha256(data).hexdigest())
    return json.dumps(rec, separators=(",", ":"))


def _prepare_out(out: Path, labels: tuple[str, ...], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"out {str(out)!r} exists and is not empty; pass overwrite=True "
                             "(--overwrite) to replace its synth output")
        for lab in labels:  # remove only what an earlier run of ours wrote
            for f in (out / lab).glob(f"{lab}_*.png"):
                f.unlink()
        for f in (out / "fields").glob("field_*.png"):
            f.unlink()
        for name in ("manifest.jsonl", "fields/manifest.jsonl", "sheet.png"):
            if (out / name).exists():
                (out / name).unlink()
        for f in (out / "shards").glob("shard-*-of-*.*"):  # a sharded run's bookkeeping
            f.unlink()
        if (out / "shards").is_dir() and not any((out / "shards").iterdir()):
            (out / "shards").rmdir()


def write_dataset(out: str | Path, per_class: int, seed: int,
                  recipe: str | Path | Recipe = "default", size: int | None = None,
                  fields: int = 0, workers: int = 1, sheet: bool = False,
                  overwrite: bool = False, progress: bool = False,
                  shard: tuple[int, int] | None = None) -> Path:
    """Write ``out/<label>/<label>_<i>.png``, ``out/manifest.jsonl`` and optionally fields and a
    contact sheet. Output bytes are identical for any ``workers``. Returns the manifest path.

    ``shard=(K, N)`` writes only shard ``K`` of ``N`` of the run (``synth.shards``: its
    images, and its manifest under ``out/shards/``, which is returned); ``merge_shards``
    joins the ``N`` shards into the single run's files, byte for byte."""
    from synth import shards as sh

    rec = load_recipe(recipe)
    _check_counts(per_class, size, fields, workers)
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    shard = sh.check_shard(shard) if shard is not None else None
    if shard is not None and sheet:
        raise ValueError("sheet needs every image: pass it to the merge (semedge synth-merge "
                         "--sheet), not to a shard")
    size = int(size or rec["recipe"]["size"])
    out = Path(out)
    tasks = [(lab, i) for lab in rec.labels for i in range(per_class)]
    field_ids = list(range(fields))
    if shard is not None:
        tasks, field_ids = sh.take_shard(tasks, shard), sh.take_shard(field_ids, shard)
        sh.prepare_shard_out(out, rec.labels, shard, tasks, field_ids, overwrite)
    else:
        _prepare_out(out, rec.labels, overwrite)
    for lab in rec.labels:
        (out / lab).mkdir(parents=True, exist_ok=True)
    if fields:
        (out / "fields").mkdir(exist_ok=True)
    lines, flines = _render_all((rec, str(out), int(seed), size), tasks, field_ids, workers,
                                progress)
    if shard is not None:
        info = {"shards": shard[1], "recipe": rec.name, "recipe_hash": rec.hash,
                "seed": int(seed), "per_class": per_class, "size": size,
                "labels": list(rec.labels), "fields": fields,
                "partition": "task t (label-major) and field k where t % shards == shard"}
        return sh.write_shard_output(out, shard, lines, flines, info)
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in lines))
    if fields:
        (out / "fields" / "manifest.jsonl").write_text("".join(f + "\n" for f in flines))
    if sheet:
        write_sheet(out, rec.labels, per_class, out / "sheet.png")
    return manifest


def _render_all(init: tuple[Recipe, str, int, int], tasks: list[tuple[str, int]],
                field_ids: list[int], workers: int, progress: bool
                ) -> tuple[list[str], list[str]]:
    """Render and write ``tasks`` and fields ``field_ids``; their manifest lines, in order."""
    bar = _progress(progress)
    with bar:
        job = (bar.add_task(f"synth {init[0].name}", total=len(tasks) + len(field_ids))
               if bar.enabled else None)
        if workers == 1:
            threads = cv2.getNumThreads()
            _init(*init)
            try:
                lines = _drain(map(_work, tasks), bar, job)
                flines = _drain(map(_field_work, field_ids), bar, job)
            finally:
                cv2.setNumThreads(threads)
        else:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers, initializer=_pool_init, initargs=init) as pool:
                # small chunks: at ~5 ms an image, a 32-image last chunk left one core idle ~0.1 s
                chunk = max(1, min(8, len(tasks) // (workers * 8) or 1))
                lines = _drain(pool.imap(_work, tasks, chunksize=chunk), bar, job)
                flines = _drain(pool.imap(_field_work, field_ids), bar, job)
    return lines, flines


class _NoBar:
    enabled = False

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def advance(self, *a: Any) -> None:
        return None


def _progress(show: bool) -> Any:
    if not show:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                 TimeRemainingColumn())
    p.enabled = True
    return p


def _drain(it: Iterable[str], bar: Any, job: Any) -> list[str]:
    out = []
    for line in it:
        out.append(line)
        if job is not None:
            bar.advance(job)
    return out


def contact_sheet(rows: dict[str, list[np.ndarray]], tile: int = 112) -> np.ndarray:
    """One row per label (8-bit), label written at the left."""
    cols = max((len(v) for v in rows.values()), default=0)
    label_w = 110
    sheet = np.full((tile * len(rows), label_w + tile * max(cols, 1)), 255, np.uint8)
    for r, (label, imgs) in enumerate(rows.items()):
        cv2.putText(sheet, label, (4, r * tile + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.42, 0, 1,
                    cv2.LINE_AA)
        for c, img in enumerate(imgs):
            im = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img
            sheet[r * tile:(r + 1) * tile, label_w + c * tile: label_w + (c + 1) * tile] = \
                cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
    return sheet


def write_sheet(out: Path, labels: Iterable[str], per_class: int, path: Path, cols: int = 10
                ) -> Path:
    """Contact sheet of the first ``cols`` images of each label in ``out``."""
    rows = {lab: [cv2.imread(str(out / lab / f"{lab}_{i}.png"), cv2.IMREAD_UNCHANGED)
                  for i in range(min(cols, per_class))] for lab in labels}
    cv2.imwrite(str(path), contact_sheet(rows))
    return path
