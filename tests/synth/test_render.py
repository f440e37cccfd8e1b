from __future__ import annotations

import json

import numpy as np
import pytest

from synth import derive_seed, encode_png, generate, render, rle_decode

DEFECTS = ("ler", "open", "short", "void", "malformed_via", "crack", "other_defect")


def test_same_seed_same_bytes_different_seed_differs(default):
    for label in ("normal", "open", "malformed_via", "crack"):
        a, ra = render(default, label, 3, seed=11)
        b, rb = render(default, label, 3, seed=11)
        c, _ = render(default, label, 3, seed=12)
        assert encode_png(a) == encode_png(b)
        assert ra.to_json() == rb.to_json()
        assert not np.array_equal(a, c)
    assert derive_seed(1, 2, 3) != derive_seed(1, 2, 4) != derive_seed(1, 3, 3)


def test_image_seed_is_independent_of_other_images(default):
    # image i of class c depends only on (seed, c, i): rendering others first changes nothing
    a, _ = render(default, "short", 5, seed=3)
    for i in range(3):
        render(default, "void", i, seed=3)
    b, _ = render(default, "short", 5, seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("label", DEFECTS)
def test_defect_masks_nonempty_inside_image_and_boxed(default, label):
    for i in range(12):
        img, rec = render(default, label, i, seed=5)
        assert img.shape == (224, 224) and img.dtype == np.uint8
        assert rec.mask is not None and rec.mask.shape == img.shape and rec.mask.any()
        x0, y0, x1, y1 = rec.box
        assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
        ys, xs = np.nonzero(rec.mask)
        assert ys.min() == y0 and ys.max() == y1 - 1 and xs.min() == x0 and xs.max() == x1 - 1
        line = json.loads(json.dumps(rec.to_json()))
        assert np.array_equal(rle_decode(line["mask_rle"]), rec.mask)
        assert line["label"] == label and line["params"]["defect"]


def test_normal_has_no_mask(default):
    for i in range(16):
        _, rec = render(default, "normal", i, seed=5)
        assert rec.mask is None and rec.box is None and rec.params["defect"] is None


def test_families_and_views_vary(default):
    fams = {rec.family for _, rec in generate(default, per_class=25, seed=2, labels=["normal"])}
    assert {"lines", "vias", "routed", "xsection", "bumps", "surface"} <= fams
    views = {rec.view for _, rec in generate(default, per_class=25, seed=2,
                                             labels=["malformed_via", "crack"])}
    assert views == {"top", "xsection"}


def test_sixteen_bit_and_size(default):
    r16 = default.replace({"recipe.bit_depth": 16})
    img, rec = render(r16, "open", 0, seed=1, size=128)
    assert img.dtype == np.uint16 and img.shape == (128, 128) and rec.bit_depth == 16
    assert img.max() > 255


def test_other_defect_only_when_enabled(default):
    off = default.replace({"classes.other_defect.enabled": False})
    with pytest.raises(ValueError, match="other_defect"):
        render(off, "other_defect", 0, seed=1)
    with pytest.raises(ValueError, match="index"):
        render(default, "open", -1, seed=1)
