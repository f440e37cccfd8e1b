"""Draw a result on its image: flagged tiles boxed and labelled, written as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from edge import preprocess
from edge.classes import UNKNOWN
from edge.results import ImageResult

__all__ = ["draw_overlay", "write_overlay"]

PathLike = Union[str, "os.PathLike[str]"]

_COLOURS = {  # BGR, one per defect class; unknown is white
    "ler": (255, 191, 0), "open": (0, 0, 255), "short": (0, 165, 255),
    "void": (255, 0, 255), "malformed_via": (0, 255, 255), "crack": (0, 255, 0),
    UNKNOWN: (255, 255, 255),
}


def draw_overlay(image: np.ndarray, result: ImageResult) -> np.ndarray:
    """Return a BGR uint8 copy of ``image`` (percentile-normalized for display) with
    every tile stage 2 saw drawn in its class colour and labelled ``label score``."""
    import cv2

    gray = (preprocess.normalize(image) * 255.0 + 0.5).astype(np.uint8)
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    h, w = gray.shape
    thickness = max(1, min(h, w) // 400)
    font_scale = max(0.4, min(h, w) / 1500.0)
    for t in result.tiles:
        if not t.flagged:
            continue
        x0, y0, x1, y1 = t.box
        colour = _COLOURS.get(t.label, (255, 255, 255))
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness)
        text = f"{t.label} {t.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = min(max(y0 + th + 2, th + 2), h - base - 1)
        cv2.rectangle(canvas, (x0, ty - th - 2), (x0 + tw + 2, ty + base), (0, 0, 0), -1)
        cv2.putText(canvas, text, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour,
                    1, cv2.LINE_AA)
    return canvas


def write_overlay(image: np.ndarray, result: ImageResult, path: PathLike, *,
                  replace: bool = True) -> Path:
    """Write :func:`draw_overlay` to ``path`` (PNG), creating its folder.

    The PNG is encoded in memory and written by Python, so any file name the OS takes
    works (OpenCV's own writer crashes on names that are not valid UTF-8). With
    ``replace=False`` an existing file is never touched: ``FileExistsError``.
    """
    import cv2

    path = Path(path)
    ok, png = cv2.imencode(".png", draw_overlay(image, result))
    if not ok:
        raise OSError(f"{path}: could not encode the overlay PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if replace else "xb") as f:
        f.write(png.tobytes())
    return path
