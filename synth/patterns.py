"""Pattern families rendered as a super-resolved material map (levels 0..1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synth.draw import corr_noise, ellipse_poly, fill, superellipse_poly
from synth.recipe import loguni, randint, uni


@dataclass
class Scene:
    """A material map plus the geometry that defects are placed on."""

    size: int
    ss: int
    mat: np.ndarray  # (size*ss, size*ss) float32 material level
    family: str
    view: str  # "top" or "xsection"
    params: dict[str, Any]
    geom: dict[str, Any] = field(default_factory=dict)
    dark: np.ndarray | None = None  # fissures: multiplies the signal down (any polarity)
    bright: np.ndarray | None = None  # particles: adds signal (any polarity)
    tex_window: tuple[float, float] = (-1.0, 2.0)  # material levels that carry texture

    @property
    def n(self) -> int:
        """Side of the supersampled canvas in pixels."""
        return self.size * self.ss

    def dark_map(self) -> np.ndarray:
        """The fissure map that multiplies the signal down, created on first use."""
        if self.dark is None:
            self.dark = np.zeros_like(self.mat)
        return self.dark

    def bright_map(self) -> np.ndarray:
        """The particle map that adds signal, created on first use."""
        if self.bright is None:
            self.bright = np.zeros_like(self.mat)
        return self.bright


@dataclass
class Constraints:
    """What a defect needs from the pattern (all in output px)."""

    min_pitch: float = 0.0
    min_width: float = 0.0
    min_space: float = 0.0
    max_via_frac: float = 1.0
    min_via_diam: float = 0.0
    ler: tuple[float, float, float] | None = None  # (sigma, corr, rough_fraction)
    post: bool | None = None  # force posts (True) or holes (False) in via arrays
    max_pitch: float = float("inf")


def _canvas(size: int, ss: int, level: float) -> np.ndarray:
    return np.full((size * ss, size * ss), level, dtype=np.float32)


def _frame(angle_deg: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.deg2rad(angle_deg)
    eu = np.array([np.cos(a), np.sin(a)])
    ev = np.array([-np.sin(a), np.cos(a)])
    return np.array([size / 2.0, size / 2.0]), eu, ev


def _angle(rng: np.random.Generator, sc: dict, tilt_scale: float = 1.0) -> float:
    if rng.random() < sc["diagonal_prob"]:
        return float(rng.choice([-1, 1]) * uni(rng, [30.0, 60.0]))
    base = 0.0 if rng.random() < sc["vertical_prob"] else 90.0
    return base + tilt_scale * uni(rng, sc["tilt_deg"])


def to_xy(c: np.ndarray, eu: np.ndarray, ev: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pattern-frame (u across, v along) to image (x, y); broadcasts, last axis = 2.

    Same float64 operations, in the same order, as ``c + u[..., None] * eu + v[..., None] * ev``
    (bit-identical), but per coordinate: numpy is slow on an innermost axis of length 2.
    """
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    c, eu, ev = (np.asarray(a, np.float64) for a in (c, eu, ev))
    x = c[0] + u * eu[0] + v * ev[0]
    y = c[1] + u * eu[1] + v * ev[1]
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def lines(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints,
          routed: bool = False) -> Scene:
    """Line/space array: pitch, duty, orientation, natural (or defect) edge roughness.

    With ``routed``: per-track widths vary and the bundle jogs sideways at 45 degrees.
    """
    minf = float(sc["min_feature_px"])
    lo, hi = sc["routed_pitch_px"] if routed else sc["pitch_px"]
    hi = max(min(hi, con.max_pitch), 2 * minf)
    lo = max(lo, con.min_pitch, con.min_width + minf, 2 * minf)
    pitch = loguni(rng, [min(lo, hi * 1.5), max(hi, lo)])
    duty = uni(rng, sc["duty"])
    width = float(np.clip(pitch * duty, max(minf, con.min_width), pitch - max(minf, con.min_space)))
    angle = _angle(rng, {**sc, "diagonal_prob": 0.0} if routed else sc, 0.4 if routed else 1.0)
    nat = uni(rng, sc["natural_ler_px"])
    nat_corr = uni(rng, sc["natural_ler_corr_px"])
    c, eu, ev = _frame(angle, size)
    rad = np.deg2rad(angle)
    half = size / 2 * (abs(np.cos(rad)) + abs(np.sin(rad))) + 3
    k = np.arange(-int(np.ceil(half / pitch)) - 1, int(np.ceil(half / pitch)) + 2)
    uc = rng.random() * pitch + k * pitch
    nl = len(uc)
    sig = np.full((nl, 1), nat, dtype=np.float32)
    corr = nat_corr
    params: dict[str, Any] = {
        "pitch_px": pitch, "width_px": width, "duty": width / pitch, "angle_deg": angle,
        "natural_ler_px": nat, "natural_ler_corr_px": nat_corr,
    }
    if con.ler is not None:
        sigma, corr, frac = con.ler
        sigma = min(sigma, (pitch - 4) / 8)  # both rough edges fit in a line and a space
        rough = rng.random(nl) < frac
        sig[rough, 0] = sigma
        params.update(ler_sigma_px=sigma, ler_corr_px=corr, ler_rough_fraction=frac)
    # edge vertices every `step` px: dense enough for the roughness, sparse where edges are smooth
    step = float(np.clip(corr / 3, 1.0, 3.0)) if sig.max() > 0.05 else 8.0
    vs = np.arange(-half, half + step, step)
    noise = corr_noise(rng, 2 * nl, len(vs), corr / step)
    du = np.zeros(len(vs))
    widths = np.full((nl, 1), width)
    if routed:
        njog = randint(rng, sc["routed_jogs"])
        for _ in range(njog):
            amp = float(rng.choice([-1, 1])) * pitch * uni(rng, [0.5, 2.0])
            v0 = uni(rng, [-size / 2, size / 2])
            du += amp * np.clip((vs - v0) / abs(amp), 0.0, 1.0)
        du -= du.mean()
        jit = sc["routed_width_jitter"]
        widths = np.clip(width * (1 + jit * rng.uniform(-1, 1, (nl, 1))), minf,
                         pitch - minf) if jit > 0 else widths
        params.update(jogs=njog, width_jitter=jit)
    center = uc[:, None] + du[None, :]
    left = center - widths / 2 + sig * noise[:nl]
    right = center + widths / 2 + sig * noise[nl:]
    for _ in range(2):  # keep every line and space at least minf wide
        mid = (left + right) / 2
        narrow = (right - left) < minf
        left = np.where(narrow, mid - minf / 2, left)
        right = np.where(narrow, mid + minf / 2, right)
        gap = left[1:] - right[:-1]
        mids = (left[1:] + right[:-1]) / 2
        tight = gap < minf
        right[:-1] = np.where(tight, mids - minf / 2, right[:-1])
        left[1:] = np.where(tight, mids + minf / 2, left[1:])
    vv = np.broadcast_to(vs, left.shape)
    poly_u = np.concatenate([left, right[:, ::-1]], axis=1)
    poly_v = np.concatenate([vv, vv[:, ::-1]], axis=1)
    polys = to_xy(c, eu, ev, poly_u, poly_v)
    bg, fg = 0.0, 1.0
    mat = _canvas(size, ss, bg)
    fill(mat, polys, fg, ss)
    geom = {"c": c, "eu": eu, "ev": ev, "uc": uc, "vs": vs, "du": du, "left": left,
            "right": right, "bg": bg, "fg": fg, "pitch": pitch, "width": width}
    return Scene(size, ss, mat, "routed" if routed else "lines", "top", params, geom)


