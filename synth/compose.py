"""Render one labelled image: scene -> defect -> SEM formation -> overlays -> quantisation."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from synth import defects
from synth.draw import box_of
from synth.patterns import Constraints, Scene, build
from synth.recipe import ALL_LABELS, Recipe, choose, derive_seed, make_rng, uni
from synth.sem import (
    add_noise,
    annotate,
    form_signal,
    quantize,
    sample_annotations,
    sample_sem,
)
from synth.visibility import rose_visibility


@dataclass
class Record:
    """Ground truth of one rendered image."""

    label: str
    class_index: int
    index: int
    seed: int
    image_seed: int
    recipe: str
    recipe_hash: str
    size: int
    bit_depth: int
    family: str
    view: str
    params: dict[str, Any]
    box: list[int] | None
    mask: np.ndarray | None = field(repr=False, default=None)
    path: str | None = None
    sha256: str | None = None
    visibility: float | None = None  # Rose k of the defect (synth.visibility); None: normal

    def to_json(self) -> dict[str, Any]:
        """The manifest line: everything but the mask array, which is run-length encoded."""
        return {
            "path": self.path, "label": self.label, "class_index": self.class_index,
            "index": self.index, "seed": self.seed, "image_seed": self.image_seed,
            "recipe": self.recipe, "recipe_hash": self.recipe_hash, "size": self.size,
            "bit_depth": self.bit_depth, "family": self.family, "view": self.view,
            "box": self.box, "mask_rle": rle_encode(self.mask) if self.mask is not None else None,
            "params": self.params, "sha256": self.sha256, "visibility": self.visibility,
        }


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Row-major run lengths, starting with a run of zeros: {"size": [h, w], "counts": [...]}."""
    flat = mask.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": list(mask.shape), "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    h, w = rle["size"]
    vals = np.arange(len(rle["counts"])) % 2
    return np.repeat(vals, rle["counts"]).astype(bool).reshape(h, w)


