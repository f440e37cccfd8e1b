"""Fixtures for the runtime tests: small bundles built from random ONNX models."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bundle_factory import make_bundle

import edge
from edge.profiles import load_profile


@pytest.fixture(scope="session")
def cpu_profile():
    """The x86-cpu profile with 2 threads and small batches (this CI box has 2 cores)."""
    return replace(load_profile("x86-cpu"), threads=2, batch=8)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A valid fp32 bundle: bright tiles are flagged, stage 2 says ``short`` (p≈0.80)."""
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def cascade(bundle_dir, cpu_profile):
    return edge.load(bundle_dir, target=cpu_profile)


@pytest.fixture()
def fresh_bundle(tmp_path) -> Path:
    """A bundle of one's own, to tamper with."""
    return make_bundle(tmp_path / "b")


@pytest.fixture()
def without_tflite(monkeypatch):
    """Make the TFLite runtimes look uninstalled (they may be installed in this env), to
    exercise the 'not installed' paths."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    hidden = {"ai_edge_litert", "tflite_runtime"}

    def find_spec(name, *args, **kwargs):
        if name.split(".")[0] in hidden:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
