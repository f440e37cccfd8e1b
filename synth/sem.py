"""SEM image formation: material map -> detector signal -> noisy, scanned, quantised image."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from synth.patterns import Scene
from synth.recipe import SUPPORTED, loguni, uni

# where an open or a short can be drawn, polarity alone tells them apart
LINE_FAMILIES = frozenset(SUPPORTED["open"] | SUPPORTED["short"])


def sample_sem(rng: np.random.Generator, sem: dict, size: int, scene_tex: dict,
               view: str = "top", family: str = "") -> dict[str, Any]:
    """Draw every image-formation parameter from the recipe's ``[sem]`` table.

    Cross-section ``view``s are imaged at ``xsection_dose_gain`` times the dose: polished
    cross-sections are usually recorded slowly, and look clean next to in-line top-down shots.
    Every image averages ``frames`` scans (log-uniform), as a tool's frame integration does:
    the dose grows by that count and the read noise shrinks by its square root.
    Line ``family``s are inverted with ``line_inverted_prob`` instead of ``inverted_prob``.
    """
    strong = bool(rng.random() < sem["strong_blur_prob"])
    inverted_prob = sem["line_inverted_prob"] if family in LINE_FAMILIES else sem["inverted_prob"]
    p: dict[str, Any] = {
        "background": uni(rng, sem["background"]),
        "contrast": uni(rng, sem["contrast"]),
        "inverted": bool(rng.random() < inverted_prob),
        "rim": uni(rng, sem["rim"]),
        "rim_width_px": uni(rng, sem["rim_width_px"]),
        "blur_px": uni(rng, sem["strong_blur_px"] if strong else sem["blur_px"]),
        "dose": loguni(rng, sem["dose"]),
        "read_noise": uni(rng, sem["read_noise"]),
        "charging": uni(rng, sem["charging"]),
        "charging_dir": float(rng.uniform(0, 2 * np.pi)),
        "streak": bool(rng.random() < sem["streak_prob"]),
        "scan_jitter_px": uni(rng, sem["scan_jitter_px"]),
        "banding": uni(rng, sem["banding"]),
        "vignetting": uni(rng, sem["vignetting"]),
        "gain": uni(rng, sem["gain"]),
        "offset": uni(rng, sem["offset"]),
        "texture": bool(rng.random() < scene_tex["texture_prob"]),
        "texture_amp": uni(rng, scene_tex["texture_amp"]),
        "grain_px": loguni(rng, scene_tex["grain_px"]),
        "grain_kind": "voronoi" if rng.random() < 0.5 else "smooth",
    }
    # single-frame recipes draw nothing here, so their renders stay as they were before
    p["frames"] = loguni(rng, sem["frames"]) if sem["frames"][1] > 1 else 1.0
    p["dose"] *= p["frames"]
    p["read_noise"] /= float(np.sqrt(p["frames"]))
    if view == "xsection":
        p["dose"] *= loguni(rng, sem["xsection_dose_gain"])
    return p


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2.0
    r2 = ((xx - c) ** 2 + (yy - c) ** 2) / (2 * c * c)
    return xx, yy, (yy - c) / c, r2.astype(np.float32)


_COARSE = 9  # charging and vignetting are built on a k x k grid and interpolated up


@lru_cache(maxsize=1)
def _coarse() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.linspace(-1.0, 1.0, _COARSE, dtype=np.float32)
    gxx, gyy = np.meshgrid(g, g)
    for a in (gxx, gyy):
        a.flags.writeable = False
    r2 = gxx ** 2 + gyy ** 2
    r2.flags.writeable = False
    return gxx, gyy, r2


def _texture(rng: np.random.Generator, size: int, grain: float, kind: str) -> np.ndarray:
    if kind == "voronoi" and grain >= 2.0:
        if grain >= 4.0:  # coarse grains: tessellate at half resolution
            half = _texture(rng, size // 2, grain / 2, kind)
            return cv2.resize(half, (size, size), interpolation=cv2.INTER_NEAREST)
        npts = int((size / grain) ** 2)
        seeds = np.ones((size, size), np.uint8)
        seeds[rng.integers(0, size, npts), rng.integers(0, size, npts)] = 0
        _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
        vals = rng.standard_normal(int(labels.max()) + 1).astype(np.float32)
        tex = vals[labels]
        tex *= 0.8
        edge = np.zeros(labels.shape, bool)  # grain boundaries: label differs from left or top
        np.not_equal(labels[:, 1:], labels[:, :-1], out=edge[:, 1:])
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        tex[edge] -= np.float32(1.2)  # == tex*0.8 - min(edge count, 1)*1.2 in float32, bit for bit
        return tex
    small = max(4, int(size / grain))
    noise = rng.standard_normal((small, small)).astype(np.float32)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def _down(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)


def form_image(rng: np.random.Generator, scene: Scene, p: dict[str, Any]) -> np.ndarray:
    """The detector signal (float32, nominally 0..1; gain/offset come in :func:`quantize`)."""
    return add_noise(rng, form_signal(rng, scene, p), p)


def form_signal(rng: np.random.Generator, scene: Scene, p: dict[str, Any]) -> np.ndarray:
    """The noise-free detector signal: material, edges, texture, charging, blur, scan.

    Draws from ``rng`` exactly as :func:`form_image` does before its noise, so two calls on
    copies of one generator give the same texture, charging and jitter.
    """
    size = scene.size
    xx, yy, _, _ = _grid(size)
    m = _down(scene.mat, size)
    gx = cv2.Sobel(m, cv2.CV_32F, 1, 0, ksize=3, scale=0.25)
    gy = cv2.Sobel(m, cv2.CV_32F, 0, 1, ksize=3, scale=0.25)
    gx *= gx
    gy *= gy
    gx += gy
    edge = np.sqrt(gx)  # not cv2.magnitude: its SIMD result depends on memory alignment
    if p["rim_width_px"] > 0.6:
        edge = cv2.GaussianBlur(edge, (0, 0), p["rim_width_px"] - 0.5)
    c = p["contrast"]
    if p["inverted"]:
        s = cv2.addWeighted(m, -c, edge, p["rim"], p["background"] + c)
    else:
        s = cv2.addWeighted(m, c, edge, p["rim"], p["background"])
    if p["texture"] or scene.family in ("surface", "bumps"):
        tex = _texture(rng, size, p["grain_px"], p["grain_kind"])
        lo, hi = scene.tex_window
        amp = p["texture_amp"] * (1.2 if scene.family == "surface" else 1.0)
        if lo > -1.0:
            tex *= (m >= lo) & (m <= hi)
        s = cv2.scaleAdd(tex, amp, s)
    if scene.dark is not None:
        s *= 1.0 - np.clip(_down(scene.dark, size), 0.0, 1.0)
    if scene.bright is not None:
        s = cv2.scaleAdd(_down(scene.bright, size), max(c, 0.4), s)
    # charging (additive) and vignetting (multiplicative) are smooth: build them on a coarse grid
    # (float64 where numpy promotes: cos/sin are numpy float64 scalars; keep it, pixels depend on it)
    k = _COARSE
    gxx, gyy, r2 = _coarse()
    low = cv2.resize(rng.standard_normal((3, 3)).astype(np.float32), (k, k),
                     interpolation=cv2.INTER_CUBIC)
    a, b = np.cos(p["charging_dir"]), np.sin(p["charging_dir"])
    charge = p["charging"] * (0.5 * low + a * gxx + b * gyy)
    vig = 1.0 - p["vignetting"] * r2 / 2
    s *= cv2.resize(vig, (size, size), interpolation=cv2.INTER_LINEAR)  # s is a fresh float32
    s += cv2.resize(charge, (size, size), interpolation=cv2.INTER_CUBIC)
    if p["blur_px"] > 0.25:
        s = cv2.GaussianBlur(s, (0, 0), p["blur_px"])
    if p["scan_jitter_px"] > 0.05:
        shift = (rng.standard_normal(size).astype(np.float32) * p["scan_jitter_px"])
        s = cv2.remap(s, xx + shift[:, None], yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if p["streak"]:
        for _ in range(int(rng.integers(1, 5))):
            row = int(rng.integers(0, size))
            x0 = int(rng.integers(0, size))
            tail = np.exp(-np.arange(size - x0, dtype=np.float32) / uni(rng, [10, 80]))
            s[row, x0:] += uni(rng, [0.1, 0.4]) * tail
    return s


def noise_sd(s: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Per-pixel standard deviation of the shot and read noise on signal ``s``."""
    sd = np.maximum(s, 0.0)
    sd *= 1.0 / p["dose"]
    sd += p["read_noise"] ** 2
    np.sqrt(sd, out=sd)
    return sd


