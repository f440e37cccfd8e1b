"""TFLite backend: int8 models through LiteRT (``ai_edge_litert``) or ``tflite_runtime``.

* ``tflite-int8``: int8 weights and activations, float32 input/output. Runs on the CPU
  with XNNPACK (the interpreter's default delegate) and the profile's thread count.
* ``tflite-int8-full``: int8 input/output (Edge TPU ready). The session quantizes the
  float tile batch with the model's own input scale/zero-point and dequantizes the
  logits (:func:`quantize_input`, :func:`dequantize_output`, pure functions).

Models are NHWC (``[N, S, S, 1]``, what onnx2tf writes); with one channel the bundle's
NCHW ``[N, 1, S, S]`` batch is the same memory, so no transpose is needed.

Delegates ("providers" in the profile): ``cpu`` (XNNPACK) and ``edgetpu``. Without a
``providers`` list, ``tflite-int8`` runs on ``cpu`` and ``tflite-int8-full`` requires
``edgetpu``. The Edge TPU needs the delegate library (``libedgetpu.so.1``) and the
compiled model ``<file stem>_edgetpu.tflite`` next to the bundle file, listed with its
sha256 in ``manifest.json`` under ``edgetpu.<stage>``. A missing delegate or compiled
file is a :class:`ProviderError` that names what is missing and the fallback
(``--target rpi4``), unless the profile allows the CPU explicitly
(``providers = ["edgetpu", "cpu"]``, ``optional_providers = ["edgetpu"]``).

``tflite_runtime`` wheels are built against numpy 1.x and crash under numpy 2; that
combination is refused before ``tflite_runtime`` is imported.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge.backends.base import (
    Backend,
    BackendUnavailable,
    ProviderError,
    Session,
    check_io_shape,
)
from edge.bundle import BundleError, StageFile, sha256_file

__all__ = [
    "BACKEND",
    "DELEGATES",
    "TFLiteBackend",
    "TFLiteSession",
    "dequantize_output",
    "edgetpu_library",
    "quantize_input",
    "resolve_runtime",
]

DELEGATES = ("cpu", "edgetpu")
"""Provider names a profile may list for the ``tflite`` backend."""

FALLBACK_HINT = ("run on the CPU instead with --target rpi4 (or rpi5), which uses the "
                 "bundle's tflite-int8 model")

_EDGETPU_LIBS = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib",
                 "Windows": "edgetpu.dll"}


def edgetpu_library() -> str:
    """File name of the Edge TPU delegate library on this OS (``libedgetpu.so.1``)."""
    return _EDGETPU_LIBS.get(platform.system(), "libedgetpu.so.1")


# --------------------------------------------------------------------------- runtime


def resolve_runtime(*, numpy_version: str | None = None,
                    find_spec: Any = None) -> tuple[str, str]:
    """Which TFLite interpreter package to use: ``(module, pip name)``.

    ``ai_edge_litert`` (LiteRT) wins; ``tflite_runtime`` is used only with numpy < 2.
    ``numpy_version`` and ``find_spec`` override the real ones (tests).

    Raises
    ------
    BackendUnavailable
        Neither is installed, or only ``tflite_runtime`` is and numpy is 2.x.
    """
    find_spec = find_spec or importlib.util.find_spec
    if find_spec("ai_edge_litert") is not None:
        return "ai_edge_litert.interpreter", "ai-edge-litert"
    if find_spec("tflite_runtime") is not None:
        version = numpy_version or np.__version__
        if int(version.split(".")[0]) >= 2:
            raise BackendUnavailable(
                f"tflite_runtime is installed but numpy is {version}: tflite_runtime wheels "
                "are built against numpy 1.x and crash under numpy 2. Install LiteRT "
                "instead (pip install 'semedge[tflite]', i.e. ai-edge-litert), or pin "
                "numpy<2 in this environment")
        return "tflite_runtime.interpreter", "tflite-runtime"
    raise BackendUnavailable("the tflite backend needs ai-edge-litert (or tflite-runtime "
                             "with numpy<2): pip install 'semedge[tflite]'")


def _import_runtime() -> tuple[ModuleType, str]:
    module, pip_name = resolve_runtime()
    return importlib.import_module(module), pip_name


def _runtime_version(pip_name: str) -> str:
    try:
        from importlib.metadata import version

        return version(pip_name)
    except Exception:  # noqa: BLE001 - metadata is informational only
        return "?"


def _check_delegates(providers: Sequence[str], optional: Sequence[str]) -> None:
    bad = [p for p in (*providers, *optional) if p not in DELEGATES]
    if bad:
        raise ValueError(f"tflite backend providers must be among {list(DELEGATES)}, "
                         f"got {bad}")
    if set(optional) - set(providers):
        raise ValueError("optional_providers must also be listed in providers")


def _edgetpu_error(lib: str, err: BaseException) -> ProviderError:
    return ProviderError(
        f"the Edge TPU delegate {lib} could not be loaded ({err}). Install the Edge TPU "
        "runtime (libedgetpu1-std, https://coral.ai/software/#edgetpu-runtime) and plug in "
        f"the accelerator, or {FALLBACK_HINT}")


def _check_edgetpu_library() -> str:
    """The delegate library's name if it can be loaded; ``ProviderError`` otherwise.

    Checked with ``ctypes`` first: a failed ``load_delegate`` leaves a half-built
    ``Delegate`` whose ``__del__`` prints a traceback.
    """
    lib = edgetpu_library()
    try:
        ctypes.CDLL(lib)
    except OSError as err:
        raise _edgetpu_error(lib, err) from None
    return lib


def _load_edgetpu(interp_module: ModuleType) -> Any:
    """The Edge TPU delegate; ``ProviderError`` naming the library if it cannot load."""
    lib = _check_edgetpu_library()
    try:
        return interp_module.load_delegate(lib)
    except (ValueError, OSError, RuntimeError) as err:  # e.g. no accelerator plugged in
        raise _edgetpu_error(lib, err) from None


# --------------------------------------------------------------------------- quantization


def quantize_input(x: np.ndarray, scale: float, zero_point: int,
                   dtype: np.dtype | type = np.int8) -> np.ndarray:
    """Float values to the model's integer input: ``round(x / scale) + zero_point``,
    saturated to ``dtype``'s range.

    Parameters
    ----------
    x : ndarray
        Float tiles (any shape).
    scale : float
        Input quantization scale (> 0).
    zero_point : int
    dtype : int8 or uint8
    """
    if not scale > 0:
        raise ValueError(f"quantization scale must be > 0, got {scale!r}")
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)) + np.float32(zero_point)
    out: np.ndarray = np.clip(q, info.min, info.max).astype(dtype)
    return out


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer model output to float32: ``scale * (q - zero_point)``.

    The subtraction is done in int64 so that ``q - zero_point`` cannot overflow.
    """
    return (np.float64(scale) * (np.asarray(q).astype(np.int64) - int(zero_point))
            ).astype(np.float32)


