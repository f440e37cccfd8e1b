"""The two-stage cascade: stage 1 on every tile, stage 2 only on flagged tiles.

``edge.load(bundle, target=...)`` returns a :class:`Cascade`. ``classify`` takes a 2-D
uint8/uint16 image of any size; ``classify_files`` streams results for files, reading
the next image while the current one is classified, and turns an unreadable file into
an error result instead of stopping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Union, cast

import numpy as np

from edge import preprocess
from edge.backends import Session, create_backend
from edge.bundle import Bundle, BundleError, load_bundle
from edge.classes import DEFECT_CLASSES
from edge.profiles import Profile, Runtime, detect, load_profile
from edge.results import ImageResult, blank_result, error_result, image_label, label_tiles

__all__ = ["Cascade", "load"]

PathLike = Union[str, "os.PathLike[str]"]

READ_ERRORS = (ValueError, TypeError, OSError, MemoryError)
"""Per-file failures that become error results (ImageReadError is a ValueError)."""


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    x = np.clip(logits.astype(np.float64), -80.0, 80.0)
    out: np.ndarray = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    return out


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    x = logits.astype(np.float64) / temperature
    x -= x.max(axis=1, keepdims=True)
    e = np.exp(x)
    out: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def _run_batched(session: Session, batch: np.ndarray, size: int) -> np.ndarray:
    outs = [session.run(batch[i:i + size]) for i in range(0, len(batch), size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


class Cascade:
    """A loaded bundle on one target, ready to classify images.

    Build it with :func:`load`. ``classify`` and ``classify_files`` are safe to call
    from several threads at once.

    Attributes
    ----------
    bundle : Bundle
    profile : Profile
    threshold : float
        Stage-1 threshold in use (the profile's override or the bundle's).
    size, stride, batch, threads : int
        Tile side and step, tiles per inference call, threads.
    backend : str
        ``runtime:provider:precision``, e.g. ``onnxruntime:CPUExecutionProvider:int8``.
    target_reason : str
        Why this target and runtime were chosen.
    """

    def __init__(self, bundle: Bundle, profile: Profile, stage1: Session,
                 stage2: Session | None, *, target_reason: str = "") -> None:
        self.bundle = bundle
        self.profile = profile
        self.stage1 = stage1
        self.stage2 = stage2
        self.size = bundle.input_size
        self.stride = profile.stride or self.size
        self.batch = profile.batch
        self.threads = profile.resolved_threads()
        self.threshold = (profile.stage1_threshold if profile.stage1_threshold is not None
                          else bundle.stage1_threshold)
        self.temperature = bundle.temperature
        self.unknown_threshold = bundle.unknown_threshold
        self.target_reason = target_reason
        d1 = stage1.describe
        d2 = d1 if stage2 is None else stage2.describe
        self.backend = d1 if d1 == d2 else f"{d1}+{d2}"

    def __repr__(self) -> str:
        return (f"Cascade(bundle={self.bundle.name!r}, target={self.profile.name!r}, "
                f"backend={self.backend!r}, threshold={self.threshold})")

    # ----------------------------------------------------------- the steps, each alone

    def tile(self, image: np.ndarray) -> preprocess.Tiles:
        """Normalize and tile ``image`` (already at least one tile large)."""
        return preprocess.tile(image, size=self.size, stride=self.stride, pad="reflect",
                               low=self.bundle.low, high=self.bundle.high,
                               threads=self.threads)

    def stage1_scores(self, batch: np.ndarray) -> np.ndarray:
        """P(defective) ``(N,)`` for a tile batch ``(N, 1, S, S)``."""
        if len(batch) == 0:
            return np.zeros(0, np.float32)
        return _sigmoid(_run_batched(self.stage1, batch, self.batch)[:, 0])

    def stage2_probs(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(M, 6)`` for a tile batch ``(M, 1, S, S)``.

        With the bundle's other output (``Bundle.other_output``) the softmax runs over
        seven outputs and a row sums to 1 − P(outside the six classes).
        Raises ``ValueError`` on a stage-1-only bundle (it has no stage 2)."""
        if self.stage2 is None:
            raise ValueError(f"bundle {self.bundle.name!r} is stage-1-only: it has no stage 2")
        if len(batch) == 0:
            return np.zeros((0, len(DEFECT_CLASSES)), np.float32)
        probs = _softmax(_run_batched(self.stage2, batch, self.batch), self.temperature)
        return np.ascontiguousarray(probs[:, :len(DEFECT_CLASSES)])

    # ------------------------------------------------------------------ classification

    def classify(self, image: np.ndarray, *, path: str | None = None) -> ImageResult:
        """Classify one 2-D uint8/uint16 image of any size.

        An image without structure (equal clip percentiles) is ``unknown`` with a
        ``warning``, without running the models.

        Raises
        ------
        TypeError, ValueError
            Not a 2-D uint8/uint16 array (see ``edge.preprocess.validate_image``), or
            smaller than a tile and thinner than ``edge.preprocess.MAX_ASPECT``:1.
        """
        t0 = time.perf_counter()
        image = preprocess.validate_image(image)
        work = self._work_image(image)
        tiles = self.tile(work)
        boxes = _map_boxes(tiles.boxes, work.shape, image.shape)
        t1 = time.perf_counter()
        if tiles.blank:
            return self._blank(tiles, boxes, image.shape, path, (t1 - t0) * 1000.0)
        s1 = self.stage1_scores(tiles.batch)
        t2 = time.perf_counter()
        flagged = s1 >= self.threshold
        idx = np.flatnonzero(flagged)
        probs = np.full((len(s1), len(DEFECT_CLASSES)), np.nan, np.float32)
        if len(idx) and self.stage2 is not None:
            probs[idx] = self.stage2_probs(np.ascontiguousarray(tiles.batch[idx]))
        t3 = time.perf_counter()
        labels, scores = label_tiles(s1, flagged, None if self.stage2 is None else probs,
                                     self.unknown_threshold)
        label, score, decisive = image_label(s1, flagged, labels, scores)
        t4 = time.perf_counter()
        ms = 1000.0
        return ImageResult(
            path=path, label=label, score=score, boxes=boxes, stage1_scores=s1,
            flagged=flagged, stage2_probs=probs, tile_labels=labels, tile_scores=scores,
            timings_ms={"tile": (t1 - t0) * ms, "stage1": (t2 - t1) * ms,
                        "stage2": (t3 - t2) * ms, "total": (t4 - t0) * ms},
            backend=self.backend, image_shape=image.shape, grid=tiles.grid,
            decisive_tile=decisive,
        )

    def _work_image(self, image: np.ndarray) -> np.ndarray:
        """The image the tiles are cut from: small ones upscaled (thin ones refused),
        large ones downscaled when the bundle says ``large_image: "resize"``."""
        if min(image.shape) < self.size:
            return preprocess.prepare_small(image, self.size, max_aspect=preprocess.MAX_ASPECT)
        if min(image.shape) > self.size and self.bundle.large_image == "resize":
            return preprocess.downscale_large(image, self.size)
        return image

    def _blank(self, tiles: preprocess.Tiles, boxes: np.ndarray, shape: tuple[int, ...],
               path: str | None, tile_ms: float) -> ImageResult:
        """The answer for an image without structure: ``unknown`` with a warning."""
        level = cast("tuple[int, int]", tiles.levels)[0]  # set: the image is blank
        warning = (f"no structure: percentiles {self.bundle.low:g} and {self.bundle.high:g} "
                   f"are both {level} (a constant or blank image); not classified")
        return blank_result(path, warning, boxes, image_shape=(shape[0], shape[1]),
                            grid=tiles.grid,
                            timings_ms={"tile": tile_ms, "stage1": 0.0, "stage2": 0.0,
                                        "total": tile_ms},
                            backend=self.backend)

    def classify_file(self, path: PathLike) -> ImageResult:
        """Read and classify one file; an unreadable file gives an error result."""
        return self._finish(path, _read(path))

    def classify_files(self, paths: Iterable[PathLike]) -> Iterator[ImageResult]:
        """Yield one result per path, in order, reading the next file in a background
        thread while the current one is classified. Bad files give error results."""
        for result, _ in self.iter_files(paths):
            yield result

    def iter_files(self, paths: Iterable[PathLike]
                   ) -> Iterator[tuple[ImageResult, np.ndarray | None]]:
        """Like :meth:`classify_files` but yield ``(result, image)`` (image None on error)."""
        it = iter(paths)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="semedge-read") as pool:

            def submit() -> tuple[PathLike, Future[_Read]] | None:
                nxt = next(it, None)
                return None if nxt is None else (nxt, pool.submit(_read, nxt))

            pending = submit()
            while pending is not None:
                path, current = pending
                pending = submit()
                read = current.result()
                yield self._finish(path, read), read[0]

    def _finish(self, path: PathLike, read: _Read) -> ImageResult:
        image, error, read_ms, notes = read
        if error is not None:
            return error_result(str(path), error, {"read": read_ms}, self.backend)
        try:
            result = self.classify(cast(np.ndarray, image), path=str(path))  # read: not None
        except READ_ERRORS as err:
            return error_result(str(path), f"{path}: {err}", {"read": read_ms}, self.backend)
        timings = {"read": read_ms, **result.timings_ms}
        timings["total"] = result.timings_ms["total"] + read_ms
        warning = "; ".join(w for w in (result.warning, *notes) if w) or None
        return replace(result, timings_ms=timings, warning=warning)


