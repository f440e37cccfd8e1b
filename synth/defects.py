"""The six defects of docs/classes.md (plus out-of-taxonomy ones), drawn into a Scene.

Each ``place_*`` function edits the scene in place and returns ``(mask, params)`` with the mask
at output resolution (bool, size x size), or ``None`` when the pattern has no room for it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

import cv2
import numpy as np

from synth.draw import blob_poly, ellipse_poly, fill, polyline
from synth.patterns import Scene, to_xy
from synth.recipe import loguni, randint, uni

Point = Optional[tuple]
Result = Optional[tuple]


def _mask(scene: Scene) -> np.ndarray:
    return np.zeros((scene.size, scene.size), dtype=np.uint8)


def _point(rng: np.random.Generator, scene: Scene, valid: tuple, margin: float) -> tuple:
    y0, y1 = valid
    m = min(margin, (y1 - y0) / 3, scene.size / 3)
    return (uni(rng, [m, scene.size - m]), uni(rng, [y0 + m, y1 - m]))


def _uv(g: dict, x: float, y: float) -> tuple[float, float]:
    d = np.array([x, y]) - g["c"]
    return float(d @ g["eu"]), float(d @ g["ev"])


def _poly(g: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return to_xy(g["c"], g["eu"], g["ev"], np.asarray(u, float), np.asarray(v, float))


def _line_at(g: dict, u: float, v: float, pad: float) -> tuple[int, slice]:
    i = int(np.clip(np.argmin(np.abs(g["uc"] - u)), 1, len(g["uc"]) - 2))
    vs = g["vs"]
    step = vs[1] - vs[0]
    k0 = int(np.clip(np.floor((v - pad - vs[0]) / step) - 1, 0, len(vs) - 1))
    k1 = int(np.clip(np.ceil((v + pad - vs[0]) / step) + 2, k0 + 1, len(vs)))
    return i, slice(k0, k1)


# ---- open -------------------------------------------------------------------------------------

def _locate(rng, scene: Scene, valid: tuple, where: Point, pad: float, margin: float
            ) -> tuple[int, float, slice] | None:
    """A line index and position along it, away from jogs: (i, v, sample slice)."""
    g = scene.geom
    for _ in range(12):
        x, y = where or _point(rng, scene, valid, margin)
        u, v = _uv(g, x, y)
        du = g["du"]
        k = int(np.clip(round((v - g["vs"][0]) / (g["vs"][1] - g["vs"][0])), 0, len(du) - 1))
        i, ks = _line_at(g, u - du[k], v, pad)
        if np.ptp(du[ks]) < 0.5:
            return i, v, ks
        where = None
    return None


def place_open(rng, d: dict, scene: Scene, valid: tuple, where: Point = None) -> Result:
    """Cut a gap across a line (an ``open``); ``None`` when the scene has no line."""
    g, mask = scene.geom, _mask(scene)
    if "left" not in g:
        return None
    gap = uni(rng, d["gap_px"])
    ragged = uni(rng, [0.0, min(1.0, 0.25 * gap)])
    loc = _locate(rng, scene, valid, where, gap / 2 + 2, gap / 2 + 4)
    if loc is None:
        return None
    i, v, ks = loc
    lo, hi = g["left"][i, ks].min(), g["right"][i, ks].max()
    sl = (g["left"][i, ks] - g["right"][i - 1, ks]).min()
    sr = (g["left"][i + 1, ks] - g["right"][i, ks]).min()
    ml, mr = min(1.0, 0.4 * sl), min(1.0, 0.4 * sr)
    m = 6
    us = np.linspace(lo - ml, hi + mr, m)
    top = v - gap / 2 - rng.random(m) * ragged
    bot = v + gap / 2 + rng.random(m) * ragged
    fill(scene.mat, [_poly(g, np.r_[us, us[::-1]], np.r_[top, bot[::-1]])], g["bg"], scene.ss)
    um = np.linspace(lo, hi, m)
    fill(mask, [_poly(g, np.r_[um, um[::-1]], np.r_[top, bot[::-1]])], 1, 1.0)
    return mask.astype(bool), {"gap_px": gap, "ragged_px": ragged, "line_width_px": float(hi - lo)}


# ---- short ------------------------------------------------------------------------------------

def place_short(rng, d: dict, scene: Scene, valid: tuple, where: Point = None) -> Result:
    """Bridge two neighbouring lines (a ``short``); ``None`` when the scene has no lines."""
    g, mask = scene.geom, _mask(scene)
    if "left" not in g:
        return None
    width = uni(rng, d["width_px"])
    ragged = uni(rng, d["ragged_px"])
    loc = _locate(rng, scene, valid, where, width / 2 + 2, width / 2 + 4)
    if loc is None:
        return None
    i, v, ks = loc
    y0, y1 = valid
    options = []
    for j in (i - 1, i) if rng.random() < 0.5 else (i, i - 1):
        if 0 <= j < len(g["uc"]) - 1:
            mid = (g["right"][j, ks].mean() + g["left"][j + 1, ks].mean()) / 2
            x, y = _poly(g, mid, v)
            if 1 <= x < scene.size - 1 and y0 + 1 <= y < y1 - 1:
                options.append(j)
    if not options:
        return None
    i = options[0]
    ua = (g["left"][i, ks] + g["right"][i, ks]).mean() / 2
    ub = (g["left"][i + 1, ks] + g["right"][i + 1, ks]).mean() / 2
    ra, lb = g["right"][i, ks].mean(), g["left"][i + 1, ks].mean()
    m = 7
    us = np.linspace(ua, ub, m)
    top = v - width / 2 + rng.uniform(-1, 1, m) * ragged
    bot = np.maximum(v + width / 2 + rng.uniform(-1, 1, m) * ragged, top + 1.5)
    fill(scene.mat, [_poly(g, np.r_[us, us[::-1]], np.r_[top, bot[::-1]])], g["fg"], scene.ss)
    um = np.linspace(ra, lb, m)
    fill(mask, [_poly(g, np.r_[um, um[::-1]], np.r_[top, bot[::-1]])], 1, 1.0)
    return mask.astype(bool), {"bridge_width_px": width, "ragged_px": ragged,
                               "space_px": float(lb - ra)}


# ---- void -------------------------------------------------------------------------------------

def place_void(rng, d: dict, scene: Scene, valid: tuple, where: Point = None,
               radius: float | None = None) -> Result:
    """Carve a void (round or irregular) into the material."""
    g, mask = scene.geom, _mask(scene)
    r = radius if radius is not None else uni(rng, d["radius_px"])
    irregular = bool(rng.random() < d["irregular_prob"])
    x, y = where or _point(rng, scene, valid, 2 * r + 4)
    if "left" in g:
        rv = r * uni(rng, [1.0, 1.6])
        loc = _locate(rng, scene, valid, where, rv + 1, 2 * r + 4)
        if loc is None:
            return None
        i, v, ks = loc
        cu = (g["left"][i, ks] + g["right"][i, ks]).mean() / 2
        half = min((g["right"][i, ks] - cu).min(), (cu - g["left"][i, ks]).min())
        room = half - 1.0 - r
        if room < 0:
            return None
        uc = cu + uni(rng, [-room, room]) * 0.8
        if irregular:
            p = blob_poly(rng, 0.0, 0.0, 1.0, 0.3, 18)
            p = p / np.abs(p).max(axis=0)
            poly = _poly(g, uc + p[:, 0] * r, v + p[:, 1] * rv)
        else:
            e = ellipse_poly(0.0, 0.0, r, rv)
            poly = _poly(g, uc + e[:, 0], v + e[:, 1])
        level = g["bg"]
    elif scene.family == "vias" and g["fg"] > g["bg"]:
        cs = g["centers"]
        inside = np.flatnonzero((cs[:, 0] > g["r"] + 2) & (cs[:, 0] < scene.size - g["r"] - 2)
                                & (cs[:, 1] > valid[0] + g["r"] + 2)
                                & (cs[:, 1] < valid[1] - g["r"] - 2))
        if inside.size == 0 or g["r"] - 1.0 < r:
            return None
        j = inside[np.argmin(np.hypot(cs[inside, 0] - x, cs[inside, 1] - y))]
        room = g["r"] - 1.0 - r
        cx, cy = cs[j] + rng.uniform(-1, 1, 2) * room * 0.7
        rv = r
        poly = (blob_poly(rng, cx, cy, r * 0.85, 0.25, 18) if irregular
                else ellipse_poly(cx, cy, r, r))
        level = g["bg"]
    else:
        return None
    fill(scene.mat, [poly], level, scene.ss)
    fill(mask, [poly], 1, 1.0)
    return mask.astype(bool), {"void_radius_px": r, "void_radius_along_px": rv,
                               "irregular": irregular}


# ---- line-edge roughness -----------------------------------------------------------------------

def _straight_lines(g: dict) -> np.ndarray:
    """Polygons of the grating's lines with straight edges (no roughness)."""
    vv = np.broadcast_to(g["vs"], g["left"].shape)
    l0 = np.broadcast_to(g["uc"][:, None] - g["width"] / 2, vv.shape)
    r0 = np.broadcast_to(g["uc"][:, None] + g["width"] / 2, vv.shape)
    return _poly(g, np.concatenate([l0, r0[:, ::-1]], 1), np.concatenate([vv, vv[:, ::-1]], 1))