def add_noise(rng: np.random.Generator, s: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Shot and read noise, then row banding, added to ``s`` in place (``s`` is returned)."""
    size = s.shape[0]
    sd = noise_sd(s, p)
    sd *= rng.standard_normal((size, size), dtype=np.float32)
    s += sd
    if p["banding"] > 0:
        band = cv2.GaussianBlur(rng.standard_normal((size, 1)).astype(np.float32), (1, 0),
                                sigmaX=0.01, sigmaY=uni(rng, [1.0, 8.0]))
        s += (p["banding"] * band / (band.std() + 1e-6))
    return s


def quantize(s: np.ndarray, bit_depth: int, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Apply detector gain/offset, clip to 0..1 and quantise to uint8 or uint16 (``s`` is reused)."""
    np.maximum(s, -offset / gain, out=s)
    if bit_depth == 8:  # convertScaleAbs rounds and saturates at 255; s*gain+offset >= 0 here
        return cv2.convertScaleAbs(s, alpha=255.0 * gain, beta=255.0 * offset)
    out = np.clip(s * gain + offset, 0.0, 1.0) * 65535.0 + 0.5
    return out.astype(np.uint16)


# ---- scale bars, info bars, panel letters ----------------------------------------------------

def sample_annotations(rng: np.random.Generator, sem: dict, size: int) -> dict[str, Any]:
    """Overlay choices, and the rows (``valid``) left free for defects."""
    a: dict[str, Any] = {"info_bar": None, "scale_bar": None, "panel_letter": None}
    y0, y1 = 0.0, float(size)
    if rng.random() < sem["info_bar_prob"]:
        h = max(10, int(size * uni(rng, [0.07, 0.16])))
        top = bool(rng.random() < 0.25)
        a["info_bar"] = {"height": h, "top": top, "level": float(rng.choice([uni(rng, [0, 0.12]),
                                                                            uni(rng, [0.85, 1.0])])),
                         "seed": int(rng.integers(0, 2**31))}
        if top:
            y0 = max(y0, h + 2.0)
        else:
            y1 = min(y1, size - h - 2.0)
    elif rng.random() < sem["scale_bar_prob"]:
        right = bool(rng.random() < 0.6)
        a["scale_bar"] = {"right": right, "length": int(size * uni(rng, [0.12, 0.3])),
                          "seed": int(rng.integers(0, 2**31))}
        y1 = min(y1, size - 18.0)
    if rng.random() < sem["panel_letter_prob"]:
        a["panel_letter"] = "(" + "abcdef"[int(rng.integers(6))] + ")"
        y0 = max(y0, 16.0)
    a["valid"] = (y0, y1)
    return a


_UNITS = ("nm", "um")


def _label_text(r: np.random.Generator) -> str:
    num = int(r.choice([1, 2, 5, 10, 20, 50, 100, 200, 500]))
    return f"{num} {_UNITS[int(r.integers(2))]}"


def annotate(img: np.ndarray, a: dict[str, Any]) -> np.ndarray | None:
    """Draw the overlays in place (float image); returns the mask of overwritten pixels (None: none)."""
    size = img.shape[0]
    if not (a["info_bar"] or a["scale_bar"] or a["panel_letter"]):
        return None
    over = np.zeros(img.shape, np.uint8)
    txt = np.zeros(img.shape, np.uint8)  # putText only draws on 8-bit images
    font = cv2.FONT_HERSHEY_SIMPLEX
    if a["info_bar"]:
        b = a["info_bar"]
        r = np.random.default_rng(b["seed"])
        h, lvl = b["height"], b["level"]
        ink = 1.0 - round(lvl)
        rows = slice(0, h) if b["top"] else slice(size - h, size)
        img[rows] = lvl
        over[rows] = 1
        y_base = (h if b["top"] else size) - max(2, h // 4)
        scale = h / 34.0
        texts = [f"{r.uniform(1, 20):.1f}kV", f"x{int(r.choice([5, 10, 20, 50, 100]))}.0k",
                 f"WD {r.uniform(2, 10):.1f}mm", "SE2" if r.random() < 0.5 else "InLens"]
        x = 3
        for t in texts[: int(r.integers(2, 5))]:
            cv2.putText(txt, t, (x, y_base), font, scale, 255, 1, cv2.LINE_8)
            x += int(len(t) * 17 * scale) + 6
        bl = int(size * r.uniform(0.1, 0.25))
        xb = size - bl - 4
        yb = (h if b["top"] else size) - h // 2
        img[yb - 1: yb + 1, xb: xb + bl] = ink
        cv2.putText(txt, _label_text(r), (xb, yb - 3), font, scale * 0.8, 255, 1, cv2.LINE_8)
        img[txt > 0] = ink
    elif a["scale_bar"]:
        b = a["scale_bar"]
        r = np.random.default_rng(b["seed"])
        ln = b["length"]
        x0 = size - ln - 6 if b["right"] else 6
        ink = 1.0 if r.random() < 0.8 else 0.0
        img[size - 8: size - 5, x0: x0 + ln] = ink
        cv2.putText(txt, _label_text(r), (x0, size - 11), font, 0.3, 255, 1, cv2.LINE_8)
        img[txt > 0] = ink
        over[size - 18:, x0: x0 + ln] = 1
    if a["panel_letter"]:
        txt[:] = 0
        cv2.putText(txt, a["panel_letter"], (3, 12), font, 0.4, 255, 1, cv2.LINE_8)
        img[txt > 0] = 1.0
        over[:16, :30] = 1
    return over.astype(bool)
