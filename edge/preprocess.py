"""SEM image preprocessing: reading, percentile normalization and fused tiling.

The public functions validate their inputs here, in Python, and then call the Cython
kernels (``edge._histogram``, ``edge._normalize``, ``edge._tiling``), which release the GIL
and run without bounds checks.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import numpy as np

from edge import _histogram, _normalize, _tiling

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "MAX_ASPECT",
    "Tiles",
    "normalize",
    "percentiles",
    "pixel_limit",
    "prepare_small",
    "downscale_large",
    "read_image",
    "read_image_notes",
    "tile",
    "tile_grid",
    "untile",
    "validate_image",
]

PathLike = Union[str, "os.PathLike[str]"]
Pad = Literal["reflect", "drop"]

OPENMP: bool = _tiling.OPENMP
"""Whether the tiling kernel was built with OpenMP (``threads > 1`` then splits tiles)."""

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image ``read_image`` decodes (override with ``SEMEDGE_MAX_PIXELS``)."""

_SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


class ImageReadError(ValueError):
    """A file that cannot be turned into a 2-D 8/16-bit image; the message names the file."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class Tiles:
    """A batch of normalized tiles and where each came from.

    Attributes
    ----------
    batch : (N, 1, size, size) float32 ndarray
        Normalized tiles, NCHW, values in [0, 1].
    boxes : (N, 4) int64 ndarray
        ``x0, y0, x1, y1`` of each tile in image pixels, clipped to the image.
    grid : tuple of int
        ``(rows, cols)``; tile ``k`` is at row ``k // cols``, column ``k % cols``.
    image_shape : tuple of int
        ``(height, width)`` of the unpadded image.
    size, stride : int
        Tile side and step, in pixels.
    levels : tuple of int or None
        The ``low`` and ``high`` percentiles of the image the clip used; equal for an
        image without structure (every tile is then all zeros).
    """

    batch: np.ndarray
    boxes: np.ndarray
    grid: tuple[int, int]
    image_shape: tuple[int, int]
    size: int
    stride: int
    levels: tuple[int, int] | None = None

    @property
    def blank(self) -> bool:
        """True when the image has no structure: its two clip percentiles are equal."""
        return self.levels is not None and self.levels[0] == self.levels[1]

    def __len__(self) -> int:
        return int(self.batch.shape[0])


def validate_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as a 2-D uint8/uint16 ndarray or raise a clear error.

    An ``(H, W, 1)`` array is squeezed to ``(H, W)``; anything else that is not 2-D,
    not uint8/uint16, or empty raises.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy ndarray, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (H, W) or (H, W, 1) grayscale, got shape {image.shape}; "
            "convert colour images to one channel first (edge.preprocess.read_image does)"
        )
    if image.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be uint8 or uint16, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"{name} is empty, shape {image.shape}")
    if any(s % image.itemsize for s in image.strides):
        image = np.ascontiguousarray(image)
    return image


def _check_percentiles(low: float, high: float) -> tuple[float, float]:
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number in [0, 100], got {value!r}")
        if not math.isfinite(value) or not 0.0 <= value <= 100.0:
            raise ValueError(f"{name} must be in [0, 100], got {value!r}")
    if low >= high:
        raise ValueError(f"low must be smaller than high, got low={low!r}, high={high!r}")
    return float(low), float(high)


def _inverted_cdf_rank(n: int, q: float) -> int:
    """0-based rank that ``numpy.percentile(..., method="inverted_cdf")`` picks."""
    index = n * (np.float64(q) / 100.0) - 1.0
    previous = math.floor(index)
    rank = previous + 1 if index - previous > 0 else previous
    return int(min(max(rank, 0), n - 1))


def percentiles(image: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> tuple[int, int]:
    """Return the ``low`` and ``high`` percentiles of ``image`` (inverted-CDF definition).

    Equal to ``numpy.percentile(image, [low, high], method="inverted_cdf")``, computed from
    a histogram in one pass.
    """
    image = validate_image(image)
    low, high = _check_percentiles(low, high)
    n = image.size
    if n >= 2**32:
        raise ValueError(f"image has {n:,} pixels; at most 2**32 - 1 are supported")
    return _histogram.order_statistics(
        image, _inverted_cdf_rank(n, low), _inverted_cdf_rank(n, high)
    )


def normalize(image: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Clip ``image`` to its ``[low, high]`` percentiles and scale to [0, 1].

    Parameters
    ----------
    image : (H, W) uint8 or uint16 ndarray
        Any strides.
    low, high : float
        Percentiles in [0, 100], ``low < high``.

    Returns
    -------
    (H, W) float32 ndarray
        ``clip((image - p_low) * s, 0, 1)`` in float32 arithmetic, with
        ``s = float32(1) / float32(p_high - p_low)``; all zeros when the two percentiles
        are equal (a constant image), never NaN.
    """
    image = validate_image(image)
    lo, inv_span = _scale(image, low, high)
    out = np.empty(image.shape, dtype=np.float32)
    _normalize.normalize_into(image, lo, inv_span, out)
    return out