def ler_reference(scene: Scene) -> Scene:
    """The scene with every line's edges straight: what a rough grating is measured against."""
    g = scene.geom
    mat = np.full_like(scene.mat, g["bg"])
    fill(mat, _straight_lines(g), g["fg"], scene.ss)
    return replace(scene, mat=mat)


def ler_mask(scene: Scene, valid: tuple) -> Result:
    """Pixels displaced by the roughness (rough XOR straight lines); roughness was drawn in lines()."""
    g = scene.geom
    smooth, rough = _mask(scene), _mask(scene)
    vv = np.broadcast_to(g["vs"], g["left"].shape)
    fill(smooth, _straight_lines(g), 1, 1.0)
    fill(rough, (_poly(g, np.concatenate([g["left"], g["right"][:, ::-1]], 1),
                           np.concatenate([vv, vv[:, ::-1]], 1))), 1, 1.0)
    mask = smooth != rough
    return mask, {"ler_sigma_px": scene.params["ler_sigma_px"],
                  "ler_corr_px": scene.params["ler_corr_px"],
                  "rough_fraction": scene.params["ler_rough_fraction"]}


# ---- malformed via ----------------------------------------------------------------------------

def _side_level(scene: Scene, x: float, y: float) -> float:
    n = scene.n
    xi = int(np.clip(x * scene.ss, 0, n - 1))
    yi = int(np.clip(y * scene.ss, 0, n - 1))
    return float(scene.mat[yi, xi])