_Read = tuple[Union[np.ndarray, None], Union[str, None], float, list[str]]
"""``(image, error, read ms, notes)`` of one file: image or error, and the caveats
(multi-page, colour, decoder warnings) that become the result's ``warning``."""


def _read(path: PathLike) -> _Read:
    t0 = time.perf_counter()
    notes: list[str] = []
    try:
        (image, notes), error = preprocess.read_image_notes(path), None
    except READ_ERRORS as err:
        image, error = None, str(err) if str(path) in str(err) else f"{path}: {err}"
    except Exception as err:  # noqa: BLE001 - e.g. cv2.error from a decoder: still one bad file
        image, error = None, f"{path}: cannot decode ({type(err).__name__}: {err})"
    return image, error, (time.perf_counter() - t0) * 1000.0, notes


def _map_boxes(boxes: np.ndarray, work_shape: tuple[int, int],
               image_shape: tuple[int, int]) -> np.ndarray:
    """Boxes on the (possibly upscaled) work image → boxes on the input image."""
    if tuple(work_shape) == tuple(image_shape):
        return boxes.astype(np.int64, copy=False)
    sy, sx = image_shape[0] / work_shape[0], image_shape[1] / work_shape[1]
    x0 = np.floor(boxes[:, 0] * sx)
    y0 = np.floor(boxes[:, 1] * sy)
    x1 = np.ceil(boxes[:, 2] * sx)
    y1 = np.ceil(boxes[:, 3] * sy)
    out = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, image_shape[1])
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, image_shape[0])
    return out


