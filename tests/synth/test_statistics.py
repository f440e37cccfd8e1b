"""Statistics measured on rendered images match the recipe and the recorded parameters."""

from __future__ import annotations

import numpy as np

from synth import render


def _rising(row: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Sub-pixel x of upward crossings of ``level`` (pixel centres at i + 0.5)."""
    a, b = row[:-1], row[1:]
    idx = np.flatnonzero((a < level) & (b >= level))
    return idx + 0.5 + (level - a[idx]) / (b[idx] - a[idx])


def _level(img: np.ndarray) -> np.ndarray:
    return (img.astype(float) / 255.0 - 0.1) / 0.8  # CLEAN: background 0.1, contrast 0.8


def test_ler_roughness_is_capped_by_the_grating_pitch(default):
    lo, hi = default.get("defects.ler.sigma_px")
    pitches, capped = [], 0
    for i in range(24):
        _img, rec = render(default, "ler", i, seed=3)
        sigma, pitch = rec.params["scene"]["ler_sigma_px"], rec.params["scene"]["pitch_px"]
        # recorded parameters are rounded to 6 decimals
        assert lo <= sigma <= min(hi, (pitch - 4) / 8) + 1e-5, (sigma, pitch)
        assert pitch >= 8 * lo + 4 - 1e-5
        pitches.append(pitch)
        capped += abs(sigma - (pitch - 4) / 8) < 1e-5
    assert min(pitches) < 8 * hi + 4  # gratings finer than the largest sigma allows exist
    assert capped >= 1


def test_ler_sigma_measured_from_edges(clean):
    rec_r = clean.replace({"classes.ler.families": {"lines": 1.0},
                           "defects.ler.rough_fraction": [1.0, 1.0]})
    lo, hi = rec_r.get("defects.ler.sigma_px")
    for i in range(4):
        img, rec = render(rec_r, "ler", i, seed=21)
        m = _level(img)
        sigma = rec.params["scene"]["ler_sigma_px"]
        pitch = rec.params["scene"]["pitch_px"]
        nominal = _rising(m.mean(axis=0))
        nominal = nominal[(nominal > pitch) & (nominal < 224 - pitch)]
        stds = []
        for e in nominal:
            pos = []
            for row in m:
                r = _rising(row)
                near = r[np.abs(r - e) < pitch / 3]
                if near.size == 1:
                    pos.append(near[0])
            assert len(pos) > 200
            stds.append(np.std(pos))
        measured = float(np.mean(stds))
        assert lo * 0.8 <= measured <= hi * 1.2
        assert abs(measured - sigma) < 0.2 * sigma + 0.3, (measured, sigma)


def test_normal_lines_have_no_accidental_gaps_or_bridges(clean):
    r = clean.replace({"classes.normal.families": {"lines": 1.0},
                       "scene.natural_ler_px": [0.8, 0.8]})
    for i in range(6):
        img, rec = render(r, "normal", i, seed=4)
        m = _level(img)
        pitch = rec.params["scene"]["pitch_px"]
        nominal = _rising(m.mean(axis=0))
        nominal = nominal[(nominal > pitch) & (nominal < 224 - pitch)]
        assert nominal.size >= 1
        # every line's rising edge is present exactly once in every row: no gap, no bridge
        for row in m:
            r_ = _rising(row)
            for e in nominal:
                assert np.count_nonzero(np.abs(r_ - e) < pitch / 2 - 0.5) == 1


def test_open_gap_length(clean):
    r = clean.replace({"classes.open.families": {"lines": 1.0}, "defects.open.count": [1, 1]})
    lo, hi = r.get("defects.open.gap_px")
    for i in range(8):
        img, rec = render(r, "open", i, seed=8)
        p = rec.params["defect"]
        assert lo <= p["gap_px"] <= hi
        x0, y0, x1, y1 = rec.box
        assert p["gap_px"] - 1.5 <= y1 - y0 <= p["gap_px"] + 2 * p["ragged_px"] + 2
        assert _level(img)[rec.mask].mean() < 0.25  # material really removed


def test_short_bridge_is_material(clean):
    r = clean.replace({"classes.short.families": {"lines": 1.0}, "defects.short.count": [1, 1]})
    for i in range(8):
        img, rec = render(r, "short", i, seed=9)
        w = rec.params["defect"]["bridge_width_px"]
        x0, y0, x1, y1 = rec.box
        assert w - 3.5 <= y1 - y0 <= w + 2 * rec.params["defect"]["ragged_px"] + 2
        assert _level(img)[rec.mask].mean() > 0.75


def test_void_radius(clean):
    r = clean.replace({"classes.void.families": {"lines": 1.0}, "defects.void.count": [1, 1],
                       "defects.void.irregular_prob": 0.0, "defects.void.radius_px": [4.0, 10.0]})
    for i in range(8):
        img, rec = render(r, "void", i, seed=10)
        p = rec.params["defect"]
        assert 4.0 <= p["void_radius_px"] <= 10.0
        area = np.pi * p["void_radius_px"] * p["void_radius_along_px"]
        assert abs(rec.mask.sum() - area) < 0.2 * area + 4
        assert _level(img)[rec.mask].mean() < 0.3  # a cavity, not material
        # it does not cut through: the line continues on both sides of the void in every row
        m = _level(img)
        ys, xs = np.nonzero(rec.mask)
        for y in range(ys.min(), ys.max() + 1):
            row_x = xs[ys == y]
            walls = m[y, max(0, row_x.min() - 1)], m[y, min(223, row_x.max() + 1)]
            assert max(walls) > 0.4, (y, walls)


def test_crack_is_dark_and_long(clean):
    r = clean.replace({"classes.crack.families": {"surface": 1.0}})
    for i in range(6):
        img, rec = render(r, "crack", i, seed=12)
        v = img.astype(float)
        assert v[rec.mask].mean() < 0.8 * v[~rec.mask].mean()
        x0, y0, x1, y1 = rec.box
        assert max(x1 - x0, y1 - y0) >= min(20.0, rec.params["defect"]["length_px"] * 0.4)


def test_frame_averaging_lowers_the_noise_by_its_square_root(clean):
    def residual_sd(frames: float) -> float:
        noisy = clean.replace({"sem.dose": [400.0, 400.0], "sem.read_noise": [0.02, 0.02],
                               "sem.frames": [frames, frames]})
        sds = []
        for i in range(3):
            img, rec = render(noisy, "normal", i, seed=4)
            # same seed, noise switched off: the same picture without its noise
            ref, _ = render(clean.replace({"sem.frames": [frames, frames]}), "normal", i, seed=4)
            assert rec.params["sem"]["frames"] == frames
            sds.append(np.std(img.astype(float) - ref.astype(float)))
        return float(np.mean(sds))

    one, sixteen = residual_sd(1.0), residual_sd(16.0)
    assert one > 2.0  # grey levels: the single-frame render is visibly noisy
    assert 3.0 < one / sixteen < 5.0