def _scale(image: np.ndarray, low: float, high: float) -> tuple[np.float32, np.float32]:
    """The float32 offset and factor of the normalization (factor 0 for a constant image)."""
    return _factors(*percentiles(image, low=low, high=high))


def _factors(lo: int, hi: int) -> tuple[np.float32, np.float32]:
    """Offset and factor for the percentiles ``lo``, ``hi`` (factor 0 when equal)."""
    inv_span = np.float32(1.0) / np.float32(hi - lo) if hi > lo else np.float32(0.0)
    return np.float32(lo), np.float32(inv_span)


def _check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return int(value)


def tile_grid(
    shape: tuple[int, int], *, size: int = 224, stride: int | None = None, pad: Pad = "reflect"
) -> tuple[int, int]:
    """Return ``(rows, cols)`` of the tile grid for an image of ``shape``.

    ``pad="reflect"`` adds tiles until the whole image is covered (the last ones reach
    into reflect-101 padding); ``pad="drop"`` keeps only tiles fully inside the image.
    """
    size = _check_positive_int("size", size)
    stride = size if stride is None else _check_positive_int("stride", stride)
    if pad not in ("reflect", "drop"):
        raise ValueError(f"pad must be 'reflect' or 'drop', got {pad!r}")
    counts = []
    for extent in shape:
        if pad == "reflect":
            counts.append(1 + max(0, math.ceil((extent - size) / stride)))
        else:
            counts.append(0 if extent < size else 1 + (extent - size) // stride)
    return counts[0], counts[1]


def tile(
    image: np.ndarray,
    *,
    size: int = 224,
    stride: int | None = None,
    pad: Pad = "reflect",
    low: float = 1.0,
    high: float = 99.0,
    out: np.ndarray | None = None,
    threads: int = 1,
) -> Tiles:
    """Normalize ``image`` and cut it into an NCHW float32 batch in one pass.

    Parameters
    ----------
    image : (H, W) uint8 or uint16 ndarray
    size : int
        Tile side in pixels.
    stride : int, optional
        Step between tiles; ``None`` means ``size`` (no overlap).
    pad : {"reflect", "drop"}
        ``reflect`` covers the whole image with reflect-101 padding, also an image
        smaller than one tile; ``drop`` drops the remainder (and raises if no tile fits).
    low, high : float
        Percentiles of the whole unpadded image used for the clip.
    out : (N, 1, size, size) float32 C-contiguous ndarray, optional
        Buffer to reuse; a view of its first N tiles becomes ``Tiles.batch``.
    threads : int
        Threads that share the tiles (used when built with OpenMP).

    Returns
    -------
    Tiles
    """
    image = validate_image(image)
    low, high = _check_percentiles(low, high)
    size = _check_positive_int("size", size)
    stride = size if stride is None else _check_positive_int("stride", stride)
    threads = _check_positive_int("threads", threads)
    h, w = image.shape
    rows, cols = tile_grid((h, w), size=size, stride=stride, pad=pad)
    n = rows * cols
    if n == 0:
        raise ValueError(
            f"image of shape {image.shape} is smaller than one {size}×{size} tile and "
            "pad='drop' keeps no tile; use pad='reflect'"
        )
    batch = _output_buffer(out, n, size)
    levels = percentiles(image, low=low, high=high)
    lo, inv_span = _factors(*levels)
    _tiling.tile_into(image, lo, inv_span, size, stride, rows, cols, batch, threads)
    ys, xs = np.divmod(np.arange(n, dtype=np.int64), cols)
    x0, y0 = xs * stride, ys * stride
    boxes = np.stack([x0, y0, np.minimum(x0 + size, w), np.minimum(y0 + size, h)], axis=1)
    return Tiles(batch=batch, boxes=boxes, grid=(rows, cols), image_shape=(h, w),
                 size=size, stride=stride, levels=(int(levels[0]), int(levels[1])))


def _output_buffer(out: np.ndarray | None, n: int, size: int) -> np.ndarray:
    if out is None:
        return np.empty((n, 1, size, size), dtype=np.float32)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy ndarray, got {type(out).__name__}")
    if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(
            f"out must be a writeable C-contiguous float32 array, got dtype {out.dtype}, "
            f"contiguous={out.flags.c_contiguous}, writeable={out.flags.writeable}"
        )
    if out.ndim != 4 or out.shape[1:] != (1, size, size) or out.shape[0] < n:
        raise ValueError(f"out must have shape (>= {n}, 1, {size}, {size}), got {out.shape}")
    return out[:n]


def untile(values: np.ndarray, tiles: Tiles, *, reduce: Literal["max", "mean"] = "max") -> np.ndarray:
    """Merge per-tile values back onto the image grid.

    Parameters
    ----------
    values : (N,) array or (N, 1, size, size) array
        One score per tile (e.g. stage-1 scores), or the tiles themselves.
    tiles : Tiles
        The tiling the values belong to.
    reduce : {"max", "mean"}
        How overlapping tiles combine (scores only; pixel tiles are identical where
        they overlap and are written as they are).

    Returns
    -------
    (H, W) float32 ndarray
        A per-pixel map: the merged score of the tiles covering each pixel, or the
        reassembled normalized image.
    """
    values = np.asarray(values)
    n = len(tiles)
    h, w = tiles.image_shape
    if values.shape == (n, 1, tiles.size, tiles.size):
        image = np.empty((h, w), dtype=np.float32)
        for (x0, y0, x1, y1), tile_pixels in zip(tiles.boxes, values[:, 0]):
            image[y0:y1, x0:x1] = tile_pixels[: y1 - y0, : x1 - x0]
        return image
    if values.shape != (n,):
        raise ValueError(
            f"values must have shape ({n},) or ({n}, 1, {tiles.size}, {tiles.size}), "
            f"got {values.shape}"
        )
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    if reduce == "max":
        merged = np.full((h, w), -np.inf, dtype=np.float32)
        for (x0, y0, x1, y1), v in zip(tiles.boxes, values):
            np.maximum(merged[y0:y1, x0:x1], v, out=merged[y0:y1, x0:x1])
        return merged
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.int32)
    for (x0, y0, x1, y1), v in zip(tiles.boxes, values):
        total[y0:y1, x0:x1] += v
        count[y0:y1, x0:x1] += 1
    return (total / count).astype(np.float32)


