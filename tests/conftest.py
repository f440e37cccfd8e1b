"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module, loaded once (registered in ``sys.modules``
    so that its dataclasses and pickled functions can find it)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def load_benchmark() -> Callable[[str], ModuleType]:
    """A function: benchmark script name (``"real_adapt"``) → its module."""
    return _load
