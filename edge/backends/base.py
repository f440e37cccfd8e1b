"""The backend interface: a runtime that opens a bundle's model file as a session."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.bundle import BundleError, StageFile

__all__ = ["Backend", "BackendUnavailable", "ProviderError", "Session", "check_io_shape"]

FORMAT_LABELS = {"onnx": "fp32", "onnx-int8": "int8", "tflite-int8": "int8",
                 "tflite-int8-full": "int8-full"}
"""Format key → the short precision label used in ``backend`` strings."""


class BackendUnavailable(ImportError):
    """A backend whose runtime is not installed; the message says what to install."""


class ProviderError(RuntimeError):
    """An explicitly requested execution provider (or delegate) that is not available."""


class Session(ABC):
    """One opened model: runs a float32 ``[N, 1, S, S]`` batch to ``[N, K]`` logits.

    ``run`` must be safe to call from several threads at once.
    """

    backend: str
    provider: str
    format: str

    @property
    def describe(self) -> str:
        """``runtime:provider:precision``, e.g. ``onnxruntime:CPUExecutionProvider:int8``."""
        return f"{self.backend}:{self.provider}:{FORMAT_LABELS.get(self.format, self.format)}"

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Return float32 logits ``[N, K]`` for a C-contiguous float32 ``[N, 1, S, S]`` batch."""


class Backend(ABC):
    """A runtime (ONNX Runtime, TFLite…) configured for one target profile."""

    name: str
    formats: tuple[str, ...]

    @abstractmethod
    def open(self, file: StageFile, *, size: int, outputs: int) -> Session:
        """Open ``file`` as a session; ``BundleError`` if its I/O is not ``[N,1,size,size]``
        → ``[N,outputs]``."""

    def describe(self) -> str:
        """A one-line description (runtime, version, providers)."""
        return self.name

    @classmethod
    def why_not(cls, **options: Any) -> str | None:
        """``None`` if a backend with these profile ``options`` can run here, else why.

        ``options`` are the profile's backend options; subclasses take the ones they
        read as typed keyword parameters (hence ``Any`` here, not ``object``)."""
        return None


def check_io_shape(file: StageFile, input_shape: Sequence[object],
                   output_shape: Sequence[object],
                   *, size: int, outputs: int) -> None:
    """Raise ``BundleError`` naming ``file`` if its I/O shapes break the bundle contract.

    Symbolic (named or ``None``) dimensions are accepted where the contract has ``N``.
    """
    def fixed(dims: Sequence[object]) -> list[object]:
        return [d if isinstance(d, (int, np.integer)) and d > 0 else "N" for d in dims]

    want_in, got_in = ["N", 1, size, size], fixed(input_shape)
    if len(got_in) != 4 or got_in[1:] != want_in[1:]:
        raise BundleError(file.path, f"model input shape {got_in} does not match the "
                                     f"manifest (input.size {size}): expected {want_in}")
    got_out = fixed(output_shape)
    if len(got_out) != 2 or got_out[1] != outputs:
        raise BundleError(file.path, f"model output shape {got_out} does not match the "
                                     f"{file.stage} contract [N, {outputs}]")