def routed(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """Routed metal: a bundle of tracks of varying width with 45-degree jogs."""
    return lines(rng, sc, size, ss, con, routed=True)


def vias(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """Contact/via arrays on square or hexagonal lattices, as holes or posts."""
    minf = float(sc["min_feature_px"])
    lo, hi = sc["via_pitch_px"]
    hi = max(min(hi, con.max_pitch), 2 * minf + 2)
    frac_hi = min(sc["via_diameter_frac"][1], con.max_via_frac)
    frac = uni(rng, [min(sc["via_diameter_frac"][0], frac_hi), frac_hi])
    lo = max(lo, con.min_via_diam / max(frac, 1e-3), (minf + 2.0) / (1 - frac))
    pitch = loguni(rng, [min(lo, hi * 1.5), max(hi, lo)])
    hexa = bool(rng.random() < sc["via_hex_prob"])
    post = bool(rng.random() < sc["via_post_prob"])
    if con.post is not None:
        post = con.post
    aspect = uni(rng, sc["via_aspect"]) if rng.random() < sc["via_oval_prob"] else 1.0
    angle = _angle(rng, {**sc, "diagonal_prob": 0.0}, tilt_scale=0.5)
    c, eu, ev = _frame(angle, size)
    r = frac * pitch / 2
    a1 = np.array([pitch * aspect, 0.0])
    a2 = np.array([pitch * aspect / 2, pitch * np.sqrt(3) / 2]) if hexa else np.array([0.0, pitch])
    kmax = int(np.ceil(0.8 * size / min(pitch, pitch * aspect))) + 2
    ii, jj = np.meshgrid(np.arange(-kmax, kmax + 1), np.arange(-kmax, kmax + 1))
    off = rng.random(2) * pitch
    uv = ii.reshape(-1, 1) * a1 + jj.reshape(-1, 1) * a2 + off
    xy = to_xy(c, eu, ev, uv[:, 0], uv[:, 1])
    margin = pitch * aspect + 2
    keep = np.all((xy > -margin) & (xy < size + margin), axis=1)
    xy = xy[keep]
    jit = uni(rng, [0.0, 0.02])
    radii = r * (1 + jit * rng.standard_normal(len(xy)))
    nv = 16 if r < 6 else 28
    t = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    ca, sa = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    ex = radii[:, None] * aspect * np.cos(t)
    ey = radii[:, None] * np.sin(t)
    polys = np.stack([xy[:, :1] + ca * ex - sa * ey, xy[:, 1:] + sa * ex + ca * ey], axis=2)
    bg, fg = (0.0, 1.0) if post else (1.0, 0.0)
    mat = _canvas(size, ss, bg)
    fill(mat, polys, fg, ss)
    params = {"pitch_px": pitch, "diameter_px": 2 * r, "lattice": "hex" if hexa else "square",
              "kind": "post" if post else "hole", "aspect": aspect, "angle_deg": angle}
    geom = {"centers": xy, "r": r, "aspect": aspect, "angle": np.deg2rad(angle), "bg": bg,
            "fg": fg, "pitch": pitch}
    return Scene(size, ss, mat, "vias", "top", params, geom)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _stack(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """Multi-level interconnect stack: metal levels, finer towards the bottom, joined by vias.

    Real cross-sections of back-end stacks are sharp and high-contrast: bright metal in dark
    dielectric, each level's lines on a pitch that is an integer multiple of the level below,
    so vias drop straight from one level onto the next; contacts reach the substrate.
    """
    n = float(size)
    diel = uni(rng, [0.03, 0.35])
    metal = uni(rng, [0.75, 1.0])
    top_y = n * uni(rng, [-0.15, 0.15])
    sub_y = n * uni(rng, [0.8, 1.08])
    mat = _canvas(size, ss, diel)
    fill(mat, [_rect(-1, -1, n + 1, top_y)], uni(rng, [0.0, 0.5]), ss)
    fill(mat, [_rect(-1, sub_y, n + 1, n + 1)], uni(rng, [0.25, 0.6]), ss)
    nlev = randint(rng, sc["xsec_stack_levels"])
    shrink = uni(rng, [0.5, 0.9])  # band height ratio of a level to the one above
    bands = shrink ** np.arange(nlev)
    span = sub_y - max(top_y, 0.0)
    bands = bands / bands.sum() * span * uni(rng, [0.8, 1.0])
    mults = rng.choice([1, 1, 2, 2, 3], nlev)
    pitch = max(6.0, n * uni(rng, [0.03, 0.12]))
    pitches = [pitch]
    for k in range(nlev - 1, 0, -1):  # from the bottom level up
        pitches.insert(0, min(pitches[0] * float(mults[k]), n * 0.8))
    phase = rng.random() * pitch
    liner = bool(rng.random() < 0.5)
    liner_lvl = float(np.clip(metal + rng.choice([-1, 1]) * uni(rng, [0.25, 0.5]), 0.0, 1.0))
    lw = uni(rng, [0.7, 2.0])
    y = max(top_y, 0.0) + uni(rng, [0.0, 0.08]) * span
    levels = []
    for i in range(nlev):
        p = pitches[i]
        t = bands[i] * uni(rng, [0.3, 0.55])
        w = float(np.clip(p * uni(rng, [0.4, 0.7]), 3.0, p - 2.0))
        xs = phase + p * np.arange(-np.ceil(phase / p) - 1, np.ceil(n / p) + 1)
        keep = rng.random(len(xs)) >= 0.08
        levels.append({"y": y, "t": t, "w": w, "xs": xs[keep]})
        y += bands[i]
    vias_geom = []

    def metal_box(x0: float, y0: float, x1: float, y1: float) -> None:
        if liner:
            fill(mat, [_rect(x0 - lw, y0 - lw, x1 + lw, y1 + lw)], liner_lvl, ss)
        fill(mat, [_rect(x0, y0, x1, y1)], metal, ss)

    def tapered_via(x: float, yt: float, yb: float, wt: float, wb: float) -> None:
        def trapezoid(pad: float) -> np.ndarray:
            return np.array([[x - wt / 2 - pad, yt - 0.5 - pad], [x + wt / 2 + pad, yt - 0.5 - pad],
                             [x + wb / 2 + pad, yb + 0.5 + pad], [x - wb / 2 - pad, yb + 0.5 + pad]])
        if liner:
            fill(mat, [trapezoid(lw)], liner_lvl, ss)
        fill(mat, [trapezoid(0.0)], metal, ss)

    for i, lev in enumerate(levels):
        below = levels[i + 1] if i + 1 < nlev else None
        yt = lev["y"] + lev["t"]
        yb = below["y"] if below else sub_y
        for x in lev["xs"]:
            if below is not None and np.min(np.abs(below["xs"] - x), initial=np.inf) > 0.5:
                continue
            if rng.random() > (0.7 if below is not None else 0.5) or yb - yt < 2:
                continue
            wt = min(lev["w"], below["w"] if below else lev["w"]) * uni(rng, [0.45, 0.85])
            wb = wt * uni(rng, [0.7, 1.0])
            tapered_via(x, yt, yb, wt, wb)
            vias_geom.append({"x": float(x), "yt": yt, "yb": yb, "wt": wt, "wb": wb})
    for lev in levels:
        for x in lev["xs"]:
            metal_box(x - lev["w"] / 2, lev["y"], x + lev["w"] / 2, lev["y"] + lev["t"])
    low = levels[-1]
    params = {"variant": "stack", "levels": nlev, "pitches_px": pitches, "vias": len(vias_geom),
              "metal_level": metal, "dielectric_level": diel, "liner": liner}
    geom = {"vias": vias_geom, "diel": diel, "metal": metal, "padw": low["w"] / 2, "y1": low["y"],
            "t1": low["t"], "top_y": top_y, "sub_y": sub_y}
    return Scene(size, ss, mat, "xsection", "xsection", params, geom,
                 tex_window=(metal - 0.05, metal + 0.05))


def xsection(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """Cross-section of an interconnect stack: dielectric layers, metal lines, vias or trenches."""
    if rng.random() < sc["xsec_stack_prob"]:
        return _stack(rng, sc, size, ss, con)
    n = float(size)
    variant = ["via", "via", "trench", "pillar"][int(rng.integers(4))]
    if con.min_via_diam > 0 and variant == "trench":
        variant = "via"
    k = randint(rng, sc["xsec_via_count"])
    vw = uni(rng, sc["xsec_via_width_px"])
    vpitch = n / k * uni(rng, [0.75, 1.0])
    vw = min(vw, vpitch * 0.45)
    x0 = n / 2 - vpitch * (k - 1) / 2 + uni(rng, [-0.2, 0.2]) * vpitch
    xs = x0 + np.arange(k) * vpitch
    diel = uni(rng, [0.15, 0.45])
    metal = uni(rng, [0.65, 1.0])
    top_y = n * uni(rng, [-0.1, 0.3])
    sub_y = n * uni(rng, [0.72, 1.05])
    mat = _canvas(size, ss, diel)
    above = uni(rng, [0.0, 0.12])
    fill(mat, [np.array([[0, -1], [n, -1], [n, top_y], [0, top_y]])], above, ss)
    nl = randint(rng, sc["xsec_layers"])
    ys = np.sort(rng.uniform(top_y, sub_y, nl - 1)) if nl > 1 else np.array([])
    for y in ys:  # dielectric sub-layers
        fill(mat, [np.array([[0, y], [n, y], [n, sub_y], [0, sub_y]])],
             float(np.clip(diel + uni(rng, [-0.12, 0.12]), 0.05, 0.55)), ss)
    fill(mat, [np.array([[0, sub_y], [n, sub_y], [n, n + 1], [0, n + 1]])], uni(rng, [0.3, 0.6]), ss)
    span = sub_y - max(top_y, 0.0)
    t1 = uni(rng, [0.08, 0.18]) * span
    y1 = sub_y - uni(rng, [0.05, 0.25]) * span - t1  # top of lower metal
    t2 = uni(rng, [0.1, 0.22]) * span
    y2 = max(top_y, 0.0) + t2 + uni(rng, [0.0, 0.15]) * span  # bottom of upper metal
    if y1 - y2 < 1.2 * vw:
        y2 = max(y1 - 1.2 * vw, top_y + 2.0)
    taper = uni(rng, [0.6, 1.0])
    padw = vw * uni(rng, [1.3, 2.2])
    cont1 = bool(rng.random() < 0.4)
    vias_geom = []
    if variant == "pillar":
        fill(mat, [np.array([[0, -1], [n, -1], [n, sub_y], [0, sub_y]])], above, ss)
        cap = uni(rng, [0.35, 0.6])
        for x in xs:
            w = vw * uni(rng, [1.0, 1.15])
            ytop = max(top_y, 2.0) + uni(rng, [0.0, 0.1]) * span
            fill(mat, [np.array([[x - w, ytop + w * 0.3], [x + w, ytop + w * 0.3], [x + w, sub_y],
                                 [x - w, sub_y]])], metal, ss)
            fill(mat, [ellipse_poly(x, ytop + w * 0.3, w * 1.05, w * 0.5)], cap, ss)
            vias_geom.append({"x": x, "yt": ytop, "yb": sub_y, "wt": 2 * w, "wb": 2 * w})
    else:
        if cont1:
            fill(mat, [np.array([[0, y1], [n, y1], [n, y1 + t1], [0, y1 + t1]])], metal, ss)
        for x in xs:
            if not cont1:
                fill(mat, [np.array([[x - padw, y1], [x + padw, y1], [x + padw, y1 + t1],
                                     [x - padw, y1 + t1]])], metal, ss)
            wb = vw * taper
            yt = y2 if variant == "via" else max(top_y, 0.0)
            fill(mat, [np.array([[x - vw / 2, yt - 0.5], [x + vw / 2, yt - 0.5], [x + wb / 2, y1 + 0.5],
                                 [x - wb / 2, y1 + 0.5]])], metal, ss)
            vias_geom.append({"x": x, "yt": yt, "yb": y1, "wt": vw, "wb": wb})
        if variant == "via":
            if rng.random() < 0.5:
                fill(mat, [np.array([[0, y2 - t2], [n, y2 - t2], [n, y2], [0, y2]])], metal, ss)
            else:
                for x in xs:
                    pw = padw * uni(rng, [1.0, 1.4])
                    fill(mat, [np.array([[x - pw, y2 - t2], [x + pw, y2 - t2], [x + pw, y2],
                                         [x - pw, y2]])], metal, ss)
    params = {"variant": variant, "vias": k, "via_width_px": vw, "taper": taper,
              "metal_level": metal, "dielectric_level": diel, "layers": nl}
    geom = {"vias": vias_geom, "diel": diel, "metal": metal, "padw": padw, "y1": y1, "t1": t1,
            "top_y": top_y, "sub_y": sub_y}
    return Scene(size, ss, mat, "xsection", "xsection", params, geom,
                 tex_window=(metal - 0.05, metal + 0.05))


def bumps(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """Cross-section of solder bumps between a chip pad and a substrate pad."""
    n = float(size)
    W = n * uni(rng, sc["bump_width_frac"])
    nb = 2 if W < 0.55 * n and rng.random() < 0.5 else 1
    yt = n * uni(rng, [0.02, 0.25])
    yb = n * uni(rng, [0.75, 0.98])
    bg = uni(rng, [0.0, 0.3])
    solder = uni(rng, [0.55, 0.95])
    chip = uni(rng, [0.2, 0.5])
    subs = uni(rng, [0.2, 0.6])
    mat = _canvas(size, ss, bg)
    fill(mat, [np.array([[0, -1], [n, -1], [n, yt], [0, yt]])], chip, ss)
    fill(mat, [np.array([[0, yb], [n, yb], [n, n + 1], [0, n + 1]])], subs, ss)
    h = yb - yt
    cxs = [n / 2 + uni(rng, [-0.1, 0.1]) * n] if nb == 1 else [n / 2 - W * 0.62, n / 2 + W * 0.62]
    pad = uni(rng, [0.75, 1.0])
    imc = float(np.clip(solder + rng.choice([-1, 1]) * uni(rng, [0.15, 0.3]), 0.1, 1.0))
    bgeom = []
    # pillar bumps and pads are cut as rounded rectangles, solder balls as ellipses
    power = uni(rng, [2.5, 6.0]) if rng.random() < sc["bump_pillar_prob"] else 2.0
    for cx in cxs:
        ry = h / 2 * (uni(rng, [1.0, 1.35]) if power == 2.0 else uni(rng, [0.85, 1.05]))
        fill(mat, [superellipse_poly(cx, (yt + yb) / 2, W / 2, ry, power, 48)], solder, ss)
        fill(mat, [np.array([[0, -1], [n, -1], [n, yt], [0, yt]])], chip, ss)
        fill(mat, [np.array([[0, yb], [n, yb], [n, n + 1], [0, n + 1]])], subs, ss)
        pw = W / 2 * uni(rng, [0.6, 0.9])
        tp = uni(rng, [2.0, 6.0])
        for y0, y1 in ((yt, yt + tp), (yb - tp, yb)):
            xs = np.linspace(cx - pw, cx + pw, 12)
            jag = rng.uniform(-1, 1, 12) * tp * 0.4
            inner = y1 + jag if y0 == yt else y0 + jag
            edge = y0 if y0 != yt else y0
            pts = np.concatenate([np.stack([xs, np.full(12, edge if y0 == yt else y1)], 1),
                                  np.stack([xs[::-1], inner[::-1]], 1)])
            fill(mat, [pts], pad if rng.random() < 0.5 else imc, ss)
        bgeom.append({"cx": cx, "rx": W / 2, "yt": yt, "yb": yb, "pw": pw, "tp": tp})
    params = {"bumps": nb, "bump_width_px": W, "solder_level": solder, "background_level": bg,
              "shape_power": power}
    geom = {"bumps": bgeom, "solder": solder, "bg": bg}
    return Scene(size, ss, mat, "bumps", "xsection", params, geom,
                 tex_window=(solder - 0.02, solder + 0.02))


def surface(rng: np.random.Generator, sc: dict, size: int, ss: int, con: Constraints) -> Scene:
    """A plain or layered material surface (dielectric, metal film), usually grainy."""
    n = float(size)
    lvl = uni(rng, [0.2, 0.8])
    mat = _canvas(size, ss, lvl)
    layered = bool(rng.random() < sc["surface_layers_prob"])
    params: dict[str, Any] = {"level": lvl, "layered": layered}
    if layered:
        y = n * uni(rng, [0.2, 0.8])
        slope = uni(rng, [-0.15, 0.15])
        lvl2 = float(np.clip(lvl + rng.choice([-1, 1]) * uni(rng, [0.15, 0.4]), 0.0, 1.0))
        fill(mat, [np.array([[-1, y - slope * n / 2], [n + 1, y + slope * n / 2], [n + 1, n + 1],
                             [-1, n + 1]])], lvl2, ss)
        params.update(boundary_y=y, level2=lvl2)
    return Scene(size, ss, mat, "surface", "top", params, {"level": lvl})


BUILDERS = {"lines": lines, "vias": vias, "routed": routed, "xsection": xsection,
            "bumps": bumps, "surface": surface}


def build(rng: np.random.Generator, family: str, sc: dict, size: int, ss: int,
          con: Constraints | None = None) -> Scene:
    """Render the pattern ``family`` with recipe scene table ``sc``."""
    return BUILDERS[family](rng, sc, size, ss, con or Constraints())
