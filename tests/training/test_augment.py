"""Tensor augmentation: deterministic for a seed, stays in the edge's value range."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.augment import AugmentConfig, _gaussian_blur, augment_batch  # noqa: E402


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


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown augment keys"):
        AugmentConfig.from_dict({"p_rotate": 0.5})
    assert AugmentConfig.from_dict({"gamma": [0.8, 1.2]}).gamma == (0.8, 1.2)