MAX_ASPECT = 64
"""Largest long-to-short side ratio ``classify`` takes for an image smaller than a tile:
upscaled, such an image is one tile high and at most 64 tiles long (its pixel count is
not bounded by the file's, so the header's pixel limit cannot bound it)."""


def prepare_small(image: np.ndarray, size: int = 224, *,
                  max_aspect: float | None = None) -> np.ndarray:
    """Upscale an image whose shorter side is under ``size`` so that side equals ``size``.

    The documented small-image rule, the same in training, ``classify`` and ``eval``:
    bilinear (the geometry of ``cv2.INTER_LINEAR``, computed so that every platform gives
    the same pixels), aspect ratio kept, dtype kept. Larger images are returned unchanged.
    The work is done in row blocks: beside the output, a few MB of temporaries at most.

    Raises
    ------
    ValueError
        ``max_aspect`` is given and the upscaled image would be longer than
        ``max_aspect`` tiles (checked before any pixel is computed).
    """
    image = validate_image(image)
    size = _check_positive_int("size", size)
    h, w = image.shape
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if max_aspect is not None and max(new_h, new_w) > max_aspect * size:
        raise ValueError(
            f"image is {w}×{h} px, too thin to classify: upscaled to {size} px on its short "
            f"side it would be {new_w}×{new_h} px; at most {max_aspect:g}:1 is taken")
    return _bilinear(image, new_h, new_w)


