"""Shared options of the developer benchmark suites.

``--quick`` (or ``SEMEDGE_BENCH_QUICK=1``) runs every benchmark a few times only: CI uses it
to check that the suites run, not to measure.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="run each benchmark briefly (CI)")


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick") or os.environ.get("SEMEDGE_BENCH_QUICK"))


@pytest.fixture(scope="session")
def min_time_s(quick: bool) -> float:
    """Minimum measured time per competitor in the same-run ratio comparisons."""
    return 0.02 if quick else 0.5