def _quant(detail: dict[str, Any]) -> tuple[float, int]:
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)


# --------------------------------------------------------------------------- session


class TFLiteSession(Session):
    """One TFLite model. ``run`` is serialized by a lock (an interpreter is not
    thread-safe), so the session may be shared between threads."""

    backend = "tflite"

    def __init__(self, file: StageFile, interpreter: Any, provider: str, *, size: int,
                 outputs: int, model_path: Path) -> None:
        self.format = file.format
        self.path = file.path
        self.model_path = model_path
        self.provider = provider
        self._interp = interpreter
        self._lock = threading.Lock()
        inputs, outs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outs) != 1:
            raise BundleError(file.path, f"model must have one input and one output, has "
                                         f"{len(inputs)} and {len(outs)}")
        self._in, self._out = inputs[0], outs[0]
        sig = [int(d) for d in self._in.get("shape_signature", self._in["shape"])]
        if len(sig) == 4 and sig[3] == 1 and sig[1] == sig[2]:
            nchw = [sig[0], sig[3], sig[1], sig[2]]  # NHWC, what onnx2tf writes
        else:
            nchw = sig
        out_sig = [int(d) for d in self._out.get("shape_signature", self._out["shape"])]
        check_io_shape(file, nchw, out_sig, size=size, outputs=outputs)
        self._tile_shape = tuple(sig[1:])
        self._dynamic = sig[0] <= 0
        self._fixed_batch = 1 if self._dynamic else sig[0]
        self._current = int(self._in["shape"][0])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.input_quant = _quant(self._in)
        self.output_quant = _quant(self._out)
        if self.input_dtype != np.float32 and not self.input_quant[0] > 0:
            raise BundleError(file.path, f"integer input ({self.input_dtype}) without a "
                                         "quantization scale")
        if self.output_dtype != np.float32 and not self.output_quant[0] > 0:
            raise BundleError(file.path, f"integer output ({self.output_dtype}) without a "
                                         "quantization scale")
        if file.format == "tflite-int8-full" and self.input_dtype == np.float32:
            raise BundleError(file.path, "listed as tflite-int8-full but its input is float32")
        if file.format == "tflite-int8" and self.input_dtype != np.float32:
            raise BundleError(file.path, f"listed as tflite-int8 (float I/O) but its input "
                                         f"is {self.input_dtype}")

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if self._dynamic and n != self._current:
            self._interp.resize_tensor_input(self._in["index"], [n, *self._tile_shape])
            self._interp.allocate_tensors()
            self._current = n
        self._interp.set_tensor(self._in["index"], chunk)
        self._interp.invoke()
        out: np.ndarray = self._interp.get_tensor(self._out["index"]).copy()
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``[N, K]`` (float32) for ``batch`` ``[N, 1, S, S]`` (float32)."""
        batch = np.asarray(batch, dtype=np.float32)
        n = len(batch)
        x = np.ascontiguousarray(batch).reshape(n, *self._tile_shape)
        if self.input_dtype != np.float32:
            x = quantize_input(x, *self.input_quant, dtype=self.input_dtype)
        step = n if self._dynamic else self._fixed_batch
        outs = []
        with self._lock:
            for i in range(0, n, max(step, 1)):
                chunk = x[i:i + step]
                if len(chunk) < step:  # a fixed-batch model: pad the last chunk
                    pad = np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)
                    out = self._invoke(np.concatenate([chunk, pad]))[:len(chunk)]
                else:
                    out = self._invoke(np.ascontiguousarray(chunk))
                outs.append(out)
        y = np.concatenate(outs) if outs else np.zeros((0, int(self._out["shape"][-1])),
                                                        self.output_dtype)
        if self.output_dtype != np.float32:
            return dequantize_output(y, *self.output_quant)
        return y.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- backend


class TFLiteBackend(Backend):
    """LiteRT / tflite_runtime with the profile's threads and delegates.

    Parameters
    ----------
    threads : int
        XNNPACK threads (0: the interpreter's default).
    providers : sequence of str, optional
        Delegates in priority order, among ``cpu`` and ``edgetpu``. Default: ``cpu``
        for ``tflite-int8`` files and ``edgetpu`` (required) for ``tflite-int8-full``.
    optional_providers : sequence of str
        Those of ``providers`` that may be skipped when missing (the profile's explicit
        permission to fall back to the CPU).
    """

    name = "tflite"
    formats = ("tflite-int8", "tflite-int8-full")

    def __init__(self, threads: int = 0, providers: Sequence[str] | None = None,
                 optional_providers: Sequence[str] = ()) -> None:
        if providers is not None:
            _check_delegates(providers, optional_providers)
        self.threads = int(threads)
        self.providers = None if providers is None else tuple(providers)
        self.optional = tuple(optional_providers)
        self._module, self._pip = _import_runtime()
        self._edgetpu: Any = None

    @classmethod
    def why_not(cls, providers: Sequence[str] | None = None,
                optional_providers: Sequence[str] = (), **_: object) -> str | None:
        """``None`` if this backend can run here, else why: no runtime, tflite_runtime
        under numpy 2, or a required Edge TPU delegate library that is missing (the
        accelerator itself is opened only by :meth:`open`)."""
        try:
            if providers is not None:
                _check_delegates(providers, optional_providers)
            _import_runtime()
            if providers and "edgetpu" in providers and "edgetpu" not in optional_providers:
                _check_edgetpu_library()
        except (BackendUnavailable, ProviderError, ValueError) as err:
            return str(err)
        return None

    def _plan(self, fmt: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self.providers is not None:
            return self.providers, self.optional
        return (("edgetpu",), ()) if fmt == "tflite-int8-full" else (("cpu",), ())

    def _edgetpu_model(self, file: StageFile) -> Path:
        """The compiled ``<stem>_edgetpu.tflite`` beside ``file``, hash-checked against
        ``manifest.json``'s ``edgetpu.<stage>`` entry; ``ProviderError`` if absent."""
        compiled = file.path.with_name(f"{file.path.stem}_edgetpu.tflite")
        if not compiled.is_file():
            raise ProviderError(
                f"{compiled}: missing. The Edge TPU runs only models compiled for it; "
                f"compile {file.path.name} with `edgetpu_compiler -s {file.path.name}` "
                "(https://coral.ai/docs/edgetpu/compiler/) and register it with "
                "`python -m training.export.tflite register-edgetpu BUNDLE`, or "
                + FALLBACK_HINT)
        manifest = file.path.parent / "manifest.json"
        try:
            entry = json.loads(manifest.read_text(encoding="utf-8"))["edgetpu"][file.stage]
            expected = str(entry["sha256"]).lower()
        except (OSError, ValueError, KeyError, TypeError):
            raise BundleError(compiled, f"not listed with its sha256 in {manifest.name} "
                                        f"(edgetpu.{file.stage}); register it with `python "
                                        "-m training.export.tflite register-edgetpu "
                                        "BUNDLE`") from None
        if sha256_file(compiled) != expected:
            raise BundleError(compiled, "sha256 mismatch with manifest.json "
                                        f"edgetpu.{file.stage}: the file was modified or "
                                        "belongs to another bundle")
        return compiled

    def open(self, file: StageFile, *, size: int, outputs: int) -> TFLiteSession:
        """Open ``file`` on the first delegate that can run it; check its I/O."""
        if file.format not in self.formats:
            raise ValueError(f"tflite backend runs {self.formats}, not {file.format!r}")
        providers, optional = self._plan(file.format)
        problems = []
        for provider in providers:
            try:
                if provider == "edgetpu":
                    model = self._edgetpu_model(file)
                    if self._edgetpu is None:
                        self._edgetpu = _load_edgetpu(self._module)
                    interp = self._interpreter(file, model, [self._edgetpu])
                    return TFLiteSession(file, interp, "EdgeTPU", size=size,
                                         outputs=outputs, model_path=model)
                interp = self._interpreter(file, file.path, None)
                return TFLiteSession(file, interp, "XNNPACK", size=size, outputs=outputs,
                                     model_path=file.path)
            except ProviderError as err:
                if provider not in optional:
                    raise ProviderError(f"{file.stage} ({file.format}): {err}") from None
                problems.append(str(err))
        raise ProviderError(f"{file.path}: no delegate of {list(providers)} can run it: "
                            + "; ".join(problems))

    def _interpreter(self, file: StageFile, model: Path, delegates: list[Any] | None) -> Any:
        kwargs: dict[str, Any] = {"model_path": str(model)}
        if self.threads > 0:
            kwargs["num_threads"] = self.threads
        if delegates:
            kwargs["experimental_delegates"] = delegates
        try:
            interp = self._module.Interpreter(**kwargs)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise BundleError(model, f"{self._pip} cannot load the model: {err}") from None
        return interp

    def describe(self) -> str:
        """``ai-edge-litert <version> [delegates, threads]``."""
        delegates = ", ".join(self.providers) if self.providers else "auto"
        return (f"{self._pip} {_runtime_version(self._pip)} [{delegates}, "
                f"{self.threads or 'default'} threads]")


BACKEND = TFLiteBackend
