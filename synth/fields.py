"""Large fields (e.g. 1024-2048 px) with zero or a few defects at known places."""

from __future__ import annotations

from typing import Any

import numpy as np

from synth import defects
from synth.compose import jsonable
from synth.draw import box_of
from synth.patterns import Constraints, build
from synth.recipe import Recipe, choose, derive_seed, make_rng, randint, uni
from synth.sem import form_image, quantize, sample_sem

FIELD_TAG = 1000  # class index used to derive field seeds (images use 0..7)
FIELD_FAMILIES = {"lines": 0.45, "routed": 0.2, "vias": 0.35}
FIELD_LABELS = {
    "lines": ("open", "short", "void", "crack"),
    "routed": ("open", "short", "void", "crack"),
    "vias": ("malformed_via", "void", "crack"),
}


def render_field(recipe: Recipe, index: int, seed: int, size: int | None = None,
                 family: str | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Field ``index`` of run ``seed``: (image, label map, record).

    ``family`` (one of ``FIELD_FAMILIES``) replaces the drawn pattern family; every other
    draw stays as it is.

    The label map is uint8: 0 where there is no defect, ``j + 1`` on the pixels of defect ``j``
    of ``record["defects"]`` (each with label, box [x0, y0, x1, y1) and parameters).
    """
    if index < 0:
        raise ValueError(f"field index must be >= 0, got {index}")
    image_seed = derive_seed(seed, FIELD_TAG, index)
    rng = make_rng(image_seed)
    fr = recipe["fields"]
    size = int(size) if size else int(round(uni(rng, fr["size"]) / 32) * 32)
    if size < 64:
        raise ValueError(f"field size must be >= 64, got {size}")
    ss = int(recipe["recipe"]["supersample"])
    drawn = choose(rng, FIELD_FAMILIES)
    if family is not None and family not in FIELD_FAMILIES:
        raise ValueError(f"unknown field family {family!r}; known: {', '.join(FIELD_FAMILIES)}")
    family = family or drawn
    post = bool(rng.random() < 0.7) if family == "vias" else None
    con = Constraints(min_width=8.0, min_space=3.0, max_via_frac=0.55, min_via_diam=10.0,
                      post=post)
    scene = build(rng, family, recipe["scene"], size, ss, con)
    n_def = randint(rng, fr["defects"])
    labels = [lab for lab in FIELD_LABELS[family]
              if not (lab == "void" and family == "vias" and not post)]
    items: list[dict[str, Any]] = []
    label_map = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), bool)
    for _ in range(n_def * 4):
        if len(items) == n_def:
            break
        label = str(rng.choice(labels))
        x, y = uni(rng, [48, size - 48]), uni(rng, [48, size - 48])
        if taken[int(y), int(x)]:
            continue
        d = dict(recipe["defects"][label])
        kw: dict[str, Any] = {}
        if label == "void":
            kw["radius"] = uni(rng, [d["radius_px"][0], min(d["radius_px"][1], 3.0)])
        if label == "crack":  # keep field cracks local so defects stay separable
            d["length_px"] = [d["length_px"][0], min(d["length_px"][1], 120.0)]
        saved_mat = scene.mat.copy()
        saved_dark = None if scene.dark is None else scene.dark.copy()
        res = defects.PLACERS[label](rng, d, scene, (0.0, float(size)), (x, y), **kw)
        if res is None:
            continue
        mask, params = res
        if (mask & taken).any():  # would touch an earlier defect: undo
            scene.mat, scene.dark = saved_mat, saved_dark
            continue
        box = box_of(mask)
        if box is None:
            continue
        items.append({"id": len(items) + 1, "label": label, "box": box, "params": jsonable(params)})
        label_map[mask] = len(items)
        x0, y0, x1, y1 = box
        taken[max(0, y0 - 24): y1 + 24, max(0, x0 - 24): x1 + 24] = True
    semp = sample_sem(rng, recipe["sem"], size, recipe["scene"], scene.view, scene.family)
    img = quantize(form_image(rng, scene, semp), int(recipe["recipe"]["bit_depth"]),
                   semp["gain"], semp["offset"])
    record = {
        "kind": "field", "index": index, "seed": int(seed), "image_seed": image_seed,
        "recipe": recipe.name, "recipe_hash": recipe.hash, "size": size, "family": family,
        "params": jsonable({"scene": scene.params, "sem": semp}), "defects": items,
    }
    return img, label_map, record
