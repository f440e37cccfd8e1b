"""Defect visibility (Rose k) on renders whose answer is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from synth import render, write_dataset
from synth.visibility import rose_visibility

# one image formation for every render below: only the named knob changes between renders
FIXED = {"sem.frames": [1.0, 1.0], "sem.strong_blur_prob": 0.0, "sem.blur_px": [1.0, 1.0],
         "sem.info_bar_prob": 0.0, "sem.scale_bar_prob": 0.0, "sem.panel_letter_prob": 0.0}


def _k(recipe, label: str, index: int = 0, seed: int = 7) -> float:
    k = render(recipe, label, index, seed=seed)[1].visibility
    assert k is not None and math.isfinite(k)
    return k


@pytest.mark.parametrize("label", ["open", "short"])
def test_defect_drawn_with_zero_contrast_has_k_zero(default, label):
    flat = default.replace({**FIXED, "sem.contrast": [0.0, 0.0], "sem.rim": [0.0, 0.0],
                            "scene.texture_prob": 0.0})
    for i in range(3):
        assert _k(flat, label, i) == 0.0
    assert _k(default.replace(FIXED), label) > 5.0  # the same defects with contrast: visible


@pytest.mark.parametrize("label", ["open", "void", "crack"])
def test_doubling_the_dose_raises_k_by_root_two(default, label):
    def k_at(dose: float, read_noise: float, bits: int) -> float:
        return _k(default.replace({**FIXED, "sem.dose": [dose, dose],
                                   "sem.read_noise": [read_noise, read_noise],
                                   "recipe.bit_depth": bits}), label)

    # shot noise (a trace of read noise, 16 bits: no quantisation floor): sqrt(2)
    assert k_at(200.0, 1e-4, 16) / k_at(100.0, 1e-4, 16) == pytest.approx(math.sqrt(2), rel=1e-3)
    # with read noise and 8-bit steps: about sqrt(2), never more
    ratio = k_at(200.0, 0.02, 8) / k_at(100.0, 0.02, 8)
    assert 1.2 < ratio <= math.sqrt(2) + 1e-6


def test_a_wider_gap_is_more_visible(default):
    narrow = _k(default.replace({**FIXED, "defects.open.gap_px": [2.0, 2.0]}), "open")
    wide = _k(default.replace({**FIXED, "defects.open.gap_px": [8.0, 8.0]}), "open")
    assert wide > 1.5 * narrow


def test_rose_k_of_a_uniform_disk_is_contrast_root_area_over_noise():
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 32) ** 2 <= 6 ** 2
    reference = np.full((64, 64), 0.5, np.float32)
    signal = reference + np.float32(0.1) * disk
    p = {"dose": 400.0, "read_noise": 0.0}
    # in the disk the signal is 0.6, so the shot noise there is sqrt(0.6 / 400)
    expected = 0.1 * math.sqrt(disk.sum()) / math.sqrt(0.6 / 400.0)
    assert rose_visibility(signal, reference, p, bit_depth=16) == pytest.approx(expected, rel=1e-4)
    # pixels under an overlay do not count
    assert rose_visibility(signal, reference, p, bit_depth=16, exclude=disk) == 0.0


def test_manifest_records_visibility_for_defects_only(default, tmp_path):
    manifest = write_dataset(tmp_path / "d", per_class=2, seed=3, recipe=default)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        if row["label"] == "normal":
            assert row["visibility"] is None
        else:
            assert isinstance(row["visibility"], float) and row["visibility"] >= 0.0


def test_visibility_leaves_the_image_unchanged(default):
    # the reference pass draws from a copy of the generator: same bytes with or without it
    img, rec = render(default, "crack", 4, seed=9)
    again, _ = render(default, "crack", 4, seed=9)
    assert np.array_equal(img, again) and rec.visibility is not None
