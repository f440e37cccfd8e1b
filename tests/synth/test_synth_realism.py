"""benchmarks/synth_realism.py: the real-vs-generated detector on small made-up folders
(no real crops needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("scipy", reason="the realism benchmark fits its detector with scipy")


def _folder(root: Path, labels: dict[str, int], seed: int, noise: float) -> Path:
    """Gratings of random pitch and phase plus Gaussian noise of ``noise`` (on [0, 1])."""
    rng = np.random.default_rng(seed)
    x = np.arange(48)
    for lab, n in labels.items():
        (root / lab).mkdir(parents=True)
        for i in range(n):
            pitch, phase = rng.uniform(6, 12), rng.uniform(0, 2 * np.pi)
            row = 0.5 + 0.3 * np.sin(2 * np.pi * x / pitch + phase)
            img = np.tile(row, (48, 1)) + rng.normal(0, noise, (48, 48))
            cv2.imwrite(str(root / lab / f"{lab}_{i}.png"),
                        np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realism")
    real = _folder(tmp / "real", {"normal": 40, "open": 30}, seed=0, noise=0.05)
    same = _folder(tmp / "same", {"normal": 50, "open": 30, "void": 10}, seed=1, noise=0.05)
    noisy = _folder(tmp / "noisy", {"normal": 40, "open": 40}, seed=2, noise=0.25)
    return tmp, real, same, noisy


def test_the_detector_tells_a_different_generator_apart_and_not_the_same_one(folders,
                                                                          load_benchmark):
    tmp, real, same, noisy = folders
    out = tmp / "result.json"
    realism = load_benchmark("synth_realism")
    code = realism.main(["--real", str(real), "--generated", f"same={same}",
                         "--generated", f"noisy={noisy}", "--size", "32",
                         "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    # void is not in the real folder: left out; every side gets the smallest count
    assert result["per_label"] == {"normal": 40, "open": 30}
    assert result["sets"]["same"]["mean"] < 0.75
    assert result["sets"]["noisy"]["mean"] > 0.95
    assert len(result["sets"]["noisy"]["fold_auc"]) == 5


def test_sheets_show_generated_images_only(folders, tmp_path, load_benchmark):
    _, real, same, _ = folders
    realism = load_benchmark("synth_realism")
    realism.main(["--real", str(real), "--generated", f"same={same}", "--size", "32",
                  "--sheets", str(tmp_path), "--sheet-n", "4"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["synth-same-normal.png", "synth-same-open.png", "synth-same-void.png",
                     "synth-same.png"]
    sheet = cv2.imread(str(tmp_path / "synth-same-void.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape == (2 * 98, 2 * 98)  # 4 images of 96 px (+2 px gap) in two rows


def test_folds_are_stratified_and_cover_every_sample(load_benchmark):
    mod = load_benchmark("synth_realism")
    strata = np.array(["a"] * 10 + ["b"] * 7)
    fold = mod.stratified_folds(strata, 5, seed=3)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 3, 4, 4]
    assert np.bincount(fold[:10], minlength=5).tolist() == [2] * 5
