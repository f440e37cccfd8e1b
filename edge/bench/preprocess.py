"""The preprocessing comparison: fused kernel vs numpy vs OpenCV vs the bandwidth bound.

Every competitor produces the same NCHW float32 batch as ``edge.preprocess.tile`` (the
tests check that), so the comparison is between equal work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import DTypeLike

from edge import preprocess
from edge.bench.timing import Timing, measure, measure_interleaved


def numpy_tile(image: np.ndarray, size: int, stride: int, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Plain numpy: ``np.percentile`` + clip + reflect pad + strided windows copied out."""
    lo, hi = np.percentile(image, [low, high], method="inverted_cdf")
    if hi > lo:
        scale = np.float32(1.0) / np.float32(hi - lo)
        norm = np.clip((image.astype(np.float32) - np.float32(lo)) * scale, 0, 1)
    else:
        norm = np.zeros(image.shape, np.float32)
    rows, cols = preprocess.tile_grid(image.shape, size=size, stride=stride)
    pad_h = (rows - 1) * stride + size - image.shape[0]
    pad_w = (cols - 1) * stride + size - image.shape[1]
    padded = np.pad(norm, ((0, pad_h), (0, pad_w)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))[::stride, ::stride]
    return np.ascontiguousarray(windows.reshape(rows * cols, 1, size, size))


class OpenCVTiler:
    """The best OpenCV chain we know: ``cv2.calcHist`` percentiles, then per tile a float32
    ``cv2.LUT`` (8-bit) or ``cv2`` arithmetic (16-bit) into a reused buffer. Interior tiles
    are views of the image; only the bottom and right bands that border tiles read are
    copied with ``cv2.copyMakeBorder`` (BORDER_REFLECT_101), not the whole image."""

    def __init__(self, size: int, stride: int, low: float = 1.0, high: float = 99.0) -> None:
        import cv2

        self.cv2 = cv2
        self.size, self.stride, self.low, self.high = size, stride, low, high
        self.buffer: np.ndarray | None = None

    def _percentiles(self, image: np.ndarray) -> tuple[float, float]:
        levels = 256 if image.dtype == np.uint8 else 65536
        hist = self.cv2.calcHist([image], [0], None, [levels], [0, levels]).ravel()
        cdf = np.cumsum(hist)
        n = image.size
        ranks = [preprocess._inverted_cdf_rank(n, q)  # noqa: SLF001 - the kernels' rank rule
                 for q in (self.low, self.high)]
        lo, hi = (int(np.searchsorted(cdf, r + 1)) for r in ranks)  # first value with cdf > rank
        return float(lo), float(hi)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalize and tile ``image`` the OpenCV way: ``[N, 1, S, S]`` float32."""
        cv2, size, stride = self.cv2, self.size, self.stride
        lo, hi = self._percentiles(image)
        rows, cols = preprocess.tile_grid(image.shape, size=size, stride=stride)
        n = rows * cols
        sources = self._tile_sources(image, rows, cols)
        if self.buffer is None or self.buffer.shape[0] < n:
            self.buffer = np.empty((n, 1, size, size), np.float32)
        batch = self.buffer[:n]
        scale = float(np.float32(1.0) / np.float32(hi - lo)) if hi > lo else 0.0
        if image.dtype == np.uint8:
            lut = np.clip((np.arange(256, dtype=np.float32) - np.float32(lo)) * np.float32(scale), 0, 1)
            for k in range(n):
                cv2.LUT(sources[k], lut, dst=batch[k, 0])
        else:
            for k in range(n):
                dst, src = batch[k, 0], sources[k]
                cv2.subtract(src, lo, dst=dst, dtype=cv2.CV_32F)
                cv2.multiply(dst, scale, dst=dst)
                cv2.threshold(dst, 1.0, 1.0, cv2.THRESH_TRUNC, dst=dst)
                cv2.max(dst, 0.0, dst=dst)
        return batch

    def _tile_sources(self, image: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
        """The ``size × size`` source of every tile: a view of ``image`` when the tile lies
        inside, else a view of a reflect-101 padded copy of the bottom or right band."""
        cv2, size, stride = self.cv2, self.size, self.stride
        h, w = image.shape
        pad_h = max(0, (rows - 1) * stride + size - h)
        pad_w = max(0, (cols - 1) * stride + size - w)
        # A band starting at r0 (c0) pads exactly like the whole image as long as the
        # reflection stays inside it: r0 <= h - 1 - pad_h.
        r0 = max(0, min((rows - 1) * stride, h - 1 - pad_h))
        c0 = max(0, min((cols - 1) * stride, w - 1 - pad_w))
        right = bottom = None
        sources = []
        for k in range(rows * cols):
            y, x = (k // cols) * stride, (k % cols) * stride
            if y + size <= h and x + size <= w:
                sources.append(image[y : y + size, x : x + size])
            elif x + size > w:
                if right is None:
                    right = cv2.copyMakeBorder(image[:, c0:], 0, pad_h, 0, pad_w,
                                               cv2.BORDER_REFLECT_101)
                sources.append(right[y : y + size, x - c0 : x - c0 + size])
            else:
                if bottom is None:
                    bottom = cv2.copyMakeBorder(image[r0:, :], 0, pad_h, 0, 0,
                                                cv2.BORDER_REFLECT_101)
                sources.append(bottom[y - r0 : y - r0 + size, x : x + size])
        return sources


def fused_tile(image: np.ndarray, size: int, stride: int, out: np.ndarray | None = None) -> np.ndarray:
    """The product's kernel (one thread), writing into a reused buffer."""
    return preprocess.tile(image, size=size, stride=stride, out=out).batch


