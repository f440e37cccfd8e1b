"""Backend registry: backends are looked up by name and imported only when used.

A backend is registered as data (:class:`BackendSpec`): its module, the Python packages
it needs, the formats it runs and the install hint shown when it is missing. New
runtimes (TFLite, …) add an entry; nothing else changes.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from edge.backends.base import Backend, BackendUnavailable, ProviderError, Session

__all__ = [
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "ProviderError",
    "Session",
    "available_backends",
    "backend_spec",
    "create_backend",
    "is_available",
    "register",
]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend.

    Attributes
    ----------
    name : str
        Name used in target profiles (``backend = "onnxruntime"``).
    module : str
        Module holding ``BACKEND`` (a :class:`Backend` subclass), imported lazily.
    requires : tuple of str
        Importable packages, any one of which provides the runtime.
    formats : tuple of str
        Bundle format keys it runs.
    install : str
        What to install when it is missing.
    """

    name: str
    module: str
    requires: tuple[str, ...]
    formats: tuple[str, ...]
    install: str


_REGISTRY: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> None:
    """Add (or replace) a backend entry."""
    _REGISTRY[spec.name] = spec


register(BackendSpec(
    name="onnxruntime",
    module="edge.backends.onnxruntime_backend",
    requires=("onnxruntime",),
    formats=("onnx", "onnx-int8"),
    install="pip install onnxruntime (or onnxruntime-gpu / onnxruntime-openvino)",
))
register(BackendSpec(
    name="tflite",
    module="edge.backends.tflite_backend",
    requires=("ai_edge_litert", "tflite_runtime"),
    formats=("tflite-int8", "tflite-int8-full"),
    install="pip install ai-edge-litert (or tflite-runtime); for Coral also the Edge TPU "
            "runtime libedgetpu",
))


def backend_names() -> tuple[str, ...]:
    """Names of all registered backends."""
    return tuple(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The entry for ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_REGISTRY)}") from None


def why_unavailable(name: str, **options: Any) -> str | None:
    """``None`` if backend ``name`` can run here (with profile ``options``, e.g. its
    providers), else the reason and what to install."""
    spec = backend_spec(name)
    if not any(importlib.util.find_spec(pkg) is not None for pkg in spec.requires):
        return (f"backend {name!r} needs {' or '.join(spec.requires)}, which is not "
                f"installed: {spec.install}")
    try:
        found = importlib.util.find_spec(spec.module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        return f"backend {name!r} is not implemented in this semedge version ({spec.module})"
    if options:
        reason: str | None = importlib.import_module(spec.module).BACKEND.why_not(**options)
        return reason
    return None


def is_available(name: str) -> bool:
    """Whether backend ``name`` is installed and implemented."""
    return why_unavailable(name) is None


def available_backends() -> tuple[str, ...]:
    """Registered backends that can run here."""
    return tuple(name for name in _REGISTRY if is_available(name))


def create_backend(name: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` with profile ``options``.

    Raises
    ------
    ValueError
        Unknown backend name.
    BackendUnavailable
        Its runtime is missing; the message names what to install.
    """
    reason = why_unavailable(name)
    if reason is not None:
        raise BackendUnavailable(reason)
    module = importlib.import_module(backend_spec(name).module)
    backend: Backend = module.BACKEND(**options)
    return backend
