"""Property-based fuzzing of what reads untrusted input: ``read_image`` (random bytes,
valid PNG/TIFF encodings then mutated), the kernels behind ``normalize`` and ``tile``
(shapes, dtypes, strides, percentiles at the edges) and ``load_bundle`` (mutated
manifests). Each must answer with a value or its documented error, never another
exception or a crash. Bounded examples: the file runs in well under a minute; for longer
runs see ``scripts/fuzz-read-image`` and ``HYPOTHESIS_PROFILE=fuzz-long``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import make_bundle
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_preprocess import reference_normalize

from edge import preprocess as P
from edge.bundle import Bundle, BundleError, load_bundle

settings.register_profile("fuzz-long", max_examples=20_000, deadline=None)
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz-long"


def examples(n: int) -> settings:
    """``n`` examples (``fuzz-long``: the profile's), no deadline: the box is shared."""
    return settings(max_examples=20_000 if LONG else n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One folder for the files of every example (examples run one after another)."""
    with tempfile.TemporaryDirectory(prefix="semedge-fuzz-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------- read_image

MAX_PIXELS = 4_000_000  # an absurd header is refused before any decoding at this limit


def read_or_error(path: Path) -> np.ndarray | None:
    """``read_image``'s image, or None for an ImageReadError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decoder notes are warnings here
            image = P.read_image(path, max_pixels=MAX_PIXELS)
    except P.ImageReadError as err:
        assert str(path) in str(err) and err.problem
        return None
    assert isinstance(image, np.ndarray) and image.ndim == 2 and image.size > 0
    assert image.dtype in (np.uint8, np.uint16)
    assert image.size <= MAX_PIXELS
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def encoded_images(draw) -> bytes:
    """A small valid PNG or TIFF (8/16-bit, 1 or 3 channels) as OpenCV writes it."""
    ext = draw(st.sampled_from([".png", ".tif"]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([1, 3]))
    seed = draw(st.integers(0, 2**16))
    top = np.iinfo(dtype).max
    image = np.random.default_rng(seed).integers(0, top, (h, w, channels), endpoint=True)
    ok, buf = cv2.imencode(ext, image.astype(dtype).squeeze(axis=2) if channels == 1
                           else image.astype(dtype))
    assert ok
    return buf.tobytes()


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with bit flips (mostly in the header), truncated, or (PNG) absurd IHDR
    dimensions with a valid or broken CRC."""
    kind = draw(st.sampled_from(["flip-header", "flip-any", "truncate", "ihdr", "word"]))
    out = bytearray(data)
    if kind in ("flip-header", "flip-any"):
        span = min(len(out), 64) if kind == "flip-header" else len(out)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, span - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        out = out[:draw(st.integers(0, len(out) - 1))]
    elif kind == "ihdr" and data[:8] == b"\x89PNG\r\n\x1a\n":
        w = draw(st.sampled_from([0, 1, 2**16, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1))
        h = draw(st.sampled_from([0, 1, 2**16, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1))
        ihdr = struct.pack(">II", w, h) + bytes(out[24:29])
        chunk = _png_chunk(b"IHDR", ihdr)
        if draw(st.booleans()):
            chunk = chunk[:-4] + b"\0\0\0\0"  # a broken CRC
        out[8:33] = chunk
    else:  # a large 32-bit word (a size, offset or count) anywhere in the first 256 bytes
        pos = draw(st.integers(0, max(0, min(len(out), 256) - 4)))
        word = draw(st.sampled_from([0, 2**31 - 1, 2**32 - 1, 2**16, 1]))
        out[pos:pos + 4] = word.to_bytes(4, draw(st.sampled_from(["little", "big"])))
    return bytes(out)


@examples(150)
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".png", ".tif", ".jpg", ".bmp"]))
def test_read_image_random_bytes(scratch, data, ext):
    path = scratch / f"random{ext}"
    path.write_bytes(data)
    read_or_error(path)


@examples(300)
@given(data=encoded_images().flatmap(mutated))
def test_read_image_mutated_encodings(scratch, data):
    ext = ".png" if data[:4] == b"\x89PNG" else ".tif"
    path = scratch / f"mutated{ext}"
    path.write_bytes(data)
    read_or_error(path)


@examples(40)
@given(data=encoded_images())
def test_read_image_valid_encodings_round_trip(scratch, data):
    path = scratch / "valid.bin"
    path.write_bytes(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    image = read_or_error(path)
    assert image is not None and image.shape == decoded.shape[:2]


# ------------------------------------------------------------------ normalize, tile


@st.composite
def images(draw) -> np.ndarray:
    """uint8/uint16 images: tiny, 1×N, N×1, constant, two-valued or random; some given as
    non-contiguous views (reversed, strided, transposed)."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    shape = draw(st.sampled_from(["tiny", "row", "col", "any"]))
    n = draw(st.integers(1, 300))
    h, w = {"tiny": (draw(st.integers(1, 3)), draw(st.integers(1, 3))), "row": (1, n),
            "col": (n, 1), "any": (draw(st.integers(1, 120)), draw(st.integers(1, 120)))}[shape]
    top = int(np.iinfo(dtype).max)
    content = draw(st.sampled_from(["constant", "two", "random"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if content == "constant":
        image = np.full((h, w), draw(st.sampled_from([0, 1, top])), dtype)
    elif content == "two":
        image = np.where(rng.random((h, w)) < 0.5, 0, top).astype(dtype)
    else:
        image = rng.integers(0, top, (h, w), endpoint=True).astype(dtype)
    view = draw(st.sampled_from(["plain", "reversed", "transposed"]))
    return {"plain": image, "reversed": image[::-1, ::-1],
            "transposed": image.T}[view]


EDGE_PERCENTILES = [0.0, 1e-9, 0.5, 1.0, 50.0, 99.0, 99.999, 100.0 - 1e-9, 100.0]


@st.composite
def percentile_pairs(draw) -> tuple[float, float]:
    value = st.sampled_from(EDGE_PERCENTILES) | st.floats(0.0, 100.0)
    low, high = draw(value), draw(value)
    assume(low < high)
    return low, high


@examples(200)
@given(image=images(), levels=percentile_pairs())
def test_normalize_invariants(image, levels):
    low, high = levels
    out = P.normalize(image, low=low, high=high)
    assert out.shape == image.shape and out.dtype == np.float32
    assert not np.isnan(out).any() and out.min() >= 0.0 and out.max() <= 1.0
    lo, hi = np.percentile(image, [low, high], method="inverted_cdf")
    assert P.percentiles(image, low=low, high=high) == (lo, hi)
    if lo == hi:
        assert not out.any()  # no structure: all zeros, never NaN


def reference_tiles(image: np.ndarray, size: int, stride: int, rows: int, cols: int,
                    low: float, high: float) -> np.ndarray:
    """numpy reference: normalize, pad each axis reflect-101 (a 1-pixel axis repeats its
    pixel), cut the grid."""
    norm = reference_normalize(image, low, high)
    extra = [max(0, (n - 1) * stride + size - e) for n, e in zip((rows, cols), image.shape)]
    for axis, (pad, extent) in enumerate(zip(extra, image.shape)):
        widths = [(0, 0), (0, 0)]
        widths[axis] = (0, pad)
        norm = np.pad(norm, widths, mode="edge" if extent == 1 else "reflect")
    return np.stack([norm[r * stride:r * stride + size, c * stride:c * stride + size]
                     for r in range(rows) for c in range(cols)])[:, None]


@examples(200)
@given(image=images(), levels=percentile_pairs(), size=st.integers(1, 48),
       stride_extra=st.integers(-47, 20), pad=st.sampled_from(["reflect", "drop"]),
       threads=st.sampled_from([1, 2]))
def test_tile_invariants(image, levels, size, stride_extra, pad, threads):
    low, high = levels
    stride = max(1, size + stride_extra)
    h, w = image.shape
    rows, cols = P.tile_grid((h, w), size=size, stride=stride, pad=pad)
    if rows * cols == 0:
        with pytest.raises(ValueError, match="smaller than one"):
            P.tile(image, size=size, stride=stride, pad=pad, low=low, high=high)
        return
    tiles = P.tile(image, size=size, stride=stride, pad=pad, low=low, high=high,
                   threads=threads)
    batch = tiles.batch
    assert batch.shape == (rows * cols, 1, size, size) and batch.dtype == np.float32
    assert batch.flags.c_contiguous and tiles.grid == (rows, cols)
    assert not np.isnan(batch).any() and batch.min() >= 0.0 and batch.max() <= 1.0
    boxes = tiles.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    if stride <= size:  # with gaps between tiles, the last one may lie wholly in padding
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    if pad == "reflect" and stride <= size:  # the tiles cover the whole image
        assert boxes[:, 2].max() == w and boxes[:, 3].max() == h
    assert tiles.levels == P.percentiles(image, low=low, high=high)
    if tiles.blank:
        assert not batch.any()
    want = reference_tiles(np.ascontiguousarray(image), size, stride, rows, cols, low, high)
    np.testing.assert_array_equal(batch, want)


@examples(60)
@given(image=images(), size=st.integers(1, 64), max_aspect=st.sampled_from([None, 4, 64]))
def test_prepare_small_invariants(image, size, max_aspect):
    h, w = image.shape
    try:
        out = P.prepare_small(image, size, max_aspect=max_aspect)
    except ValueError as err:
        assert max_aspect is not None and "too thin" in str(err)
        return
    assert out.dtype == image.dtype and min(out.shape) >= min(size, min(h, w))
    if min(h, w) < size:
        assert min(out.shape) == size
        assert out.min() >= image.min() and out.max() <= image.max()  # bilinear: no overshoot


# ------------------------------------------------------------------ bundle manifests


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory) -> tuple[Path, bytes]:
    """A small valid bundle (its manifest is rewritten by every example) and its
    manifest's original bytes."""
    root = make_bundle(tmp_path_factory.mktemp("fuzz-bundle"))
    return root, (root / "manifest.json").read_bytes()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)

PATH_VALUES = st.sampled_from(["", ".", "..", "/", "/etc/passwd", "../x.onnx", "stage1.onnx",
                               "a\0b", "stage2.onnx/", "missing.onnx", "manifest.json",
                               "\udcff.onnx", "x" * 300]) | st.text(max_size=20)


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON object (dict keys only)."""
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated_manifests(draw, original: bytes) -> bytes:
    """The manifest with one key removed, a value replaced (any JSON value, or a path for
    ``path`` keys), or its bytes flipped or cut."""
    kind = draw(st.sampled_from(["drop", "replace", "replace", "bytes", "truncate"]))
    if kind == "bytes":
        out = bytearray(original)
        for _ in range(draw(st.integers(1, 6))):
            out[draw(st.integers(0, len(out) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if kind == "truncate":
        return original[:draw(st.integers(0, len(original) - 1))]
    manifest = json.loads(original)
    keys = _paths(manifest)
    where = draw(st.sampled_from(keys))
    parent = manifest
    for key in where[:-1]:
        parent = parent[key]
    if kind == "drop":
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(PATH_VALUES if where[-1] == "path" else JSON_VALUES)
    text = json.dumps(manifest, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", errors="surrogatepass")


def _check_bundle_outcome(root: Path) -> None:
    try:
        bundle = load_bundle(root)
    except BundleError as err:
        assert err.file and err.reason and str(err).startswith(err.file)
        assert err.file.startswith(str(root)) or err.file.startswith("/"), err
        return
    assert isinstance(bundle, Bundle)
    assert 0.0 <= bundle.low < bundle.high <= 100.0
    assert math.isfinite(bundle.temperature) and bundle.temperature > 0
    assert 0.0 <= bundle.stage1_threshold <= 1.0 and 0.0 <= bundle.unknown_threshold <= 1.0
    for stage_files in bundle.files.values():
        for entry in stage_files.values():
            assert entry.path.resolve().is_relative_to(root.resolve())


@examples(300)
@given(data=st.data())
def test_load_bundle_mutated_manifest(bundle_copy, data):
    root, original = bundle_copy
    (root / "manifest.json").write_bytes(data.draw(mutated_manifests(original)))
    _check_bundle_outcome(root)


def test_load_bundle_fixture_is_valid(bundle_copy):
    root, original = bundle_copy
    (root / "manifest.json").write_bytes(original)
    assert load_bundle(root).name == "test"
    assert shutil.disk_usage(root).free > 0
