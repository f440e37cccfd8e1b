from __future__ import annotations

import numpy as np

from synth import render_field


def test_field_boxes_contain_defect_pixels_and_are_deterministic(default):
    r = default.replace({"fields.defects": [1, 4]})
    seen = 0
    for k in range(4):
        img, lmap, rec = render_field(r, k, seed=6, size=640)
        img2, lmap2, _ = render_field(r, k, seed=6, size=640)
        assert np.array_equal(img, img2) and np.array_equal(lmap, lmap2)
        assert img.shape == lmap.shape == (640, 640)
        covered = np.zeros(lmap.shape, bool)
        for d in rec["defects"]:
            x0, y0, x1, y1 = d["box"]
            ys, xs = np.nonzero(lmap == d["id"])
            assert ys.size > 0
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
            covered[y0:y1, x0:x1] = True
            seen += 1
        assert not (lmap[~covered] > 0).any()
    assert seen >= 4
