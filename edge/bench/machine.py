"""Describe the machine a benchmark ran on: CPU, cores, memory, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe_machine", "library_versions"]

CPUINFO = Path("/proc/cpuinfo")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
MEMINFO = Path("/proc/meminfo")

LIBRARIES = ("semedge", "numpy", "onnxruntime", "opencv-python-headless", "opencv-python",
             "ai-edge-litert", "tflite-runtime")
"""Distributions whose versions the description lists (missing ones are left out)."""


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name: ``model name`` of ``/proc/cpuinfo`` (x86), else its ``Hardware`` /
    ``Model`` line or the device-tree board name (ARM), else ``platform.processor()``."""
    text = _read(CPUINFO) if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "cpu model", "hardware", "model", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    board = _read(DEVICE_TREE_MODEL)
    return board or platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int | None:
    for line in _read(MEMINFO).splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers (none imported)."""
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe_machine() -> dict[str, Any]:
    """A JSON-ready description of this machine and software stack.

    Keys: ``cpu``, ``board`` (device-tree model or None), ``machine`` (architecture),
    ``system``, ``cpu_count`` (logical CPUs), ``usable_cpus`` (this process's affinity),
    ``memory_bytes``, ``python``, ``libraries`` (name → version), ``kernels_openmp``,
    ``onnxruntime_providers``.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        usable = os.cpu_count() or 1
    try:
        from edge import preprocess

        openmp: bool | None = bool(preprocess.OPENMP)
    except ImportError:
        openmp = None
    try:
        import onnxruntime as ort

        providers: list[str] = list(ort.get_available_providers())
    except ImportError:
        providers = []
    return {
        "cpu": cpu_model(),
        "board": _read(DEVICE_TREE_MODEL) or None,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": _memory_bytes(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
        "kernels_openmp": openmp,
        "onnxruntime_providers": providers,
    }
