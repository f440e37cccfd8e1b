"""Tensor augmentation: deterministic for a seed, stays in the edge's value range."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.augment import AugmentConfig, _blur_taps, _gaussian_blur, augment_batch  # noqa: E402


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 1, 64, 64, generator=g)


def test_same_seed_same_batch():
    x = _batch()
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_output_is_float32_in_unit_range_and_input_untouched():
    x = _batch()
    before = x.clone()
    y = augment_batch(x.half(), torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, before)


def test_renormalized_tiles_span_the_range_like_edge_output():
    y = augment_batch(_batch(), torch.Generator().manual_seed(1))
    flat = y.flatten(1)
    assert bool((flat.min(1).values <= 0.02).all())
    assert bool((flat.max(1).values >= 0.98).all())


def test_identity_config_only_applies_symmetries():
    cfg = AugmentConfig(p_invert=0, p_resample=0, p_blur=0, p_gamma=0, p_contrast=0,
                        p_noise=0, renormalize=False)
    x = _batch()
    y = augment_batch(x, torch.Generator().manual_seed(2), cfg)
    assert sorted(y.flatten().tolist()) == pytest.approx(sorted(x.flatten().tolist()))


def test_blur_keeps_the_mean_and_smooths():
    x = _batch()
    y = _gaussian_blur(x, 1.2)
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=1e-3)
    assert float(y.std()) < float(x.std())


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.25, 2.5])
def test_blur_matches_opencv_gaussian_with_reflect101_borders(sigma):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    x = _batch()[:3]
    y = _gaussian_blur(x, sigma)
    k = 2 * _blur_taps(sigma)[0] + 1
    for tile, blurred in zip(x[:, 0].numpy(), y[:, 0].numpy()):
        ref = cv2.GaussianBlur(tile, (k, k), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(blurred, ref, atol=2e-6)


def test_blur_wider_than_the_tile_is_an_error():
    with pytest.raises(ValueError, match="too wide"):
        _gaussian_blur(torch.zeros(1, 1, 7, 7), 2.5)  # radius 7
    assert _gaussian_blur(torch.ones(1, 1, 8, 8), 2.5).allclose(torch.ones(1, 1, 8, 8))


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown augment keys"):
        AugmentConfig.from_dict({"p_rotate": 0.5})
    assert AugmentConfig.from_dict({"gamma": [0.8, 1.2]}).gamma == (0.8, 1.2)


def test_a_drawn_augmentation_changes_only_the_samples_it_drew():
    # p=1 inversion alone: every tile is 1 - x up to its own symmetry; p=0: untouched
    x = _batch()
    off = AugmentConfig(p_invert=0.0, p_resample=0, p_blur=0, p_gamma=0, p_contrast=0,
                        p_noise=0, renormalize=False)
    on = AugmentConfig(p_invert=1.0, p_resample=0, p_blur=0, p_gamma=0, p_contrast=0,
                       p_noise=0, renormalize=False)
    a = augment_batch(x, torch.Generator().manual_seed(3), off)
    b = augment_batch(x, torch.Generator().manual_seed(3), on)
    assert torch.allclose(a + b, torch.ones_like(a))


def test_model_overrides_replace_only_their_keys():
    base = AugmentConfig(p_invert=0.3, p_blur=0.4)
    cfg = base.with_overrides({"p_invert": 0.0, "blur_sigma": [0.5, 2.5]})
    assert cfg.p_invert == 0.0 and cfg.blur_sigma == (0.5, 2.5) and cfg.p_blur == 0.4
    with pytest.raises(ValueError, match="p_inverted"):
        base.with_overrides({"p_inverted": 0.0})


def test_recipe_stage_augment_tables_reach_the_fit_config(tmp_path):
    from training.pipeline import _fit_config
    from training.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text("[augment]\np_invert = 0.3\n[stage2.augment]\np_invert = 0.0\n")
    r = load_recipe(path)
    assert _fit_config(r.stage2, 0, r).augment.p_invert == 0.0
    assert _fit_config(r.stage1, 0, r).augment.p_invert == 0.3
    path.write_text("[stage1.augment]\nbogus = 1\n")
    with pytest.raises(ValueError, match=r"stage1\.augment.*bogus"):
        load_recipe(path)