def _cascade_stages(bundle: Bundle) -> tuple[str, ...]:
    """The stages the cascade runs: stage 1, and stage 2 unless the bundle is binary."""
    return ("stage1",) if bundle.binary else ("stage1", "stage2")


def _runs_format(bundle: Bundle, fmt: str) -> bool:
    return all(fmt in bundle.formats(s) for s in _cascade_stages(bundle))


def _pick_format(bundle: Bundle, runtime: Runtime, target: str) -> str:
    for fmt in runtime.formats:
        if _runs_format(bundle, fmt):
            return fmt
    has = " and ".join(f"{s} {list(bundle.formats(s))}" for s in _cascade_stages(bundle))
    raise BundleError(
        bundle.root / "manifest.json",
        f"target {target!r} runs {runtime.backend} formats {list(runtime.formats)}, but the "
        f"bundle has {has}",
    )


def _has_formats(bundle: Bundle, runtime: Runtime) -> bool:
    return any(_runs_format(bundle, f) for f in runtime.formats)


def _fallback_for_bundle(bundle: Bundle, profile: Profile, runtime: Runtime,
                         note: str | None) -> tuple[Runtime, str | None]:
    """The profile's explicit fallback when the bundle lacks every format of ``runtime``
    (e.g. a bundle without TFLite files on a Pi); otherwise ``runtime`` unchanged."""
    fallback = profile.fallback
    if (_has_formats(bundle, runtime) or fallback is None or fallback == runtime
            or not _has_formats(bundle, fallback)
            or fallback.why_not(profile.resolved_threads()) is not None):
        return runtime, note
    return fallback, (f"the bundle has no {'/'.join(runtime.formats)}; using the profile's "
                      f"fallback {fallback.backend} {'/'.join(fallback.formats)}")


