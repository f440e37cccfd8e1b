"""Preprocessing kernels against straightforward numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge import preprocess as P

DTYPES = [np.uint8, np.uint16]


def reference_normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    lo, hi = np.percentile(image, [low, high], method="inverted_cdf")
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    scale = np.float32(1.0) / np.float32(hi - lo)
    return np.clip((image.astype(np.float32) - np.float32(lo)) * scale, 0, 1)


def reference_tiles(image: np.ndarray, size: int, stride: int, pad: str, low=1.0, high=99.0):
    norm = reference_normalize(image, low, high)
    h, w = image.shape
    if pad == "reflect":
        rows = 1 + max(0, -(-(h - size) // stride))
        cols = 1 + max(0, -(-(w - size) // stride))
        ph, pw = (rows - 1) * stride + size - h, (cols - 1) * stride + size - w
        if h == 1 or w == 1:  # numpy's reflect of a 1-pixel axis repeats that pixel
            norm = np.pad(norm, ((0, max(ph, 0)), (0, max(pw, 0))), mode="edge")
        else:
            norm = np.pad(norm, ((0, max(ph, 0)), (0, max(pw, 0))), mode="reflect")
    else:
        rows = 0 if h < size else 1 + (h - size) // stride
        cols = 0 if w < size else 1 + (w - size) // stride
    tiles = [
        norm[r * stride : r * stride + size, c * stride : c * stride + size]
        for r in range(rows)
        for c in range(cols)
    ]
    return np.stack(tiles)[:, None], (rows, cols)


def random_image(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5), (223, 225), (480, 640), (4096, 3000)])
def test_normalize_matches_numpy(dtype, shape):
    image = random_image(np.random.default_rng(sum(shape)), shape, dtype)
    out = P.normalize(image)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_array_equal(out, reference_normalize(image))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("low, high", [(0.0, 100.0), (0.0, 0.001), (99.999, 100.0), (1.0, 99.0), (25, 75)])
def test_percentiles_match_numpy_at_extremes(dtype, low, high):
    image = random_image(np.random.default_rng(3), (97, 131), dtype)
    expected = tuple(int(v) for v in np.percentile(image, [low, high], method="inverted_cdf"))
    assert P.percentiles(image, low=low, high=high) == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 20000), (3, 9001), (2, 8160), (1, 31), (4, 33), (40, 300)])
@pytest.mark.parametrize("kind", ["random", "narrow", "constant", "extremes", "spike"])
def test_percentiles_match_numpy_on_every_path(dtype, shape, kind):
    """Contiguous images take the vector threshold counts (8-bit lane accumulators flushed
    every 255 vectors; 16-bit: only when the sampled rows span a wide range, with a fallback
    to the histogram when the wanted high-byte bins hold over a quarter of the pixels):
    rows longer than a flush, tails, skewed data, a saturated spike."""
    rng = np.random.default_rng(13)
    top = np.iinfo(dtype).max
    if kind == "random":
        image = random_image(rng, shape, dtype)
    elif kind == "narrow":
        image = rng.integers(100, 104, size=shape, dtype=dtype)
    elif kind == "constant":
        image = np.full(shape, top, dtype)
    elif kind == "extremes":
        image = rng.choice(np.array([0, 1, top - 1, top], dtype), size=shape)
    else:  # wide spread plus 60 % saturated pixels: the high bin of p99 is most of the image
        image = random_image(rng, shape, dtype)
        image[rng.random(shape) < 0.6] = top
    for low, high in [(0.0, 100.0), (1.0, 99.0), (0.001, 0.002), (50.0, 50.5), (1.0, 30.0)]:
        want = np.percentile(image, [low, high], method="inverted_cdf")
        assert P.percentiles(image, low=low, high=high) == tuple(int(v) for v in want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_image_normalizes_to_zeros(dtype):
    image = np.full((50, 60), 17, dtype=dtype)
    out = P.normalize(image)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, 0.0)
    assert np.array_equal(P.tile(image, size=32).batch, np.zeros((4, 1, 32, 32), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_views(dtype):
    base = random_image(np.random.default_rng(5), (600, 700), dtype)
    for view in (base[::2, ::3], base[::-1, 10:300], base.T, base[50:400, ::-2]):
        np.testing.assert_array_equal(P.normalize(view), reference_normalize(view))
        got = P.tile(view, size=64, stride=48)
        want, grid = reference_tiles(view, 64, 48, "reflect")
        assert got.grid == grid
        np.testing.assert_array_equal(got.batch, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 300), (224, 224), (225, 223), (500, 700)])
@pytest.mark.parametrize("stride", [None, 100, 224, 300])
@pytest.mark.parametrize("pad", ["reflect", "drop"])
def test_tile_matches_numpy(dtype, shape, stride, pad):
    image = random_image(np.random.default_rng(7), shape, dtype)
    step = 224 if stride is None else stride
    rows = 0 if shape[0] < 224 else 1
    if pad == "drop" and rows == 0 or pad == "drop" and shape[1] < 224:
        with pytest.raises(ValueError, match="smaller than one"):
            P.tile(image, stride=stride, pad=pad)
        return
    got = P.tile(image, stride=stride, pad=pad)
    want, grid = reference_tiles(image, 224, step, pad)
    assert got.grid == grid and got.batch.dtype == np.float32
    np.testing.assert_array_equal(got.batch, want)
    h, w = shape
    assert (got.boxes[:, 2] <= w).all() and (got.boxes[:, 3] <= h).all()
    assert (got.boxes[:, :2] >= 0).all()


def test_reflect_covers_an_image_smaller_than_a_tile():
    image = np.arange(30, dtype=np.uint8).reshape(5, 6)
    tiles = P.tile(image, size=16)
    assert tiles.grid == (1, 1)
    assert tiles.boxes.tolist() == [[0, 0, 6, 5]]
    np.testing.assert_array_equal(P.untile(tiles.batch, tiles), P.normalize(image))


def test_threads_give_identical_batches():
    image = random_image(np.random.default_rng(9), (1100, 900), np.uint16)
    one = P.tile(image, size=128, stride=96, threads=1)
    two = P.tile(image, size=128, stride=96, threads=2)
    np.testing.assert_array_equal(one.batch, two.batch)


@pytest.mark.parametrize("dtype", DTYPES)
def test_streaming_stores_give_identical_batches(monkeypatch, dtype):
    """Large batches take the non-temporal-store rows; force them on small, odd cases
    (misaligned ``out``, sizes that are not a multiple of the vector width, views)."""
    from edge import _tiling

    base = random_image(np.random.default_rng(11), (400, 530), dtype)
    cases = [(base, 224, 192), (base, 37, 29), (base[::2, ::3], 64, 48), (base[:5, :7], 16, 16)]
    monkeypatch.setattr(_tiling, "STREAM_MIN_BYTES", 0)
    for image, size, stride in cases:
        want, grid = reference_tiles(image, size, stride, "reflect")
        n = grid[0] * grid[1]
        for offset in (0, 1, 3):  # out starting 4 and 12 bytes past a 16-byte boundary
            flat = np.empty(n * size * size + offset, np.float32)[offset:]
            out = flat.reshape(n, 1, size, size)
            for threads in (1, 2):
                got = P.tile(image, size=size, stride=stride, out=out, threads=threads)
                np.testing.assert_array_equal(got.batch, want)


def test_out_buffer_is_reused():
    image = random_image(np.random.default_rng(1), (448, 448), np.uint8)
    buffer = np.full((6, 1, 224, 224), -1.0, dtype=np.float32)
    tiles = P.tile(image, out=buffer)
    assert np.shares_memory(tiles.batch, buffer) and len(tiles) == 4
    np.testing.assert_array_equal(buffer[:4], P.tile(image).batch)
    assert (buffer[4:] == -1.0).all()


def test_untile_scores_max_and_mean():
    image = np.zeros((300, 300), dtype=np.uint8)
    tiles = P.tile(image, size=200, stride=100)
    assert tiles.grid == (2, 2)
    scores = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    merged = P.untile(scores, tiles, reduce="max")
    assert merged[0, 0] == pytest.approx(0.1) and merged[150, 150] == pytest.approx(0.4)
    mean = P.untile(scores, tiles, reduce="mean")
    assert mean[150, 150] == pytest.approx(0.25) and mean[299, 0] == pytest.approx(0.3)


@settings(max_examples=60, deadline=None)
@given(
    image=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16]),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=90),
    ),
    size=st.integers(1, 40),
    stride=st.one_of(st.none(), st.integers(1, 50)),
)
def test_tile_untile_round_trip(image, size, stride):
    tiles = P.tile(image, size=size, stride=stride)
    step = size if stride is None else stride
    if step > size:  # gaps between tiles: only the covered pixels come back
        return
    np.testing.assert_array_equal(P.untile(tiles.batch, tiles), P.normalize(image))
    assert len(tiles) == tiles.grid[0] * tiles.grid[1] == len(tiles.boxes)


@settings(max_examples=60, deadline=None)
@given(
    image=hnp.arrays(dtype=np.uint16, shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=64)),
    low=st.floats(0, 49.9),
    high=st.floats(50, 100),
)
def test_normalize_property(image, low, high):
    out = P.normalize(image, low=low, high=high)
    np.testing.assert_array_equal(out, reference_normalize(image, low, high))
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(
    "image, error, match",
    [
        ([[1, 2], [3, 4]], TypeError, "numpy ndarray"),
        (np.zeros((4, 4), np.float32), TypeError, "uint8 or uint16, got dtype float32"),
        (np.full((4, 4), np.nan, np.float64), TypeError, "got dtype float64"),
        (np.zeros((4, 4), np.int16), TypeError, "got dtype int16"),
        (np.zeros((4, 4, 3), np.uint8), ValueError, r"must be 2-D .* got shape \(4, 4, 3\)"),
        (np.zeros(16, np.uint8), ValueError, "got shape"),
        (np.zeros((0, 5), np.uint8), ValueError, "empty"),
    ],
)
def test_bad_images_are_rejected(image, error, match):
    with pytest.raises(error, match=match):
        P.normalize(image)
    with pytest.raises(error, match=match):
        P.tile(image)


def test_hw1_image_is_accepted():
    image = random_image(np.random.default_rng(2), (30, 40, 1), np.uint8)
    np.testing.assert_array_equal(P.normalize(image), reference_normalize(image[:, :, 0]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"low": -1}, ValueError, "low must be in"),
        ({"high": 101}, ValueError, "high must be in"),
        ({"low": 60, "high": 40}, ValueError, "low must be smaller"),
        ({"low": float("nan")}, ValueError, "low must be in"),
        ({"low": "1"}, TypeError, "low must be a number"),
        ({"size": 0}, ValueError, "size must be > 0"),
        ({"size": -3}, ValueError, "size must be > 0"),
        ({"size": 2.5}, TypeError, "size must be a positive int"),
        ({"stride": 0}, ValueError, "stride must be > 0"),
        ({"pad": "zeros"}, ValueError, "pad must be"),
        ({"threads": 0}, ValueError, "threads must be > 0"),
        ({"out": np.zeros((1, 1, 224, 224), np.float32)}, ValueError, "out must have shape"),
        ({"out": np.zeros((4, 1, 224, 224), np.float64)}, TypeError, "float32"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    image = np.zeros((300, 300), np.uint8)
    with pytest.raises(error, match=match):
        P.tile(image, **kwargs)


def test_prepare_small_upscales_only_small_images():
    small = random_image(np.random.default_rng(4), (128, 96), np.uint16)
    up = P.prepare_small(small, 224)
    assert up.dtype == np.uint16 and min(up.shape) == 224 and up.shape == (299, 224)
    big = np.zeros((300, 500), np.uint8)
    assert P.prepare_small(big, 224) is big


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(128, 128), (100, 37), (1, 1), (5, 300)])
def test_prepare_small_is_opencv_bilinear_to_one_grey_level(dtype, shape):
    import cv2

    image = random_image(np.random.default_rng(11), shape, dtype)
    up = P.prepare_small(image, 224)
    assert up.dtype == dtype and min(up.shape) == 224
    ref = cv2.resize(image, (up.shape[1], up.shape[0]), interpolation=cv2.INTER_LINEAR)
    assert np.abs(up.astype(np.int64) - ref.astype(np.int64)).max() <= 1


def test_prepare_small_keeps_constant_images_and_corners():
    image = np.full((16, 16), 200, np.uint8)
    np.testing.assert_array_equal(P.prepare_small(image, 64), 200)
    ramp = np.arange(16, dtype=np.uint16)[None, :].repeat(8, axis=0) * 1000
    up = P.prepare_small(ramp, 32)
    assert up[0, 0] == 0 and up[0, -1] == 15000  # edges replicated, not extrapolated