def jsonable(obj: Any) -> Any:
    """Plain-Python copy of nested params (numpy scalars and arrays converted)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(round(float(obj), 6))
    return obj


FALLBACK = {"malformed_via": "vias"}


def _constraints(rng: np.random.Generator, recipe: Recipe, label: str, family: str
                 ) -> tuple[Constraints, dict[str, Any]]:
    d = recipe["defects"].get(label, {})
    sc = recipe["scene"]
    pre: dict[str, Any] = {}
    con = Constraints()
    if label == "ler":
        sigma, corr = uni(rng, d["sigma_px"]), uni(rng, d["corr_px"])
        frac = uni(rng, d["rough_fraction"])
        con.ler = (sigma, corr, frac)
        # a grating at least 8 sigma + 4 px in pitch for the smallest sigma; lines() then
        # caps sigma at the drawn pitch, so fine gratings get fine roughness
        con.min_pitch = 8 * float(d["sigma_px"][0]) + 4
    elif label == "void":
        r = uni(rng, d["radius_px"])
        pre["radius"] = r
        con.min_width = 2 * r + 3 + 6 * sc["natural_ler_px"][1]
        con.min_via_diam = 2 * r + 3
        con.post = True
    elif label == "malformed_via":
        con.max_via_frac = 0.55
        con.min_via_diam = 6.0 if family == "xsection" else 0.0
    return con, pre


def _snapshot(scene: Scene) -> Scene:
    """A copy of the scene's pixel maps, taken before a defect is drawn into them."""
    def dup(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a.copy()

    return replace(scene, mat=scene.mat.copy(), dark=dup(scene.dark), bright=dup(scene.bright))


def _place(rng: np.random.Generator, recipe: Recipe, label: str, scene: Scene, valid: tuple,
           pre: dict[str, Any], where: tuple | None = None
           ) -> tuple[np.ndarray, Any] | None:
    d = recipe["defects"][label]
    if label == "ler":
        return defects.ler_mask(scene, valid)
    count = int(rng.integers(d["count"][0], d["count"][1] + 1)) if (
        "count" in d and label != "malformed_via") else 1
    masks, params = [], []
    for k in range(count):
        kw = {"radius": pre["radius"]} if label == "void" else {}
        res = defects.PLACERS[label](rng, d, scene, valid, where if k == 0 else None, **kw)
        if res is None:
            if k == 0:
                return None
            break
        masks.append(res[0])
        params.append(res[1])
    mask = np.logical_or.reduce(masks)
    return mask, (params[0] if len(params) == 1 else {"count": len(params), "items": params})


def render_seeded(recipe: Recipe, label: str, image_seed: int, size: int
                  ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Render ``label`` from its own ``image_seed``: (image, mask or None, info)."""
    if label not in recipe.labels:
        raise ValueError(f"label {label!r} is not rendered by recipe {recipe.name!r}; "
                         f"allowed: {', '.join(recipe.labels)}")
    rng = make_rng(image_seed)
    ss = int(recipe["recipe"]["supersample"])
    ann = sample_annotations(rng, recipe["sem"], size)
    valid = ann["valid"]
    family = choose(rng, recipe["classes"][label]["families"])
    con, pre = _constraints(rng, recipe, label, family)
    scene = build(rng, family, recipe["scene"], size, ss, con)
    mask, dparams, reference = None, None, None
    if label != "normal":
        reference = _snapshot(scene)
        placed = _place(rng, recipe, label, scene, valid, pre)
        if placed is None:  # the drawn pattern had no room: fall back to a family that always has
            family = FALLBACK.get(label, "lines")
            con, pre = _constraints(rng, recipe, label, family)
            con.max_pitch = max(size / 4, con.min_pitch, con.min_width + 4)
            scene = build(rng, family, recipe["scene"], size, ss, con)
            reference = _snapshot(scene)
            placed = _place(rng, recipe, label, scene, valid, pre)
            if placed is None:
                raise RuntimeError(f"could not place a {label} defect (image seed {image_seed})")
        mask, dparams = placed
        if label == "ler":  # roughness is drawn with the lines: compare with straight edges
            reference = defects.ler_reference(scene)
    semp = sample_sem(rng, recipe["sem"], size, recipe["scene"], scene.view, scene.family)
    bit_depth = int(recipe["recipe"]["bit_depth"])
    rng_reference = copy.deepcopy(rng) if reference is not None else None
    s = form_signal(rng, scene, semp)
    signal = s.copy() if reference is not None else None
    s = add_noise(rng, s, semp)
    over = annotate(s, ann)
    img = quantize(s, bit_depth, semp["gain"], semp["offset"])
    if mask is not None and over is not None:
        mask = mask & ~over
    info = {
        "family": scene.family, "view": scene.view,
        "params": jsonable({"scene": scene.params, "sem": semp, "defect": dparams,
                            "annotations": {k: v for k, v in ann.items() if k != "valid"}}),
        "visibility": None,
    }
    if reference is not None:
        info["visibility"] = round(rose_visibility(
            signal, form_signal(rng_reference, reference, semp), semp, bit_depth, over), 3)
    return img, mask, info


def render(recipe: Recipe, label: str, index: int, seed: int, size: int | None = None
           ) -> tuple[np.ndarray, Record]:
    """Image ``index`` of class ``label`` for run seed ``seed``: (uint8/uint16 image, Record)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    size = int(size or recipe["recipe"]["size"])
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    ci = ALL_LABELS.index(label) if label in ALL_LABELS else -1
    image_seed = derive_seed(seed, ci, index)
    img, mask, info = render_seeded(recipe, label, image_seed, size)
    rec = Record(label=label, class_index=ci, index=index, seed=int(seed), image_seed=image_seed,
                 recipe=recipe.name, recipe_hash=recipe.hash, size=size,
                 bit_depth=int(recipe["recipe"]["bit_depth"]), family=info["family"],
                 view=info["view"], params=info["params"],
                 box=box_of(mask) if mask is not None else None, mask=mask,
                 visibility=info["visibility"])
    return img, rec