def place_malformed(rng, d: dict, scene: Scene, valid: tuple, where: Point = None) -> Result:
    """Deform a via (top-down or in cross-section): a ``malformed_via``."""
    mask = _mask(scene)
    if scene.family == "vias":
        return _malformed_top(rng, d, scene, valid, where, mask)
    if scene.family == "xsection":
        return _malformed_xsec(rng, d, scene, valid, where, mask)
    return None


def _malformed_top(rng, d, scene, valid, where, mask) -> Result:
    g = scene.geom
    cs, r, asp, ang = g["centers"], g["r"], g["aspect"], g["angle"]
    m = r * asp + 2
    inside = np.flatnonzero((cs[:, 0] > m) & (cs[:, 0] < scene.size - m)
                            & (cs[:, 1] > valid[0] + m) & (cs[:, 1] < valid[1] - m))
    if inside.size == 0:
        return None
    x, y = where or _point(rng, scene, valid, m)
    first = inside[np.argmin(np.hypot(cs[inside, 0] - x, cs[inside, 1] - y))]
    count = randint(rng, d["count"])
    chosen = [int(first)]
    if count > 1:
        near = inside[(np.hypot(*(cs[inside] - cs[first]).T) < 3.5 * g["pitch"]) & (inside != first)]
        if near.size:
            chosen.append(int(rng.choice(near)))
    kinds = []
    space = g["pitch"] - 2 * r
    for j in chosen:
        kind = str(rng.choice(d["top_kinds"]))
        cx, cy = cs[j]
        erase = ellipse_poly(cx, cy, r * asp * 1.06 + 0.7, r * 1.06 + 0.7, ang)
        fill(scene.mat, [erase], g["bg"], scene.ss)
        fill(mask, [erase], 1, 1.0)
        polys: list[np.ndarray] = []
        level = g["fg"]
        if kind == "elongated":
            f = uni(rng, [1.4, 1.9])
            a2 = rng.uniform(0, np.pi)
            rx = min(r * f, r + 0.8 * space)
            polys = [ellipse_poly(cx, cy, rx * asp, r * uni(rng, [0.55, 0.85]), a2)]
        elif kind == "irregular":
            polys = [blob_poly(rng, cx, cy, r, uni(rng, [0.25, 0.45]), 20, asp, ang)]
        elif kind == "partial":
            mid = g["bg"] + (g["fg"] - g["bg"]) * uni(rng, [0.3, 0.6])
            fill(scene.mat, [ellipse_poly(cx, cy, r * asp, r, ang)], mid, scene.ss)
            e = ellipse_poly(cx, cy, r * asp, r, ang, 32)
            dirn = rng.uniform(0, 2 * np.pi)
            proj = (e - [cx, cy]) @ np.array([np.cos(dirn), np.sin(dirn)])
            polys = [e[proj > uni(rng, [-0.3, 0.4]) * r]]
        elif kind == "small":
            f = uni(rng, [0.3, 0.6])
            polys = [ellipse_poly(cx, cy, r * asp * f, r * f, ang)]
        elif kind == "large":
            f = min(uni(rng, [1.3, 1.6]), 1 + 0.8 * space / r)
            polys = [ellipse_poly(cx, cy, r * asp * f, r * f, ang)]
        else:  # merged with its nearest neighbour
            dist = np.hypot(*(cs - cs[j]).T)
            dist[j] = np.inf
            k = int(np.argmin(dist))
            (ax, ay), (bx, by) = cs[j], cs[k]
            nx, ny = -(by - ay), bx - ax
            ln = np.hypot(nx, ny) + 1e-9
            hw = r * uni(rng, [0.5, 0.9])
            ox, oy = nx / ln * hw, ny / ln * hw
            polys = [ellipse_poly(cx, cy, r * asp, r, ang), ellipse_poly(bx, by, r * asp, r, ang),
                     np.array([[ax + ox, ay + oy], [bx + ox, by + oy], [bx - ox, by - oy],
                               [ax - ox, ay - oy]])]
        for p in polys:
            if len(p) >= 3:
                fill(scene.mat, [p], level, scene.ss)
                fill(mask, [p], 1, 1.0)
        kinds.append(kind)
    return mask.astype(bool), {"kinds": kinds, "count": len(chosen), "view": "top"}


