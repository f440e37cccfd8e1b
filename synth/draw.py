"""Drawing primitives. Geometry is in continuous output pixels: pixel (i, j) spans [j, j+1) x [i, i+1)."""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4
_MUL = float(1 << _SHIFT)


def _pts(polys: list[np.ndarray] | np.ndarray, scale: float) -> list[np.ndarray]:
    if isinstance(polys, np.ndarray) and polys.ndim == 3:  # many polygons of equal length
        return list(np.ascontiguousarray(np.round((polys * scale - 0.5) * _MUL), dtype=np.int32))
    return [np.ascontiguousarray(np.round((np.asarray(p, np.float64) * scale - 0.5) * _MUL),
                                 dtype=np.int32)
            for p in polys]


def fill(img: np.ndarray, polys: list[np.ndarray] | np.ndarray, value: float, scale: float) -> None:
    """Fill polygons (each an (n, 2) array of x, y) into ``img`` rendered at ``scale`` px/unit."""
    if len(polys):
        cv2.fillPoly(img, _pts(polys, scale), float(value), cv2.LINE_8, _SHIFT)


def polyline(
    img: np.ndarray, pts: np.ndarray, value: float, width: float, scale: float
) -> None:
    """Draw an open polyline of the given width (output px)."""
    thick = max(1, int(round(width * scale)))
    cv2.polylines(img, _pts([pts], scale), False, float(value), thick, cv2.LINE_8, _SHIFT)


def ellipse_poly(
    cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 24
) -> np.ndarray:
    """Vertices of an ellipse (angle in radians)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def superellipse_poly(
    cx: float, cy: float, rx: float, ry: float, power: float, n: int = 48
) -> np.ndarray:
    """Vertices of |x/rx|^p + |y/ry|^p = 1: an ellipse at p = 2, a rounded rectangle as p grows."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / power
    return np.stack([cx + rx * np.sign(c) * np.abs(c) ** e, cy + ry * np.sign(s) * np.abs(s) ** e],
                    axis=1)


def blob_poly(
    rng: np.random.Generator, cx: float, cy: float, r: float, rough: float, n: int = 20,
    aspect: float = 1.0, angle: float = 0.0,
) -> np.ndarray:
    """An irregular closed blob: radius ``r`` modulated by smooth noise of relative size ``rough``."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    k = np.arange(1, 4)
    amp = rng.normal(0.0, 1.0, (3,)) / k
    ph = rng.uniform(0, 2 * np.pi, 3)
    mod = (amp[:, None] * np.cos(k[:, None] * t[None] + ph[:, None])).sum(0)
    mod = mod / (np.abs(mod).max() + 1e-9)
    rad = r * (1.0 + rough * mod)
    x, y = rad * np.cos(t) * aspect, rad * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def corr_noise(rng: np.random.Generator, rows: int, n: int, corr: float) -> np.ndarray:
    """``rows`` 1-D Gaussian processes of length ``n``, unit variance, correlation length ``corr`` samples."""
    white = rng.standard_normal((rows, n), dtype=np.float32)
    s = max(corr, 0.3) / np.sqrt(2.0)
    k = 2 * int(np.ceil(3 * s)) + 1
    out = cv2.GaussianBlur(white, (k, 1), sigmaX=s, sigmaY=0.01, borderType=cv2.BORDER_REFLECT)
    sd = float(out.std())
    return out / sd if sd > 0 else out


def box_of(mask: np.ndarray) -> list[int] | None:
    """[x0, y0, x1, y1] (x1, y1 exclusive) of the true pixels, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
