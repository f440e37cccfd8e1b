"""The public API carries real type hints (the package ships ``py.typed``): every
parameter and return annotated, none of them ``Any``. ``mypy`` (``pyproject.toml``
``[tool.mypy]``, run by CI) checks that the hints hold."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import edge
from edge import bundle, cascade, preprocess, results

PUBLIC: dict[str, Callable[..., Any]] = {
    "edge.load": edge.load,
    "edge.cascade.load": cascade.load,
    "Cascade.classify": cascade.Cascade.classify,
    "Cascade.classify_file": cascade.Cascade.classify_file,
    "Cascade.classify_files": cascade.Cascade.classify_files,
    "edge.preprocess.read_image": preprocess.read_image,
    "edge.preprocess.normalize": preprocess.normalize,
    "edge.preprocess.tile": preprocess.tile,
    "edge.bundle.load_bundle": bundle.load_bundle,
}


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_function_is_fully_annotated_without_any(name: str) -> None:
    sig = inspect.signature(PUBLIC[name])
    hints = {p.name: p.annotation for p in sig.parameters.values() if p.name != "self"}
    hints["return"] = sig.return_annotation
    missing = [k for k, v in hints.items() if v is inspect.Parameter.empty]
    vague = [k for k, v in hints.items() if "Any" in str(v)]
    assert not missing and not vague, f"{name}: unannotated {missing}, Any in {vague}"


def test_edge_load_returns_a_cascade() -> None:
    assert inspect.signature(edge.load).return_annotation == "Cascade"


def test_image_result_arrays_say_their_dtype() -> None:
    for f in dataclasses.fields(results.ImageResult):
        assert "Any" not in str(f.type) and str(f.type) != "np.ndarray", f.name


def test_the_kernels_have_type_stubs() -> None:
    root = Path(edge.__file__).parent
    for kernel in ("_histogram", "_normalize", "_tiling"):
        assert (root / f"{kernel}.pyi").is_file(), kernel