def _malformed_xsec(rng, d, scene, valid, where, mask) -> Result:
    g = scene.geom
    vs = [v for v in g["vias"] if 2 < v["x"] < scene.size - 2 and v["yb"] - v["yt"] > 6
          and valid[0] < (v["yt"] + v["yb"]) / 2 < valid[1]]
    if not vs:
        return None
    x, y = where or _point(rng, scene, valid, 4)
    via = min(vs, key=lambda v: abs(v["x"] - x))
    kind = str(rng.choice(d["xsec_kinds"]))
    xc, yt, yb, wt, wb = via["x"], via["yt"], via["yb"], via["wt"], via["wb"]
    h = yb - yt
    side = _side_level(scene, xc + max(wt, wb) / 2 + 3, (yt + yb) / 2)
    metal = g["metal"]
    trap = np.array([[xc - wt / 2, yt], [xc + wt / 2, yt], [xc + wb / 2, yb], [xc - wb / 2, yb]])
    params: dict[str, Any] = {"kind": kind, "view": "xsection", "via_height_px": h}
    boxes = [trap]
    if kind == "voided":
        cy = yt + h * uni(rng, [0.35, 0.7])
        rx = min(wt, wb) * uni(rng, [0.12, 0.33])
        ry = h * uni(rng, [0.1, 0.3])
        poly = blob_poly(rng, xc, cy, ry, 0.2, 18, aspect=rx / ry)
        fill(scene.mat, [poly], min(side, metal) * uni(rng, [0.0, 0.4]), scene.ss)
        params.update(void_rx_px=rx, void_ry_px=ry)
    elif kind == "necked":
        ym = yt + h * uni(rng, [0.3, 0.7])
        wm = wt + (wb - wt) * (ym - yt) / h
        keep = wm * uni(rng, [0.25, 0.55])
        depth = (wm - keep) / 2
        ry = h * uni(rng, [0.12, 0.3])
        for sx in (-1, 1):
            fill(scene.mat, [ellipse_poly(xc + sx * wm / 2, ym, depth + 0.5, ry)], side, scene.ss)
        params.update(neck_width_px=keep, via_width_px=wm)
    elif kind == "misaligned":
        fill(scene.mat, [trap + [[0, 0.7], [0, 0.7], [0, -0.7], [0, -0.7]]], side, scene.ss)
        shift = float(rng.choice([-1, 1])) * max(wb, wt) * uni(rng, [0.5, 1.0])
        moved = trap + [[shift, -0.5], [shift, -0.5], [shift, 0.5], [shift, 0.5]]
        fill(scene.mat, [moved], metal, scene.ss)
        boxes.append(moved)
        params.update(shift_px=shift)
    else:  # not landed
        gap = min(uni(rng, [2.0, 8.0]), h * 0.4)
        w = max(wt, wb) / 2 + 1.0
        fill(scene.mat, [np.array([[xc - w, yb - gap], [xc + w, yb - gap], [xc + w, yb + 0.2],
                                   [xc - w, yb + 0.2]])], side, scene.ss)
        params.update(gap_px=gap)
    pts = np.concatenate(boxes)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    fill(mask, [np.array([[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x1 + 1, y1 + 1], [x0 - 1, y1 + 1]])],
         1, 1.0)
    return mask.astype(bool), params


