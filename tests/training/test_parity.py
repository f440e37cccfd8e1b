"""Train/serve parity: the training transform is the edge kernel, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge import preprocess
from training.data import image_to_tile, load_dataset, load_tile


def _image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    img = rng.normal(top * 0.4, top * 0.1, shape)
    img[shape[0] // 3: shape[0] // 2] += top * 0.3
    return np.clip(img, 0, top).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tile_sized_image_is_exactly_the_edge_tile(tmp_path, dtype):
    img = _image((224, 224), dtype)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), img)
    got = load_tile(path, size=224)
    want = preprocess.tile(preprocess.read_image(path), size=224).batch[0]
    assert got.dtype == np.float32 and got.shape == (1, 224, 224)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_small_image_follows_the_upscale_rule(dtype):
    img = _image((128, 128), dtype)
    want = preprocess.tile(preprocess.prepare_small(img, 224), size=224).batch[0]
    np.testing.assert_array_equal(image_to_tile(img, size=224), want)


def test_a_large_image_is_resized_and_center_cropped():
    img = _image((300, 400), np.uint8)
    resized = cv2.resize(img, (299, 224), interpolation=cv2.INTER_AREA)
    crop = np.ascontiguousarray(resized[:, 37:37 + 224])
    want = preprocess.tile(crop, size=224).batch[0]
    np.testing.assert_array_equal(image_to_tile(img, size=224), want)


def test_percentiles_follow_the_manifest_values():
    img = _image((224, 224), np.uint8)
    want = preprocess.normalize(img, low=2.0, high=98.0)[None]
    np.testing.assert_array_equal(image_to_tile(img, size=224, low=2.0, high=98.0), want)


def test_the_training_cache_matches_the_edge_output(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), _image((224, 224), np.uint8, seed=i))
        paths.append(str(p))
    exact = load_dataset(paths, np.zeros(3), dtype=np.float32)
    compact = load_dataset(paths, np.zeros(3), dtype=np.float16)
    for i, p in enumerate(paths):
        edge_tile = preprocess.tile(preprocess.read_image(p), size=224).batch[0]
        np.testing.assert_array_equal(exact.x[i], edge_tile)
        # the float16 training cache rounds to 11 significant bits
        np.testing.assert_allclose(compact.x[i].astype(np.float32), edge_tile, atol=5e-4)
