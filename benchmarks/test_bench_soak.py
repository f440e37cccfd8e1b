"""Soak: 5,000 classifications of a shipped sample field in one process, default bundle.

The same file is streamed through ``Cascade.classify_files`` (reader thread, decoder,
tiling, both stages) 5,000 times (200 with ``--quick``, as CI runs it). After a warm-up
(the first 4 %, at least 50 fields) the resident set may grow by under 5 % to the end,
the open file descriptors may not grow at all, and the last answer must equal the first
bit for bit (label, score, every stage-1 score and stage-2 probability). The numbers land
in the benchmark JSON (``extra_info``) and are printed with ``-s``.

Run: ``pytest benchmarks/test_bench_soak.py -s`` (~3–5 min on 2 threads).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edge
from edge.bundle import BundleError
from edge.cli import samples_dir
from edge.profiles import detect
from edge.results import ImageResult

FIELDS, FIELDS_QUICK = 5_000, 200
MAX_GROWTH = 0.05
THREADS = 2


def rss_bytes() -> int:
    """Resident set size now (psutil when installed, else ``/proc/self/statm``)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def open_fds() -> int:
    """Open file descriptors of this process (-1 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def same_answer(a: ImageResult, b: ImageResult) -> bool:
    return (a.label == b.label and a.score == b.score and a.warning == b.warning
            and np.array_equal(a.stage1_scores, b.stage1_scores, equal_nan=True)
            and np.array_equal(a.stage2_probs, b.stage2_probs, equal_nan=True)
            and a.tile_labels == b.tile_labels)


def soak(cascade: edge.Cascade, path: Path, fields: int, warmup: int) -> dict:
    """Classify ``path`` ``fields`` times in one stream; memory, descriptors, answers."""
    first = last = None
    at_warmup: dict = {}
    t0 = time.perf_counter()
    for k, result in enumerate(cascade.classify_files(itertools.repeat(path, fields)), 1):
        assert result.ok, result.error
        first = first or result
        last = result
        if k == warmup:
            gc.collect()
            at_warmup = {"rss": rss_bytes(), "fds": open_fds(), "t": time.perf_counter()}
    seconds = time.perf_counter() - at_warmup["t"]
    gc.collect()
    rss_end, fds_end = rss_bytes(), open_fds()
    return {
        "fields": fields, "warmup_fields": warmup, "image": path.name,
        "tiles_per_field": len(first.tile_labels), "backend": cascade.backend,
        "rss_after_warmup_mb": round(at_warmup["rss"] / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth": round(rss_end / at_warmup["rss"] - 1.0, 4),
        "fds_after_warmup": at_warmup["fds"], "fds_end": fds_end,
        "ms_per_field_after_warmup": round(1000 * seconds / max(1, fields - warmup), 2),
        "total_s": round(time.perf_counter() - t0, 1),
        "same_answer_first_last": same_answer(first, last),
        "label": last.label, "score": round(last.score, 6),
    }


@pytest.fixture(scope="module")
def cascade() -> edge.Cascade:
    try:
        return edge.load(None, target=replace(detect().profile, threads=THREADS))
    except BundleError as err:
        pytest.skip(f"no default bundle: {err}")


def test_soak_memory_and_answers_stay_put(benchmark, cascade, quick):
    fields = FIELDS_QUICK if quick else FIELDS
    warmup = max(50, fields // 25)
    path = samples_dir() / "field_0.png"
    report = benchmark.pedantic(soak, args=(cascade, path, fields, warmup),
                                rounds=1, iterations=1)
    benchmark.group = "soak"
    benchmark.extra_info.update(report)
    print("\n" + json.dumps(report, indent=2))
    assert report["same_answer_first_last"], report
    assert report["rss_growth"] < MAX_GROWTH, report
    assert report["fds_end"] <= report["fds_after_warmup"], report