# ---- crack ------------------------------------------------------------------------------------

def _walk(rng, x: float, y: float, theta: float, length: float, jag: float) -> np.ndarray:
    n = max(3, int(length / 2.0))
    wander = np.cumsum(rng.normal(0.0, 0.12, n))
    wander -= np.linspace(0, wander[-1], n) * 0.6  # keep the overall heading
    th = theta + wander + rng.normal(0.0, 0.35, n)
    steps = np.stack([np.cos(th), np.sin(th)], 1) * 2.0
    pts = np.vstack([[x, y], np.array([x, y]) + np.cumsum(steps, 0)])
    normal = np.stack([-np.sin(theta), np.cos(theta)])
    pts += rng.normal(0.0, jag, (len(pts), 1)) * normal
    return pts


def place_crack(rng, d: dict, scene: Scene, valid: tuple, where: Point = None) -> Result:
    """Draw a thin crack (sometimes branching) across the material."""
    mask = _mask(scene)
    length = loguni(rng, d["length_px"])
    width = uni(rng, d["width_px"])
    depth = uni(rng, d["depth"])
    jag = uni(rng, [0.3, 1.2])
    size = scene.size
    g = scene.geom
    if scene.family == "bumps" and where is None:
        b = g["bumps"][int(rng.integers(len(g["bumps"])))]
        top = rng.random() < 0.5
        yy = b["yt"] + b["tp"] + uni(rng, [0.5, 6]) if top else b["yb"] - b["tp"] - uni(rng, [0.5, 6])
        yy = float(np.clip(yy, valid[0] + 3, valid[1] - 3))
        sgn = 1.0 if rng.random() < 0.5 else -1.0
        x = b["cx"] - sgn * b["pw"] * uni(rng, [0.9, 1.1])
        x = float(np.clip(x, 2, size - 2))
        theta = (0.0 if sgn > 0 else np.pi) + uni(rng, [-0.15, 0.15])
        length = min(length, 2 * b["rx"] * uni(rng, [0.3, 1.0]))
        y = yy
    elif scene.family == "xsection" and where is None and rng.random() < 0.6:
        y = uni(rng, [max(valid[0], g["top_y"]) + 3, min(valid[1], g["sub_y"]) - 3]) \
            if min(valid[1], g["sub_y"]) - max(valid[0], g["top_y"]) > 8 else uni(rng, [valid[0] + 3, valid[1] - 3])
        x = uni(rng, [0, size * 0.3])
        theta = uni(rng, [-0.25, 0.25])
    else:
        x, y = where or _point(rng, scene, valid, 6)
        theta = rng.uniform(0, 2 * np.pi)
    length = max(length, d["length_px"][0])
    main = _walk(rng, x, y, theta, length, jag)
    paths = [(main, width)]
    branches = 0
    if rng.random() < d["branch_prob"]:
        branches = int(rng.integers(1, 3))
        for _ in range(branches):
            k = int(rng.integers(len(main) // 4, max(len(main) // 4 + 1, len(main) - 2)))
            th = theta + float(rng.choice([-1, 1])) * uni(rng, [0.4, 1.2])
            paths.append((_walk(rng, *main[k], th, length * uni(rng, [0.15, 0.5]), jag),
                          max(1.0, width * 0.7)))
    dark = scene.dark_map()
    for pts, w in paths:
        tip = len(pts) * 3 // 4
        polyline(dark, pts[: tip + 1], depth, w, scene.ss)
        polyline(dark, pts[tip:], depth * 0.8, max(1.0 / scene.ss, w * 0.6), scene.ss)
        polyline(mask, pts, 1, max(1.0, w), 1.0)
    return mask.astype(bool), {"length_px": length, "width_px": width, "depth": depth,
                               "jaggedness_px": jag, "branches": branches}


# ---- other (out of taxonomy) ------------------------------------------------------------------

def place_other(rng, d: dict, scene: Scene, valid: tuple, where: Point = None) -> Result:
    """Place a defect outside the six classes (particle, residue…): ``other_defect``."""
    mask = _mask(scene)
    kind = str(rng.choice(d["kinds"]))
    size, ss = scene.size, scene.ss
    params: dict[str, Any] = {"kind": kind}
    if kind == "particle":
        r = loguni(rng, d["particle_radius_px"])
        x, y = where or _point(rng, scene, valid, r + 2)
        body = blob_poly(rng, x, y, r, uni(rng, [0.1, 0.4]), 24, uni(rng, [0.7, 1.4]),
                         rng.uniform(0, np.pi))
        shadow = body + [r * 0.25, r * 0.3]
        fill(scene.dark_map(), [shadow], uni(rng, [0.3, 0.7]), ss)
        br = scene.bright_map()
        fill(br, [body], uni(rng, [0.35, 0.8]), ss)
        fill(br, [body * 0.55 + np.array([x, y]) * 0.45 - [r * 0.15, r * 0.15]],
             uni(rng, [0.85, 1.2]), ss)
        for p in (body, shadow):
            fill(mask, [p], 1, 1.0)
        params.update(radius_px=r)
    elif kind == "residue":
        r = uni(rng, d["residue_radius_px"])
        x, y = where or _point(rng, scene, valid, r * 0.5)
        poly = blob_poly(rng, x, y, r, uni(rng, [0.3, 0.5]), 24, uni(rng, [0.6, 1.6]),
                         rng.uniform(0, np.pi))
        blob = np.zeros_like(scene.mat)
        fill(blob, [poly], 1.0, ss)
        s = max(0.5, r * 0.15) * ss
        blob = cv2.GaussianBlur(blob, (0, 0), s)
        a = uni(rng, [0.6, 0.95])
        local = float(scene.mat[::8, ::8].mean())
        lvl = float(np.clip(local + (1 if local < 0.5 else -1) * uni(rng, [0.4, 0.8]), 0.0, 1.0))
        scene.mat += a * (lvl - scene.mat) * blob
        fill(mask, [poly], 1, 1.0)
        params.update(radius_px=r, opacity=a, level=lvl)
    else:  # CMP-like scratches: long, smooth, often parallel
        count = randint(rng, d["scratch_count"])
        x, y = where or _point(rng, scene, valid, 10)
        theta = rng.uniform(0, np.pi)
        curv = uni(rng, [-0.004, 0.004])
        length = size * uni(rng, [0.6, 1.6])
        t = np.linspace(-length / 2, length / 2, 40)
        gap = uni(rng, [3.0, 15.0])
        bright = rng.random() < 0.4
        target = scene.bright_map() if bright else scene.dark_map()
        depth = uni(rng, [0.45, 0.9]) * (1.6 if bright else 1.0)
        for k in range(count):
            off = (k - (count - 1) / 2) * gap * uni(rng, [0.7, 1.3])
            s0, s1 = uni(rng, [0, 0.3]), uni(rng, [0.7, 1.0])
            tt = t[int(s0 * 39): int(s1 * 39) + 1]
            nrm = off + curv * tt ** 2
            pts = np.stack([x + np.cos(theta) * tt - np.sin(theta) * nrm,
                            y + np.sin(theta) * tt + np.cos(theta) * nrm], 1)
            w = uni(rng, [1.5, 3.0])
            polyline(target, pts, depth, w, ss)
            polyline(mask, pts, 1, max(1.0, w), 1.0)
        params.update(count=count, bright=bool(bright), depth=depth)
    return mask.astype(bool), params


PLACERS: dict[str, Callable[..., Result]] = {
    "open": place_open, "short": place_short, "void": place_void,
    "malformed_via": place_malformed, "crack": place_crack, "other_defect": place_other,
}