def load(bundle: Bundle | PathLike | None = None, *, target: str | Profile = "auto",
         providers: Sequence[str] | None = None) -> Cascade:
    """Load a bundle on a target and return a ready :class:`Cascade`.

    Parameters
    ----------
    bundle : path, Bundle or None
        Bundle folder; ``None`` is the default bundle shipped in the package.
    target : str or Profile
        Profile name (``"x86-cpu"``, ``"rpi5"``…), a path to a TOML profile, or
        ``"auto"`` to detect the board (``Cascade.target_reason`` says what it chose).
    providers : sequence of str, optional
        Execution providers to use instead of the profile's (onnxruntime only); every
        one must be available, none is skipped.

    Raises
    ------
    BundleError
        The bundle breaks the contract (file and reason in the message).
    ValueError
        Unknown target, a profile tile size that differs from the bundle's, or a
        ``SEMEDGE_MAX_PIXELS`` that is not a positive integer.
    edge.backends.BackendUnavailable, edge.backends.ProviderError
        The target's runtime or a requested provider is not installed.
    """
    preprocess.pixel_limit()  # a bad SEMEDGE_MAX_PIXELS is a setup error, not one per file
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if isinstance(target, Profile):
        profile, reason = target, f"profile {target.name!r} given"
    elif target == "auto":
        found = detect()
        profile, reason = found.profile, f"auto: {found.reason}"
    else:
        profile, reason = load_profile(target), "requested"
    if profile.tile is not None and profile.tile != loaded.input_size:
        raise ValueError(f"target {profile.name!r} tiles at {profile.tile} px but the bundle "
                         f"{loaded.name!r} takes {loaded.input_size} px inputs")
    if providers is not None:
        ort_runtimes = [r for r in (profile.runtime, profile.fallback)
                        if r is not None and r.backend == "onnxruntime"]
        if not ort_runtimes:
            raise ValueError(f"providers apply to onnxruntime; target {profile.name!r} "
                             f"uses {profile.runtime.backend}")
        runtime = replace(ort_runtimes[0], providers=tuple(providers), optional_providers=())
        note = None
    else:
        runtime, note = profile.choose_runtime()
        runtime, note = _fallback_for_bundle(loaded, profile, runtime, note)
    fmt = _pick_format(loaded, runtime, profile.name)
    backend = create_backend(runtime.backend, **runtime.options(profile.resolved_threads()))
    stage1 = backend.open(loaded.file("stage1", fmt), size=loaded.input_size, outputs=1)
    stage2 = (None if loaded.binary else
              backend.open(loaded.file("stage2", fmt), size=loaded.input_size,
                           outputs=loaded.stage2_outputs))
    reason = f"target {profile.name} ({reason}); {runtime.backend} {fmt}"
    if note:
        reason += f"; {note}"
    return Cascade(loaded, profile, stage1, stage2, target_reason=reason)
