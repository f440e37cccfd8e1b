"""The formats table: per model format, size, accuracy, latency, load time and peak RSS.

Each format is measured in a fresh child interpreter (``python -c``), so that
its load time and first call are truly cold and its peak resident set size (the
child's ``VmHWM`` on Linux, see :func:`_max_rss_bytes`) is its own: interpreter +
numpy + runtime + the two stage sessions + the timed runs. The RSS is read *before* the
child receives the evaluation set, so the bench's data does not inflate it; the child's
RSS just after its imports is reported beside it (``baseline_rss_bytes``).

Everything goes through :class:`edge.cascade.Cascade` (``stage1_scores``,
``stage2_probs``): the timed code is the product's code. A format that cannot run here
(its backend or a file missing) gets a row with ``reason`` instead of a crash.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge import backends
from edge.bench.evalset import EvalSet
from edge.bench.timing import Timing, measure
from edge.bundle import Bundle
from edge.classes import CLASSES, DEFECT_CLASSES, UNKNOWN
from edge.metrics import binary_recall_precision_specificity, confusion_matrix, macro_f1
from edge.profiles import Profile, Runtime

__all__ = [
    "CASCADE_LABELS",
    "REFERENCE_FORMAT",
    "FormatResult",
    "all_formats",
    "cascade_labels",
    "format_profile",
    "measure_formats",
    "score",
]

REFERENCE_FORMAT = "onnx"
"""Agreement is measured against this format (ONNX fp32)."""

CASCADE_LABELS: tuple[str, ...] = (*CLASSES, UNKNOWN)
"""Columns of the cascade confusion matrix: the 7 classes, then ``unknown``."""


def all_formats() -> tuple[str, ...]:
    """Every format key some registered backend runs, in registry order."""
    seen: list[str] = []
    for name in backends.backend_names():
        for fmt in backends.backend_spec(name).formats:
            if fmt not in seen:
                seen.append(fmt)
    return tuple(seen)


def format_profile(profile: Profile, fmt: str, threads: int) -> tuple[Profile, str | None]:
    """``profile`` forced to run format ``fmt`` with ``threads``, and why it cannot run here.

    The profile's own runtime (or its fallback) is used when its backend runs ``fmt``, so
    its providers apply; otherwise the backend registered for ``fmt`` with its defaults.
    The returned profile has no fallback: a format is measured as itself or not at all.
    """
    owners = [n for n in backends.backend_names() if fmt in backends.backend_spec(n).formats]
    if not owners:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(all_formats())}")
    runtime = next((r for r in (profile.runtime, profile.fallback)
                    if r is not None and r.backend in owners), None)
    runtime = (Runtime(backend=owners[0], formats=(fmt,)) if runtime is None
               else replace(runtime, formats=(fmt,)))
    forced = replace(profile, runtime=runtime, fallback=None, threads=threads)
    return forced, runtime.why_not(threads)


@dataclass
class FormatResult:
    """One row of the formats table (``reason`` set when the format did not run)."""

    format: str
    reason: str | None = None
    backend: str | None = None
    size_bytes: int | None = None
    stage_bytes: dict[str, int] = field(default_factory=dict)
    load_ms: float | None = None
    first_call_ms: dict[str, float] = field(default_factory=dict)
    stage1: Timing | None = None
    stage2: Timing | None = None
    stage1_batched: Timing | None = None
    stage2_batched: Timing | None = None
    batch: int | None = None
    threads: int | None = None
    peak_rss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    stage1_scores: np.ndarray | None = field(default=None, repr=False)
    stage2_probs: np.ndarray | None = field(default=None, repr=False)
    accuracy: dict[str, Any] = field(default_factory=dict)
    accuracy_reason: str | None = None

    @property
    def ran(self) -> bool:
        """Whether the format ran (no ``reason`` it could not)."""
        return self.reason is None

    def as_row(self) -> dict[str, Any]:
        """The JSON row (see ``docs/bench.md`` for every key)."""
        row: dict[str, Any] = {"format": self.format, "size_bytes": self.size_bytes,
                               "stage_bytes": self.stage_bytes, "reason": self.reason}
        s1, s2 = self.stage1, self.stage2
        if not self.ran or s1 is None or s2 is None:
            return row
        row.update({
            "backend": self.backend, "threads": self.threads, "batch": self.batch,
            "stage1_recall": self.accuracy.get("stage1_recall"),
            "stage1_precision": self.accuracy.get("stage1_precision"),
            "stage1_specificity": self.accuracy.get("stage1_specificity"),
            "stage2_macro_f1": self.accuracy.get("stage2_macro_f1"),
            "stage2_agreement": self.accuracy.get("stage2_agreement"),
            "stage1_agreement": self.accuracy.get("stage1_agreement"),
            "cascade_macro_f1": self.accuracy.get("cascade_macro_f1"),
            "cascade_agreement": self.accuracy.get("cascade_agreement"),
            "accuracy_reason": self.accuracy_reason,
            "latency_ms_p50": s1.median_ms, "latency_ms_p95": s1.p95_ms,
            "latency_ms_p99": s1.p99_ms,
            "stage2_latency_ms_p50": s2.median_ms, "stage2_latency_ms_p95": s2.p95_ms,
            "stage2_latency_ms_p99": s2.p99_ms,
            "stage1_ms_per_tile_batched": _median(self.stage1_batched),
            "stage2_ms_per_tile_batched": _median(self.stage2_batched),
            "first_call_ms": self.first_call_ms.get("stage1"),
            "stage2_first_call_ms": self.first_call_ms.get("stage2"),
            "load_ms": self.load_ms,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "repetitions": s1.repetitions,
            "confusion": self.accuracy.get("confusion"),
        })
        return row


def _median(t: Timing | None) -> float | None:
    return None if t is None else t.median_ms


# ------------------------------------------------------------------------- scoring


def cascade_labels(s1: np.ndarray, probs: np.ndarray, threshold: float,
                   unknown_threshold: float) -> np.ndarray:
    """Cascade decision per tile as an index into :data:`CASCADE_LABELS`.

    Not flagged → 0 (normal); flagged → 1 + stage-2 top class, or 7 (``unknown``) when
    its probability is under ``unknown_threshold`` (the rule of ``edge.results``).
    """
    flagged = s1 >= threshold
    top = probs.argmax(axis=1) + 1
    confident = probs.max(axis=1) >= unknown_threshold
    return np.where(flagged, np.where(confident, top, len(CLASSES)), 0).astype(np.int64)


def score(evalset: EvalSet, s1: np.ndarray, probs: np.ndarray, *, threshold: float,
          unknown_threshold: float, reference: tuple[np.ndarray, np.ndarray] | None = None
          ) -> dict[str, Any]:
    """Accuracy of one format on the evaluation set.

    ``s1`` ``(N,)`` stage-1 scores and ``probs`` ``(N, 6)`` stage-2 probabilities on
    *every* eval tile. Stage 1: recall/precision/specificity of ``s1 >= threshold``
    against defective vs normal. Stage 2 alone: macro-F1 of its top class on the
    defective tiles. Cascade: 7-class macro-F1 of the full decision (``unknown`` counts
    as a miss). ``reference`` (fp32 ``s1``, ``probs``): agreement rates.
    """
    defective = evalset.defective
    flags = s1 >= threshold
    binary = binary_recall_precision_specificity(defective, flags)
    truth2 = evalset.labels[defective] - 1
    pred2 = probs[defective].argmax(axis=1)
    cm2 = confusion_matrix(truth2, pred2, len(DEFECT_CLASSES))
    decided = cascade_labels(s1, probs, threshold, unknown_threshold)
    cm = confusion_matrix(evalset.labels, decided, len(CASCADE_LABELS))
    out: dict[str, Any] = {
        "stage1_recall": binary.recall, "stage1_precision": binary.precision,
        "stage1_specificity": binary.specificity,
        "stage2_macro_f1": macro_f1(cm2),
        "stage2_unknown_rate": float(np.mean(probs[defective].max(axis=1) < unknown_threshold))
        if defective.any() else float("nan"),
        "cascade_macro_f1": macro_f1(cm, classes=np.arange(len(CLASSES))),
        "confusion": {"labels": list(CASCADE_LABELS), "matrix": cm[:len(CLASSES)].tolist()},
        "stage1_agreement": None, "stage2_agreement": None, "cascade_agreement": None,
    }
    if reference is not None:
        ref_s1, ref_probs = reference
        out["stage1_agreement"] = float(np.mean((ref_s1 >= threshold) == flags))
        out["stage2_agreement"] = float(np.mean(ref_probs.argmax(axis=1) == probs.argmax(axis=1)))
        ref = cascade_labels(ref_s1, ref_probs, threshold, unknown_threshold)
        out["cascade_agreement"] = float(np.mean(ref == decided))
    return out


# ------------------------------------------------------------------ child process


def _max_rss_bytes() -> int | None:
    """Peak resident set size of this process, in bytes.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own
    address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` is *not* used there: the kernel
    carries the parent's RSS at fork over the ``exec``, so a child started from a large
    parent would report the parent's size. Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # POSIX only
    except ImportError:  # pragma: no cover (Windows)
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _timing_dict(t: Timing) -> dict[str, Any]:
    return {"first_ms": t.first_ms, "samples_ms": t.samples_ms}


def _child(job: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: load the format, time it, then score the eval set."""
    baseline = _max_rss_bytes()
    try:
        from edge.cascade import load

        t0 = time.perf_counter()
        cascade = load(job["bundle"], target=job["profile"])
        load_ms = (time.perf_counter() - t0) * 1e3
        size, batch = cascade.size, cascade.batch
        rng = np.random.default_rng(0)
        one = rng.random((1, 1, size, size), dtype=np.float32)
        many = rng.random((batch, 1, size, size), dtype=np.float32)
        first = {}
        for name, fn in (("stage1", cascade.stage1_scores), ("stage2", cascade.stage2_probs)):
            t0 = time.perf_counter()
            fn(one)
            first[name] = (time.perf_counter() - t0) * 1e3
        opts = job["timing"]
        timings = {
            "stage1": measure(lambda: cascade.stage1_scores(one), **opts),
            "stage2": measure(lambda: cascade.stage2_probs(one), **opts),
            "stage1_batched": measure(lambda: cascade.stage1_scores(many), **opts).scaled(1 / batch),
            "stage2_batched": measure(lambda: cascade.stage2_probs(many), **opts).scaled(1 / batch),
        }
        peak = _max_rss_bytes()
        result: dict[str, Any] = {
            "backend": cascade.backend, "load_ms": load_ms, "first_call_ms": first,
            "timings": {k: _timing_dict(v) for k, v in timings.items()},
            "peak_rss_bytes": peak, "baseline_rss_bytes": baseline,
            "batch": batch, "threads": cascade.threads,
        }
        if job.get("eval_path"):
            tiles = np.load(job["eval_path"])
            result["stage1_scores"] = cascade.stage1_scores(tiles)
            result["stage2_probs"] = cascade.stage2_probs(tiles)
        return result
    except Exception as err:  # noqa: BLE001  (any failure of a format is its row's reason)
        return {"error": f"{type(err).__name__}: {err}"}


def _child_main() -> None:
    """Entry point of the measuring process: ``argv[1]`` job pickle, ``argv[2]`` result."""
    with open(sys.argv[1], "rb") as fh:
        job = pickle.load(fh)
    result = _child(job)
    with open(sys.argv[2], "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _run_isolated(job: dict[str, Any], workdir: Path, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run :func:`_child` in a fresh interpreter (``python -c``, not ``multiprocessing``:
    nothing of the caller's ``__main__`` is re-imported) and return its result."""
    job_path, out_path = workdir / "job.pkl", workdir / "result.pkl"
    out_path.unlink(missing_ok=True)
    with open(job_path, "wb") as fh:
        pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding edge/
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "from edge.bench.formats import _child_main; _child_main()"
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(job_path), str(out_path)],
                              env=env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the measuring process did not finish in {timeout_s:.0f} s"}
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no message"]
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        return {"error": f"the measuring process {how} ({tail[0]})"}
    with open(out_path, "rb") as fh:
        out: dict[str, Any] = pickle.load(fh)
    return out


# --------------------------------------------------------------------------- driver


def _sizes(bundle: Bundle, fmt: str) -> tuple[int | None, dict[str, int]]:
    stages = {}
    for stage in ("stage1", "stage2"):
        if fmt in bundle.formats(stage):
            stages[stage] = bundle.file(stage, fmt).path.stat().st_size
    total = sum(stages.values()) if len(stages) == 2 else None
    return total, stages


def _why_missing(bundle: Bundle, fmt: str) -> str | None:
    missing = [s for s in ("stage1", "stage2") if fmt not in bundle.formats(s)]
    if not missing:
        return None
    return (f"the bundle has no {' or '.join(missing)} model in format {fmt!r} "
            f"(it has: {', '.join(bundle.formats('stage1')) or 'none'})")


def measure_formats(bundle: Bundle, profile: Profile, formats: list[str] | tuple[str, ...], *,
                    threads: int, evalset: EvalSet | None, eval_reason: str | None = None,
                    min_time_s: float = 0.5, max_reps: int = 2000,
                    on_step: Any = None) -> list[FormatResult]:
    """One :class:`FormatResult` per requested format, in order.

    The reference format (ONNX fp32) is also measured when it is not requested but
    ``evalset`` is given and the bundle has it, so that agreement can be computed; it is
    then not returned.
    """
    wanted = list(dict.fromkeys(formats))
    runs = list(wanted)
    if (evalset is not None and REFERENCE_FORMAT not in runs
            and _why_missing(bundle, REFERENCE_FORMAT) is None):
        runs.append(REFERENCE_FORMAT)
    timing = {"min_time_s": min_time_s, "max_reps": max_reps}
    results: dict[str, FormatResult] = {}
    with tempfile.TemporaryDirectory(prefix="semedge-bench-") as tmp:
        eval_path = None
        if evalset is not None:
            eval_path = str(Path(tmp) / "eval.npy")
            np.save(eval_path, evalset.batch)
        for fmt in runs:
            total, stages = _sizes(bundle, fmt)
            res = FormatResult(format=fmt, size_bytes=total, stage_bytes=stages)
            results[fmt] = res
            forced, reason = format_profile(profile, fmt, threads)
            reason = _why_missing(bundle, fmt) or reason
            if reason is not None:
                res.reason = reason
                continue
            if on_step:
                on_step(f"format {fmt}: load, time and score in a fresh process")
            out = _run_isolated({"bundle": bundle, "profile": forced, "timing": timing,
                                 "eval_path": eval_path}, Path(tmp))
            if "error" in out:
                res.reason = out["error"]
                continue
            _fill(res, out)
    _score_all(results, bundle, profile, evalset, eval_reason)
    return [results[f] for f in wanted]


def _fill(res: FormatResult, out: dict[str, Any]) -> None:
    t = {k: Timing(first_ms=v["first_ms"], samples_ms=tuple(v["samples_ms"]))
         for k, v in out["timings"].items()}
    res.backend = out["backend"]
    res.load_ms = out["load_ms"]
    res.first_call_ms = out["first_call_ms"]
    res.stage1, res.stage2 = t["stage1"], t["stage2"]
    res.stage1_batched, res.stage2_batched = t["stage1_batched"], t["stage2_batched"]
    res.peak_rss_bytes = out["peak_rss_bytes"]
    res.baseline_rss_bytes = out["baseline_rss_bytes"]
    res.batch, res.threads = out["batch"], out["threads"]
    res.stage1_scores = out.get("stage1_scores")
    res.stage2_probs = out.get("stage2_probs")


def _score_all(results: dict[str, FormatResult], bundle: Bundle, profile: Profile,
               evalset: EvalSet | None, eval_reason: str | None) -> None:
    threshold = (profile.stage1_threshold if profile.stage1_threshold is not None
                 else bundle.stage1_threshold)
    ref = results.get(REFERENCE_FORMAT)
    reference = None
    if (ref is not None and ref.ran and ref.stage1_scores is not None
            and ref.stage2_probs is not None):  # the child returns both or neither
        reference = (ref.stage1_scores, ref.stage2_probs)
    for res in results.values():
        if not res.ran:
            continue
        if evalset is None or res.stage1_scores is None or res.stage2_probs is None:
            res.accuracy_reason = eval_reason or "no evaluation set"
            continue
        res.accuracy = score(evalset, res.stage1_scores, res.stage2_probs,
                             threshold=threshold, unknown_threshold=bundle.unknown_threshold,
                             reference=reference)
        if reference is None:
            res.accuracy_reason = "agreement: the fp32 (onnx) format did not run here"
