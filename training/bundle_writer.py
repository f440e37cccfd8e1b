"""Write ``manifest.json`` exactly as ``docs/bundle.md`` specifies (format version 1)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.bundle import FORMAT_VERSION, FORMATS, sha256_file
from edge.classes import CLASSES
from edge.jsonsafe import json_safe

__all__ = ["write_manifest"]


def write_manifest(out_dir: Path, *, name: str, size: int, low: float, high: float,
                   stage1: dict, stage2: dict | None, files: dict[str, dict[str, Path]],
                   metrics: dict, provenance: dict, models: dict | None = None,
                   large_image: str = "tile",
                   checkpoints: dict[str, Path] | None = None,
                   splits: Path | None = None) -> Path:
    """Hash every model file and write ``out_dir/manifest.json``; returns its path.

    ``files`` maps stage → format key (``onnx``, ``onnx-int8``, …) → file path inside
    ``out_dir``. ``checkpoints`` (stage → ``.pt`` inside ``out_dir``) and ``splits``
    (``splits.json``) are listed with their sha256 under the keys of the same names,
    which the edge does not read (``semedge train --init`` and the leakage check do).
    ``stage2`` None: a stage-1-only bundle (no ``stage2`` block, no stage-2 files).
    """
    out_dir = Path(out_dir)
    entries: dict[str, dict[str, dict[str, str]]] = {}
    for stage, by_format in files.items():
        entries[stage] = {}
        for fmt, path in by_format.items():
            if fmt not in FORMATS:
                raise ValueError(f"unknown format key {fmt!r}; known: {', '.join(FORMATS)}")
            path = Path(path)
            rel = path.resolve().relative_to(out_dir.resolve())
            entries[stage][fmt] = {"path": rel.as_posix(), "sha256": sha256_file(path),
                                   "format": FORMATS[fmt]}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "classes": list(CLASSES),
        "input": {"size": int(size), "channels": 1, "layout": "NCHW", "dtype": "float32"},
        "preprocess": {"low": float(low), "high": float(high), "small_image": "upscale",
                       "large_image": large_image},
        "stage1": stage1,
        **({} if stage2 is None else {"stage2": stage2}),
        "files": entries,
        "metrics": metrics,
        "provenance": provenance,
    }
    if models:
        manifest["models"] = models

    def _entry(p: Path) -> dict[str, str]:
        rel = Path(p).resolve().relative_to(out_dir.resolve())
        return {"path": rel.as_posix(), "sha256": sha256_file(p)}

    if checkpoints:
        manifest["checkpoints"] = {k: _entry(p) for k, p in checkpoints.items()}
    if splits is not None:
        manifest["splits"] = _entry(splits)
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(json_safe(manifest), indent=2) + "\n", encoding="utf-8")
    return path
