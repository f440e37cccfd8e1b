"""``semedge synth --engine diffusion``: sample a model folder into the ImageFolder layout
and ``manifest.jsonl`` of the procedural engine."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from synth.compose import Record
from synth.dataset import _prepare_out, _progress, encode_png, write_sheet
from synth.diffusion.config import LABELS
from synth.diffusion.sample import check_settings, sample
from synth.diffusion.store import load_model
from synth.recipe import derive_seed

ENGINE = "diffusion"


def to_uint8(tile: np.ndarray, size: int) -> np.ndarray:
    """A [0, 1] tile → a ``size`` px uint8 image (bicubic when resized, then clipped)."""
    if tile.shape[0] != size:
        tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(tile * 255.0), 0, 255).astype(np.uint8)


class DiffusionGenerator:
    """A model folder as a ``synth.Generator``: label-major ``(image, Record)`` pairs."""

    def __init__(self, model_dir: str | Path, *, steps: int = 20, guidance: float = 2.0,
                 sampler: str = "ddim", batch: int = 16) -> None:
        self.model, self.config = load_model(model_dir)
        self.arch = self.config["architecture"]
        check_settings(steps, guidance, sampler, self.arch)
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        self.steps, self.guidance, self.sampler, self.batch = steps, guidance, sampler, batch
        self.sha256: str = self.config["weights"]["sha256"]

    def trained_labels(self) -> tuple[str, ...]:
        """The labels the model saw training images of (the others it cannot draw)."""
        counts = self.config["data"].get("per_label", {})
        return tuple(lab for lab in LABELS if counts.get(lab, 0) > 0)

    def extra_fields(self) -> dict[str, Any]:
        """The manifest fields only this engine writes."""
        return {"engine": ENGINE, "model_sha256": self.sha256, "steps": self.steps,
                "guidance": self.guidance, "sampler": self.sampler,
                "resolution": self.arch.resolution}

    def generate(self, labels: Iterable[str], per_class: int, seed: int, size: int
                 ) -> Iterator[tuple[np.ndarray, Record]]:
        """Yield (uint8 image, Record) for images 0..per_class-1 of every label."""
        labels = tuple(labels)
        for lab in labels:
            if lab not in LABELS:
                raise ValueError(f"label {lab!r} is not a model label; allowed: "
                                 f"{', '.join(LABELS)}")
        tasks = [(lab, i) for lab in labels for i in range(per_class)]
        for k in range(0, len(tasks), self.batch):
            chunk = tasks[k:k + self.batch]
            ids = [LABELS.index(lab) for lab, _ in chunk]
            seeds = [derive_seed(seed, c, i) for c, (_, i) in zip(ids, chunk)]
            tiles = sample(self.model, self.arch, ids, seeds, steps=self.steps,
                           guidance=self.guidance, sampler=self.sampler)
            for tile, c, s, (lab, i) in zip(tiles, ids, seeds, chunk):
                yield to_uint8(tile, size), Record(
                    label=lab, class_index=c, index=i, seed=int(seed), image_seed=s,
                    recipe=ENGINE, recipe_hash=self.sha256, size=size, bit_depth=8,
                    family=None, view=None, box=None,  # type: ignore[arg-type]
                    params={"sampler": self.sampler, "resolution": self.arch.resolution})


@dataclass
class WriteResult:
    """What :func:`write_dataset` wrote, and how fast it sampled."""

    manifest: Path
    images: int
    labels: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float


def write_dataset(model_dir: str | Path, out: str | Path, per_class: int, seed: int, *,
                  steps: int = 20, guidance: float = 2.0, sampler: str = "ddim",
                  size: int = 224, batch: int = 16, overwrite: bool = False,
                  sheet: bool = False, progress: bool = False) -> WriteResult:
    """Write ``out/<label>/<label>_<i>.png`` and ``out/manifest.jsonl`` for every label the
    model was trained on. The model folder is checked before anything is written."""
    if not isinstance(per_class, int) or per_class < 0:
        raise ValueError(f"per_class must be an integer >= 0, got {per_class!r}")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    gen = DiffusionGenerator(model_dir, steps=steps, guidance=guidance, sampler=sampler,
                             batch=batch)
    labels = gen.trained_labels()
    skipped = tuple(lab for lab in LABELS if lab not in labels)
    out = Path(out)
    _prepare_out(out, LABELS, overwrite)
    for lab in labels:
        (out / lab).mkdir(parents=True, exist_ok=True)
    lines, extra = [], gen.extra_fields()
    t0 = time.perf_counter()
    with _progress(progress) as bar:
        job = bar.add_task("synth diffusion", total=per_class * len(labels)) \
            if bar.enabled else None
        for img, rec in gen.generate(labels, per_class, seed, size):
            data = encode_png(img)
            rec.path = f"{rec.label}/{rec.label}_{rec.index}.png"
            (out / rec.path).write_bytes(data)
            rec.sha256 = hashlib.sha256(data).hexdigest()
            lines.append(json.dumps({**rec.to_json(), **extra}, separators=(",", ":")))
            if job is not None:
                bar.advance(job)
    seconds = time.perf_counter() - t0
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in lines))
    if sheet:
        write_sheet(out, labels, per_class, out / "sheet.png")
    return WriteResult(manifest, len(lines), labels, skipped, seconds)
