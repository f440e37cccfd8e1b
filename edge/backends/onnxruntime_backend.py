"""ONNX Runtime backend: fp32 and static-QDQ int8 ONNX models.

Sessions are configured for small boards: ``intra_op_num_threads`` from the target
profile, one inter-op thread, spinning off (so two sessions in one process do not burn
each other's cores while idle), sequential execution, all graph optimizations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from edge.backends.base import Backend, ProviderError, Session, check_io_shape
from edge.bundle import BundleError, StageFile

__all__ = ["BACKEND", "OnnxRuntimeBackend", "OnnxRuntimeSession", "resolve_providers"]


def resolve_providers(requested: Sequence[str], optional: Sequence[str] = (),
                      available: Sequence[str] | None = None) -> list[str]:
    """Keep ``requested`` providers in order; drop missing ones only if listed ``optional``.

    Raises
    ------
    ProviderError
        A provider that is requested, not optional and not available, or none left.
    """
    available = list(ort.get_available_providers() if available is None else available)
    chosen = []
    for provider in requested:
        if provider in available:
            chosen.append(provider)
        elif provider not in optional:
            raise ProviderError(
                f"execution provider {provider!r} was requested but this onnxruntime "
                f"({ort.__version__}) has only {', '.join(available)}; install the "
                "onnxruntime build that provides it, or choose another target"
            )
    if not chosen:
        raise ProviderError(f"none of the providers {list(requested)} is available here "
                            f"(available: {', '.join(available)})")
    return chosen


class OnnxRuntimeSession(Session):
    """An ``onnxruntime.InferenceSession`` for one stage file (thread-safe ``run``)."""

    backend = "onnxruntime"

    def __init__(self, file: StageFile, options: ort.SessionOptions, providers: list[str],
                 *, size: int, outputs: int) -> None:
        try:
            self._session = ort.InferenceSession(str(file.path), sess_options=options,
                                                 providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(file.path, f"onnxruntime cannot load the model: {err}") from None
        inputs, outs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outs) != 1:
            raise BundleError(file.path, f"model must have one input and one output, has "
                                         f"{len(inputs)} and {len(outs)}")
        check_io_shape(file, inputs[0].shape, outs[0].shape, size=size, outputs=outputs)
        self._input = inputs[0].name
        self._output = outs[0].name
        self.provider = self._session.get_providers()[0]
        self.format = file.format
        self.path = file.path

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``[N, K]`` (float32) for ``batch`` ``[N, 1, S, S]``."""
        logits: np.ndarray = self._session.run([self._output], {self._input: batch})[0]
        return logits


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the profile's providers and thread count.

    Parameters
    ----------
    providers : sequence of str
        Execution providers in priority order.
    optional_providers : sequence of str
        Those of ``providers`` that may be skipped when not installed; any other
        missing provider is an error.
    threads : int
        ``intra_op_num_threads`` (0: onnxruntime's default, one per physical core).
    """

    name = "onnxruntime"
    formats = ("onnx", "onnx-int8")

    def __init__(self, providers: Sequence[str] = ("CPUExecutionProvider",),
                 optional_providers: Sequence[str] = (), threads: int = 0) -> None:
        self.providers = resolve_providers(providers, optional_providers)
        self.threads = int(threads)

    @classmethod
    def why_not(cls, providers: Sequence[str] = ("CPUExecutionProvider",),
                optional_providers: Sequence[str] = (), **_: object) -> str | None:
        """``None`` if the providers resolve here, else the ``ProviderError`` message."""
        try:
            resolve_providers(providers, optional_providers)
        except ProviderError as err:
            return str(err)
        return None

    def session_options(self) -> ort.SessionOptions:
        """The ``SessionOptions`` every session of this backend uses."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        return options

    def open(self, file: StageFile, *, size: int, outputs: int) -> OnnxRuntimeSession:
        """Open ``file`` (``onnx`` or ``onnx-int8``) and check its I/O against the contract."""
        if file.format not in self.formats:
            raise ValueError(f"onnxruntime backend runs {self.formats}, not {file.format!r}")
        return OnnxRuntimeSession(file, self.session_options(), self.providers,
                                  size=size, outputs=outputs)

    def describe(self) -> str:
        """``onnxruntime <version> [providers]``."""
        return f"onnxruntime {ort.__version__} [{', '.join(self.providers)}]"


BACKEND = OnnxRuntimeBackend
