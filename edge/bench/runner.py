"""``semedge bench`` as a function: run every section, return the data (no printing).

:func:`run_bench` takes a :class:`BenchConfig` and returns a :class:`BenchResult`;
``BenchResult.as_dict()`` is the JSON document (schema in ``docs/bench.md`` and
:mod:`edge.bench.report`). Progress goes to an optional ``on_step(message)`` callback.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Union

import numpy as np

from edge import __version__
from edge.bench.cascade_cost import (
    DEFECT_RATES,
    FIELD_SIDE,
    CostRow,
    field_costs,
    flag_rate,
    open_monolithic,
)
from edge.bench.evalset import EVAL_PER_CLASS, EVAL_SEED, EvalSet, EvalSetUnavailable, make_evalset
from edge.bench.formats import FormatResult, all_formats, measure_formats
from edge.bench.machine import describe_machine
from edge.bench.preprocess import PreprocessComparison, compare, sem_like_image
from edge.bundle import Bundle, BundleError, load_bundle
from edge.cascade import load
from edge.classes import CLASSES
from edge.jsonsafe import json_safe
from edge.metrics import binary_recall_precision_specificity, confusion_matrix, macro_f1
from edge.profiles import Profile, detect, load_profile

__all__ = ["SCHEMA_VERSION", "BenchConfig", "BenchResult", "default_threads", "run_bench"]

SCHEMA_VERSION = "semedge-bench/1"
QUICK_PER_CLASS = 4

PathLike = Union[str, "os.PathLike[str]"]


def default_threads(cpus: int | None = None) -> tuple[int, ...]:
    """Powers of two up to the CPUs this process may use, plus that count: 1, 2, 4, 6."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            cpus = os.cpu_count() or 1
    out, t = [], 1
    while t < cpus:
        out.append(t)
        t *= 2
    out.append(cpus)
    return tuple(out)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes
    ----------
    bundle : path or None
        Bundle folder; None is the default bundle shipped in the package.
    target : str
        Target profile name or path, or ``"auto"``.
    formats : tuple of str or None
        Formats for the formats table (None: every format a backend knows).
    threads : tuple of int or None
        Thread counts of the sweep (None: :func:`default_threads`).
    defect_rates : tuple of float
        Defect rates of the cascade table.
    field : int
        Side of the square field, in pixels.
    quick : bool
        CI mode: tiny evaluation set, short timings (numbers are not meaningful).
    per_class : int or None
        Evaluation images per class (None: 50, or 4 with ``quick``).
    """

    bundle: PathLike | None = None
    target: str = "auto"
    formats: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None
    defect_rates: tuple[float, ...] = DEFECT_RATES
    field: int = FIELD_SIDE
    quick: bool = False
    per_class: int | None = None

    def __post_init__(self) -> None:
        known = all_formats()
        bad = [f for f in (self.formats or ()) if f not in known]
        if bad:
            raise ValueError(f"unknown format {bad[0]!r}; known formats: {', '.join(known)}")
        if self.formats is not None and not self.formats:
            raise ValueError("formats must name at least one format")
        if self.threads is not None and (not self.threads
                                         or any(int(t) != t or t < 1 for t in self.threads)):
            raise ValueError(f"threads must be positive integers, got {list(self.threads)}")
        if not self.defect_rates or any(not 0.0 <= r <= 1.0 for r in self.defect_rates):
            raise ValueError(f"defect rates must be in [0, 1], got {list(self.defect_rates)}")
        if self.field < 1:
            raise ValueError(f"field must be a positive side in pixels, got {self.field}")
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")

    @property
    def timing(self) -> dict[str, Any]:
        """Timing budgets of each section."""
        if self.quick:
            return {"format_s": 0.02, "format_reps": 20, "cost_s": 0.05, "cost_rounds": 2,
                    "preprocess_s": 0.02}
        return {"format_s": 0.5, "format_reps": 2000, "cost_s": 1.5, "cost_rounds": 7,
                "preprocess_s": 0.3}

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON (defaults resolved)."""
        return {"bundle": None if self.bundle is None else str(self.bundle),
                "target": self.target, "formats": list(self.formats or all_formats()),
                "threads": list(self.threads or default_threads()),
                "defect_rates": list(self.defect_rates), "field": self.field,
                "quick": self.quick}


