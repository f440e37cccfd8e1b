"""read_image: formats, channels and every kind of bad file."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edge.preprocess import ImageReadError, read_image


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".jpg"])
def test_reads_8bit_formats(tmp_path, ext):
    image = (np.arange(64 * 80) % 251).astype(np.uint8).reshape(64, 80)
    path = tmp_path / f"a{ext}"
    assert cv2.imwrite(str(path), image)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (64, 80)
    if ext != ".jpg":
        np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_reads_16bit(tmp_path, ext):
    image = (np.arange(50 * 70, dtype=np.uint32) * 17 % 65536).astype(np.uint16).reshape(50, 70)
    path = tmp_path / f"a{ext}"
    cv2.imwrite(str(path), image)
    got = read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, image)


def test_equal_channels_become_one(tmp_path):
    gray = (np.arange(40 * 40) % 200).astype(np.uint8).reshape(40, 40)
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), np.dstack([gray] * 3))
    np.testing.assert_array_equal(read_image(path), gray)


def test_colour_becomes_luminance_with_warning(tmp_path):
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 2] = 255
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), rgb)
    with pytest.warns(UserWarning, match="red.png: colour image converted to luminance"):
        out = read_image(path)
    assert out.shape == (20, 20) and 70 < int(out[0, 0]) < 80  # 0.299 * 255


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, IHDR and the start of the pixel data (a few rows of zeros)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))


def test_huge_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(20000, 20000))
    with pytest.raises(ImageReadError, match=r"huge.png: image is 20000×20000 .* over the limit"):
        read_image(path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("zero.png", b"", "empty file"),
        ("text.png", b"this is not an image at all", "cannot decode"),
        ("corrupt.png", _png_header(64, 64) + b"garbage" * 10, "cannot decode"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"{name}: {match}"):
        read_image(path)


def test_truncated_tiff(tmp_path):
    image = np.random.default_rng(0).integers(0, 65535, (256, 256), dtype=np.uint16)
    path = tmp_path / "cut.tif"
    cv2.imwrite(str(path), image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        out = read_image(path)
    except ImageReadError as err:
        assert "cut.tif" in str(err)
    else:  # some decoders return the readable part; it must still be a valid image
        assert out.dtype == np.uint16 and out.ndim == 2


def test_float_tiff_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    cv2.imwrite(str(path), np.zeros((8, 8), np.float32))
    with pytest.raises(ImageReadError, match="float.tif: unsupported pixel type float32"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