def _linear_taps(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of ``cv2.INTER_LINEAR`` (half-pixel centres, edges
    replicated) along one axis."""
    x = np.clip((np.arange(n_dst) + 0.5) * (n_src / n_dst) - 0.5, 0.0, n_src - 1.0)
    i0 = np.floor(x).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_src - 1), x - i0


def _bilinear(image: np.ndarray, new_h: int, new_w: int, *,
              block_elements: int = 1 << 20) -> np.ndarray:
    """Bilinear resize in float64, rounded to the input dtype.

    The same geometry as ``cv2.resize(..., INTER_LINEAR)``, but one IEEE operation per
    numpy call, so the result is bit-identical on x86-64 and aarch64 (OpenCV's SIMD
    fixed-point paths differ by a grey level between the two, measured by
    ``scripts/arm-check``, which moved scores of upscaled images by ~0.01). Output rows
    are computed in blocks of about ``block_elements`` values (at least one row), so the
    float64 temporaries stay small whatever the output size.
    """
    r0, r1, fy = _linear_taps(image.shape[0], new_h)
    c0, c1, fx = _linear_taps(image.shape[1], new_w)
    out = np.empty((new_h, new_w), dtype=image.dtype)
    step = max(1, block_elements // max(new_w, image.shape[1]))
    for y in range(0, new_h, step):
        rows = slice(y, y + step)
        wy = fy[rows, None]
        src = (image[r0[rows]].astype(np.float64) * (1.0 - wy)
               + image[r1[rows]].astype(np.float64) * wy)
        out[rows] = np.rint(src[:, c0] * (1.0 - fx) + src[:, c1] * fx)
    return out


def downscale_large(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Downscale an image whose shorter side is over ``size`` so that side equals ``size``.

    The bundle's ``large_image: "resize"`` rule (a model trained on downscaled images):
    ``cv2.INTER_AREA``, aspect ratio kept, dtype kept; smaller images are returned
    unchanged. Training center-crops the result to one tile; ``classify`` tiles all of it.
    """
    image = validate_image(image)
    size = _check_positive_int("size", size)
    if min(image.shape) <= size:
        return image
    return _resize_shorter_side(image, size, "INTER_AREA")


def _resize_shorter_side(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    import cv2  # OpenCV is only needed on this path and for reading

    h, w = image.shape
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return cv2.resize(np.ascontiguousarray(image), (new_w, new_h),
                      interpolation=getattr(cv2, interpolation))


def pixel_limit() -> int:
    """The largest image ``read_image`` decodes: ``SEMEDGE_MAX_PIXELS`` if set, else
    :data:`DEFAULT_MAX_PIXELS`.

    Raises
    ------
    ValueError
        ``SEMEDGE_MAX_PIXELS`` is not a positive integer.
    """
    raw = os.environ.get("SEMEDGE_MAX_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"SEMEDGE_MAX_PIXELS must be a positive integer (pixels), got {raw!r}")
    return value


def _header_info(path: Path) -> tuple[int, int, int] | None:
    """Width, height and page count from the file header (no pixel decoding), or None if
    Pillow cannot identify the file."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is optional; OpenCV's own pixel limit still applies
        return None
    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with the file's name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's complaints about odd metadata
            with Image.open(path) as im:
                return im.size[0], im.size[1], _page_count(im)
    except Exception:  # noqa: BLE001 - unidentified by Pillow: let OpenCV decide and report
        return None


def _page_count(im: object) -> int:
    """Pages (TIFF directories, APNG frames) Pillow sees; 1 when it cannot count them."""
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a broken chain of pages: OpenCV reads what it can of page 1
        return 1


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read (None when it is one)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
        return "no such file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop (the link never reaches a file)"
        return f"cannot open: {err.strerror or err}"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket)"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


_STDERR_LOCK = threading.Lock()
_DECODER_LINE = re.compile(
    r"^(libpng (warning|error)|\[\s*(ERROR|WARN|INFO)[:\]]|TIFF|Corrupt JPEG|Premature end "
    r"of JPEG|Invalid SOS|Inconsistent progression|Warning: unknown JFIF|JPEG)")
"""Lines the decoders print: libpng, libtiff, libjpeg (its warnings have no prefix; the
common ones) and OpenCV's log."""
_OPENCV_PREFIX = re.compile(r"^\[\s*(ERROR|WARN|INFO)[^\]]*\]\s+(global\s+)?\S+\s+")


@contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Collect what the image decoders (libpng, libtiff, OpenCV's log) print on stderr.

    They write bare lines that name no file. While the body runs, file descriptor 2 goes
    to a temporary file (one decode at a time, under a lock); afterwards the decoder lines
    are returned in the yielded list and anything else (another thread's output) is
    written to stderr unchanged. Without a usable descriptor 2 nothing is captured.
    """
    lines: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield lines
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            other = [line for line in text.splitlines(keepends=True)
                     if not _DECODER_LINE.match(line)]
            lines.extend(_OPENCV_PREFIX.sub("", line).strip() for line in text.splitlines()
                         if _DECODER_LINE.match(line))
            if other:
                os.write(2, "".join(other).encode("utf-8", errors="replace"))


def read_image(path: PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an SEM image file as a 2-D uint8 or uint16 array.

    PNG, TIFF (8/16-bit), BMP and JPEG through OpenCV (``IMREAD_UNCHANGED``). A colour
    file whose channels are equal becomes one channel; otherwise it is converted to
    luminance with a warning. The header is checked against ``max_pixels`` before any
    pixel is decoded. A multi-page file gives its first page, with a warning; what the
    decoders print on stderr becomes a warning naming the file
    (:func:`read_image_notes` returns these notes instead of warning).

    Raises
    ------
    ImageReadError
        Missing, empty, corrupt or truncated file; a folder, broken symbolic link or
        link loop; unsupported pixel type; too large.
    """
    image, notes = read_image_notes(path, max_pixels=max_pixels)
    for note in notes:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=2)
    return image


def read_image_notes(path: PathLike, *, max_pixels: int | None = None
                     ) -> tuple[np.ndarray, list[str]]:
    """Like :func:`read_image`, but return ``(image, notes)``: the caveats on the image
    (colour converted, pages beyond the first, decoder warnings) as short texts."""
    path = Path(path)
    limit = pixel_limit() if max_pixels is None else max_pixels
    problem = _file_problem(path)
    if problem is not None:
        raise ImageReadError(path, problem)
    notes: list[str] = []
    header = _header_info(path)
    if header is not None:
        _check_header(path, header, limit, notes)
    image, decoder = _decode(path)
    if image is None or image.size == 0:
        why = f" ({decoder[0]})" if decoder else ""
        raise ImageReadError(path, f"cannot decode: not an image, or corrupt or truncated{why}")
    notes += [f"decoder: {line}" for line in decoder]
    if image.dtype not in _SUPPORTED_DTYPES:
        raise ImageReadError(
            path, f"unsupported pixel type {image.dtype}: semedge reads 8- and 16-bit images"
        )
    if image.ndim == 3:
        image = _to_single_channel(image, path, notes)
    if image.ndim != 2:
        raise ImageReadError(path, f"unsupported image layout, shape {image.shape}")
    return image, notes


def _check_header(path: Path, header: tuple[int, int, int], limit: int,
                  notes: list[str]) -> None:
    """Refuse a header over the pixel limit; note pages beyond the first."""
    width, height, pages = header
    if width * height > limit:
        raise ImageReadError(
            path,
            f"image is {width}×{height} = {width * height:,} pixels, over the "
            f"limit of {limit:,} (set SEMEDGE_MAX_PIXELS to raise it)",
        )
    if pages > 1:
        notes.append(f"multi-page file: {pages} pages, only page 1 is classified")


def _decode(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """OpenCV's decode of the file's bytes and what the decoders printed meanwhile."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(path, f"cannot read: {err.strerror or err}") from None
    with _decoder_messages() as printed:
        try:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except cv2.error as err:  # some decoders raise instead of returning None
            printed.append(str(err).strip().splitlines()[-1] if str(err).strip() else "cv2.error")
            image = None
    return image, printed


def _to_single_channel(image: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    import cv2

    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    if channels not in (3, 4):
        raise ImageReadError(path, f"unsupported number of channels: {channels}")
    bgr = image[:, :, :3]
    if np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 0], bgr[:, :, 2]):
        return np.ascontiguousarray(bgr[:, :, 0])
    notes.append("colour image converted to luminance (SEM images are grayscale)")
    return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