@dataclass
class BenchResult:
    """Everything one ``semedge bench`` run measured."""

    config: BenchConfig
    machine: dict[str, Any]
    bundle: dict[str, Any]
    target: dict[str, Any]
    evaluation: dict[str, Any]
    formats: list[FormatResult] = field(default_factory=list)
    cascade: list[CostRow] = field(default_factory=list)
    cascade_info: dict[str, Any] = field(default_factory=dict)
    monolithic_confusion: np.ndarray | None = None
    preprocess: list[PreprocessComparison] = field(default_factory=list)
    preprocess_reason: str | None = None
    threads: list[tuple[int, CostRow]] = field(default_factory=list)
    threads_info: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (numbers as plain floats, NaN → None)."""
        doc = {
            "schema": SCHEMA_VERSION,
            "semedge_version": __version__,
            "created": self.created,
            "seconds": self.seconds,
            "config": self.config.as_dict(),
            "machine": self.machine,
            "bundle": self.bundle,
            "target": self.target,
            "evaluation": self.evaluation,
            "formats": [r.as_row() for r in self.formats],
            "cascade": [r.as_row() for r in self.cascade],
            "cascade_info": self.cascade_info,
            "preprocess": [p.as_dict() for p in self.preprocess],
            "preprocess_reason": self.preprocess_reason,
            "threads": [{"threads": t, **row.as_row()} for t, row in self.threads],
            "threads_info": self.threads_info,
        }
        safe: dict[str, Any] = json_safe(doc)
        return safe


# --------------------------------------------------------------------------- pieces


def _profile(target: str) -> tuple[Profile, str]:
    if target == "auto":
        found = detect()
        return found.profile, f"auto: {found.reason}"
    return load_profile(target), "requested"


def _bundle_info(bundle: Bundle) -> dict[str, Any]:
    return {"name": bundle.name, "path": str(bundle.root), "input_size": bundle.input_size,
            "stage1_threshold": bundle.stage1_threshold,
            "unknown_threshold": bundle.unknown_threshold,
            "formats": {s: list(bundle.formats(s)) for s in ("stage1", "stage2", "monolithic")}}


def _evalset(bundle: Bundle, config: BenchConfig) -> tuple[EvalSet | None, dict[str, Any]]:
    per_class = config.per_class or (QUICK_PER_CLASS if config.quick else EVAL_PER_CLASS)
    try:
        ev = make_evalset(size=bundle.input_size, low=bundle.low, high=bundle.high,
                          per_class=per_class, seed=EVAL_SEED)
    except EvalSetUnavailable as err:
        return None, {"reason": str(err), "per_class": per_class, "seed": EVAL_SEED}
    return ev, {**ev.source, "tiles": len(ev), "counts": ev.counts(), "reason": None}


def _monolithic_accuracy(logits: np.ndarray, evalset: EvalSet) -> tuple[dict[str, Any], np.ndarray]:
    pred = logits.argmax(axis=1)
    cm = confusion_matrix(evalset.labels, pred, len(CLASSES))
    binary = binary_recall_precision_specificity(evalset.defective, pred != 0)
    return ({"macro_f1": macro_f1(cm), "recall": binary.recall,
             "precision": binary.precision, "specificity": binary.specificity}, cm)


def _cascade_section(bundle: Bundle, profile: Profile, config: BenchConfig,
                     formats: list[FormatResult], evalset: EvalSet | None,
                     result: BenchResult, on_step: Callable[[str], None]) -> None:
    cascade = load(bundle, target=profile)
    fmt = cascade.stage1.format
    info: dict[str, Any] = {"format": fmt, "backend": cascade.backend,
                            "threads": cascade.threads, "batch": cascade.batch,
                            "field": [config.field, config.field], "monolithic_reason": None}
    try:
        mono = open_monolithic(cascade)
    except BundleError as err:
        mono = None
        info["monolithic_reason"] = err.reason
    row = next((r for r in formats if r.format == fmt and r.ran and r.accuracy), None)
    flags: list[float | None] = [None] * len(config.defect_rates)
    accuracy: dict[str, Any] = {"cascade": None, "monolithic": None, "reason": None}
    if row is not None:
        acc = row.accuracy
        flags = [flag_rate(acc["stage1_recall"], acc["stage1_specificity"], r)
                 if not (np.isnan(acc["stage1_recall"]) or np.isnan(acc["stage1_specificity"]))
                 else None for r in config.defect_rates]
        accuracy["cascade"] = {"macro_f1": acc["cascade_macro_f1"],
                               "recall": acc["stage1_recall"],
                               "precision": acc["stage1_precision"],
                               "specificity": acc["stage1_specificity"]}
    else:
        accuracy["reason"] = (result.evaluation.get("reason")
                              or f"format {fmt} has no accuracy in the formats table")
    if mono is not None and evalset is not None:
        logits = np.concatenate([mono.run(evalset.batch[i:i + cascade.batch])
                                 for i in range(0, len(evalset), cascade.batch)])
        accuracy["monolithic"], result.monolithic_confusion = _monolithic_accuracy(logits, evalset)
    info["accuracy"] = accuracy
    on_step(f"cascade vs monolithic on a {config.field}² field ({fmt}, "
            f"{cascade.threads} threads)")
    image = sem_like_image((config.field, config.field), np.uint8)
    t = config.timing
    result.cascade = field_costs(cascade, mono, image, config.defect_rates, flag_rates=flags,
                                 min_time_s=t["cost_s"], min_rounds=t["cost_rounds"])
    result.cascade_info = info


def _thread_sweep(bundle: Bundle, profile: Profile, config: BenchConfig,
                  result: BenchResult, on_step: Callable[[str], None]) -> None:
    rate = config.defect_rates[0]
    threads = config.threads or default_threads()
    result.threads_info = {"defect_rate": rate, "target": profile.name,
                           "usable_cpus": result.machine.get("usable_cpus")}
    image = sem_like_image((config.field, config.field), np.uint8)
    t = config.timing
    for n in threads:
        on_step(f"thread sweep: {n} thread{'s' if n > 1 else ''}")
        cascade = load(bundle, target=replace(profile, threads=n))
        try:
            mono = open_monolithic(cascade)
        except BundleError:
            mono = None
        rows = field_costs(cascade, mono, image, [rate], min_time_s=t["cost_s"],
                           min_rounds=t["cost_rounds"])
        result.threads.append((n, rows[0]))


def _preprocess(config: BenchConfig, size: int, result: BenchResult,
                on_step: Callable[[str], None]) -> None:
    try:
        import cv2  # noqa: F401
    except ImportError as err:
        result.preprocess_reason = f"OpenCV is not installed ({err}): pip install opencv-python-headless"
        return
    for dtype in (np.uint8, np.uint16):
        on_step(f"preprocessing: fused vs numpy vs OpenCV vs bandwidth ({np.dtype(dtype).name})")
        image = sem_like_image((config.field, config.field), dtype)
        result.preprocess.append(compare(image, size=size, stride=size,
                                         min_time_s=config.timing["preprocess_s"]))


# --------------------------------------------------------------------------- driver


def run_bench(config: BenchConfig, *, on_step: Callable[[str], None] | None = None
              ) -> BenchResult:
    """Run every section of ``semedge bench`` and return the data.

    Raises
    ------
    edge.bundle.BundleError
        The bundle (or the default one) is missing or broken, or stage-1-only (the bench
        measures the cascade's two stages against the monolithic model).
    ValueError
        Unknown target, or a target that cannot run here.
    edge.backends.BackendUnavailable, edge.backends.ProviderError
        The target's runtime cannot run here.
    """
    say = on_step or (lambda _msg: None)
    start = time.perf_counter()
    bundle = load_bundle(config.bundle)
    if bundle.binary:
        raise BundleError(bundle.root / "manifest.json",
                          "a stage-1-only bundle: semedge bench measures the cascade's two "
                          "stages against the monolithic model; score it with semedge eval")
    profile, why = _profile(config.target)
    runtime, note = profile.choose_runtime()
    threads = profile.resolved_threads()
    result = BenchResult(
        config=config, machine=describe_machine(), bundle=_bundle_info(bundle),
        target={"name": profile.name, "reason": why, "backend": runtime.backend,
                "formats": list(runtime.formats), "threads": threads,
                "batch": profile.batch, "note": note},
        evaluation={},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    say(f"evaluation set: rendering with synth ({config.per_class or (QUICK_PER_CLASS if config.quick else EVAL_PER_CLASS)} per class)")
    evalset, result.evaluation = _evalset(bundle, config)
    t = config.timing
    result.formats = measure_formats(
        bundle, profile, list(config.formats or all_formats()), threads=threads,
        evalset=evalset, eval_reason=result.evaluation.get("reason"),
        min_time_s=t["format_s"], max_reps=t["format_reps"], on_step=say)
    _cascade_section(bundle, profile, config, result.formats, evalset, result, say)
    _preprocess(config, bundle.input_size, result, say)
    _thread_sweep(bundle, profile, config, result, say)
    result.seconds = time.perf_counter() - start
    return result