@dataclass(frozen=True)
class BandwidthBound:
    """Time this machine needs just to read the image once and write the batch once."""

    read_gbps: float
    write_gbps: float
    bytes_read: int
    bytes_written: int

    @property
    def bound_ms(self) -> float:
        """Milliseconds to read and write the bytes at the measured memory bandwidth."""
        return (self.bytes_read / self.read_gbps + self.bytes_written / self.write_gbps) / 1e6


MEMORY_PROBE_BYTES = 128 * 2**20
"""Size of the bandwidth probes: beyond the last-level cache, so they measure memory."""


def measure_bandwidth(bytes_read: int, bytes_written: int, *, min_time_s: float = 0.3) -> BandwidthBound:
    """Main-memory bandwidth as numpy sees it: a max over a uint64 buffer (read) and a fill
    of a float32 buffer (write), each at least ``MEMORY_PROBE_BYTES`` so caches don't help."""
    read_bytes = max(bytes_read, MEMORY_PROBE_BYTES) // 8 * 8
    write_bytes = max(bytes_written, MEMORY_PROBE_BYTES) // 4 * 4
    source64 = np.random.default_rng(0).integers(0, 2**63, read_bytes // 8, dtype=np.uint64)
    sink = np.empty(write_bytes // 4, np.float32)
    read = measure(lambda: source64.max(), min_time_s=min_time_s)
    write = measure(lambda: sink.fill(0.5), min_time_s=min_time_s)
    return BandwidthBound(
        read_gbps=source64.nbytes / read.median_ms / 1e6,
        write_gbps=sink.nbytes / write.median_ms / 1e6,
        bytes_read=bytes_read,
        bytes_written=bytes_written,
    )


@dataclass(frozen=True)
class PreprocessComparison:
    """One run of the four-way comparison on one image."""

    dtype: str
    shape: tuple[int, int]
    size: int
    stride: int
    fused: Timing
    numpy: Timing
    opencv: Timing
    bound: BandwidthBound

    @property
    def fused_over_bound(self) -> float:
        """Fused kernel time over the memory-bandwidth bound."""
        return self.fused.median_ms / self.bound.bound_ms

    @property
    def opencv_over_fused(self) -> float:
        """OpenCV reference time over fused kernel time."""
        return self.opencv.median_ms / self.fused.median_ms

    @property
    def numpy_over_fused(self) -> float:
        """NumPy reference time over fused kernel time."""
        return self.numpy.median_ms / self.fused.median_ms

    def as_dict(self) -> dict[str, object]:
        """The JSON object of this row (see ``docs/bench.md``)."""
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "size": self.size,
            "stride": self.stride,
            "fused_ms": self.fused.median_ms,
            "numpy_ms": self.numpy.median_ms,
            "opencv_ms": self.opencv.median_ms,
            "bound_ms": self.bound.bound_ms,
            "read_gbps": self.bound.read_gbps,
            "write_gbps": self.bound.write_gbps,
            "fused_over_bound": self.fused_over_bound,
            "opencv_over_fused": self.opencv_over_fused,
            "numpy_over_fused": self.numpy_over_fused,
        }


def sem_like_image(shape: tuple[int, int], dtype: DTypeLike, seed: int = 0) -> np.ndarray:
    """A deterministic test field: line pattern plus noise, full dynamic range of ``dtype``."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    lines = (np.sin(np.arange(shape[1]) * 2 * np.pi / 24.0) > 0).astype(np.float64)
    field = 0.2 + 0.6 * lines[None, :] + rng.normal(0, 0.08, shape)
    image: np.ndarray = (np.clip(field, 0, 1) * top).astype(dtype)
    return image


def competitors(size: int, stride: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Name → callable producing the batch, for the benchmark suites."""
    buffers: dict[str, np.ndarray] = {}
    opencv = OpenCVTiler(size, stride)

    def fused(image: np.ndarray) -> np.ndarray:
        rows, cols = preprocess.tile_grid(image.shape, size=size, stride=stride)
        out = buffers.get("fused")
        if out is None or out.shape[0] < rows * cols:
            out = buffers["fused"] = np.empty((rows * cols, 1, size, size), np.float32)
        return fused_tile(image, size, stride, out)

    return {
        "fused": fused,
        "numpy": lambda image: numpy_tile(image, size, stride),
        "opencv": opencv,
    }


def compare(
    image: np.ndarray, *, size: int = 224, stride: int = 224, min_time_s: float = 0.5
) -> PreprocessComparison:
    """Run the four-way comparison on ``image`` (single thread).

    The three competitors are timed round-robin (:func:`measure_interleaved`, each for at
    least ``min_time_s``), so that a slow spell of the shared machine hits them alike; the
    bandwidth probes run right after.
    """
    import cv2

    cv2.setNumThreads(1)
    funcs = competitors(size, stride)

    def on_image(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[], np.ndarray]:
        return lambda: f(image)

    timings = measure_interleaved(
        {name: on_image(f) for name, f in funcs.items()},
        min_time_s=min_time_s * len(funcs),
    )
    rows, cols = preprocess.tile_grid(image.shape, size=size, stride=stride)
    bound = measure_bandwidth(image.nbytes, rows * cols * size * size * 4, min_time_s=min_time_s)
    return PreprocessComparison(
        dtype=str(image.dtype), shape=image.shape, size=size, stride=stride,
        fused=timings["fused"], numpy=timings["numpy"], opencv=timings["opencv"], bound=bound,
    )
