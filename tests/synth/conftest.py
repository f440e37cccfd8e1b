from __future__ import annotations

import pytest

from synth import load_recipe

# Image formation switched off: the rendered image shows the ground-truth geometry directly.
CLEAN = {
    "sem.blur_px": [0.0, 0.0], "sem.strong_blur_prob": 0.0, "sem.dose": [1e9, 1e9],
    "sem.read_noise": [0.0, 0.0], "sem.charging": [0.0, 0.0], "sem.streak_prob": 0.0,
    "sem.scan_jitter_px": [0.0, 0.0], "sem.banding": [0.0, 0.0], "sem.vignetting": [0.0, 0.0],
    "sem.info_bar_prob": 0.0, "sem.scale_bar_prob": 0.0, "sem.panel_letter_prob": 0.0,
    "sem.rim": [0.0, 0.0], "sem.inverted_prob": 0.0, "sem.contrast": [0.8, 0.8],
    "sem.background": [0.1, 0.1], "sem.gain": [1.0, 1.0], "sem.offset": [0.0, 0.0],
    "scene.texture_prob": 0.0, "scene.vertical_prob": 1.0, "scene.tilt_deg": [0.0, 0.0],
    "scene.diagonal_prob": 0.0, "scene.natural_ler_px": [0.0, 0.0],
}


@pytest.fixture(scope="session")
def default():
    return load_recipe("default")


@pytest.fixture(scope="session")
def clean(default):
    return default.replace(CLEAN, name="clean")
