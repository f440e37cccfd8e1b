"""ONNX fp32 → TFLite int8 (``tflite-int8``, float I/O) and full integer
(``tflite-int8-full``, int8 I/O, Edge TPU ready), with a graph check and a parity gate.

onnx2tf pins old TensorFlow/numpy/onnx, so it runs in its own environment, created once
by ``scripts/setup-tflite`` (default ``~/.cache/semedge/tflite-env``, or
``$SEMEDGE_TFLITE_ENV``). This module runs in the main environment: it writes the
calibration tiles as NHWC ``.npy`` (the edge's preprocessing output, unchanged: single
channel, mean 0 / std 1, never ImageNet statistics), starts
``_onnx2tf_worker.py`` with that environment's Python, then checks the produced graphs
(:mod:`training.export.tflite_graph`). Evaluation runs the files through the device
runtime (``edge.backends.tflite_backend``), and :func:`check_parity` refuses an export
whose top-1 agreement with ONNX fp32 is under 99 % or whose stage-1 recall drops more
than 0.5 point.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.export.gate import DriftBudget, ExportRefused, check_drift
from training.export.tflite_graph import GraphReport, check_graph, inspect_tflite

__all__ = [
    "ENV_VAR",
    "FORMATS",
    "MIN_AGREEMENT",
    "TFLiteConversion",
    "TFLiteEnvMissing",
    "check_parity",
    "convert_stages",
    "convert_tflite",
    "predict_tflite",
    "register_edgetpu",
    "setup_command",
    "tflite_env",
]

ENV_VAR = "SEMEDGE_TFLITE_ENV"
FORMATS = ("tflite-int8", "tflite-int8-full")
SUFFIXES = {"tflite-int8": ".int8.tflite", "tflite-int8-full": ".int8-full.tflite"}
MIN_AGREEMENT = 0.99
WORKER = Path(__file__).with_name("_onnx2tf_worker.py")
SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup-tflite"


class TFLiteEnvMissing(RuntimeError):
    """The onnx2tf environment does not exist; the message gives the one command."""


def setup_command() -> str:
    """The one command that creates the TFLite environment."""
    return "scripts/setup-tflite   (or: semedge export --setup-tflite)"


def tflite_env(env: str | os.PathLike | None = None) -> Path:
    """The TFLite environment folder: ``env``, ``$SEMEDGE_TFLITE_ENV`` or
    ``~/.cache/semedge/tflite-env`` (not checked)."""
    if env is not None:
        return Path(env).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "semedge" / "tflite-env"


def _env_python(env: Path) -> Path:
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        raise TFLiteEnvMissing(
            f"the TFLite conversion environment is missing ({python} does not exist). "
            f"Create it once with: {setup_command()}; set ${ENV_VAR} to use another "
            "location")
    return python


@dataclass(frozen=True)
class TFLiteConversion:
    """One model converted: format key → file and graph report, plus the worker's info."""

    name: str
    files: dict[str, Path]
    graphs: dict[str, GraphReport]
    worker: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-ready: op counts, I/O quantization and size per format, versions, time."""
        return {"graphs": {fmt: g.to_dict() for fmt, g in self.graphs.items()},
                "converter": self.worker.get("versions", {}),
                "flatten_rewrites": self.worker.get("flatten_rewrites"),
                "calibration_tiles": self.worker.get("calibration_tiles"),
                "seconds": round(self.seconds, 1)}


def _nhwc(calibration: np.ndarray) -> np.ndarray:
    x = np.asarray(calibration)
    if x.ndim != 4 or x.shape[1] != 1 or len(x) == 0 or x.shape[2] != x.shape[3]:
        raise ValueError(f"calibration must be a non-empty [N, 1, S, S] batch of edge "
                         f"preprocessing tiles, got {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
        raise ValueError("calibration tiles must be edge.preprocess output in [0, 1] "
                         f"(got min {x.min()}, max {x.max()})")
    return np.ascontiguousarray(x.reshape(len(x), x.shape[2], x.shape[3], 1))


def _log_tail(text: str, lines: int = 25) -> list[str]:
    """The last ``lines`` meaningful lines of a TensorFlow/onnx2tf log (no colour codes,
    no TF start-up noise)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    keep = [line for line in text.splitlines() if line.strip()
            and not re.match(r"^[WEI]\d{4} |^WARNING: All log messages", line)]
    return keep[-lines:]


def _run_worker(python: Path, onnx_path: Path, calib: Path, out_dir: Path, name: str,
                timeout: float) -> dict:
    cmd = [str(python), "-E", "-s", str(WORKER), "--onnx", str(onnx_path),
           "--calibration", str(calib), "--out", str(out_dir), "--name", name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"onnx2tf conversion of {onnx_path} took over {timeout:.0f} s"
                           ) from None
    result = next((line.split(" ", 1)[1] for line in proc.stdout.splitlines()
                   if line.startswith("SEMEDGE_WORKER_RESULT ")), None)
    if proc.returncode != 0 or result is None:
        tail = "\n".join(_log_tail(proc.stdout + "\n" + proc.stderr))
        hint = (f"\nThe TFLite environment looks incomplete: recreate it with "
                f"{setup_command()}" if "ModuleNotFoundError" in tail else "")
        raise RuntimeError(f"onnx2tf conversion of {onnx_path} failed (exit "
                           f"{proc.returncode}):\n{tail}{hint}")
    return json.loads(result)


def convert_tflite(onnx_path: str | os.PathLike, out_dir: str | os.PathLike,
                   calibration: np.ndarray, *, name: str | None = None,
                   env: str | os.PathLike | None = None,
                   timeout: float = 1800.0) -> TFLiteConversion:
    """Convert one ONNX fp32 model to ``<name>.int8.tflite`` and ``<name>.int8-full.tflite``.

    Parameters
    ----------
    onnx_path : path
        ONNX fp32 model, input ``image`` ``[N, 1, S, S]``.
    out_dir : path
        Where the two files go (the bundle folder).
    calibration : (N, 1, S, S) float32 ndarray
        Class-balanced ``edge.preprocess.tile`` output (the ONNX int8 calibration set).
    name : str, optional
        File stem (default: the ONNX file's stem, e.g. ``stage1``).
    env : path, optional
        The TFLite environment (default :func:`tflite_env`).

    Raises
    ------
    TFLiteEnvMissing
        No TFLite environment; the message names the setup command.
    TFLiteGraphError
        A produced graph is not integer-only (TRANSPOSE, float or Flex ops…).
    RuntimeError
        onnx2tf failed (the message has the end of its log).
    """
    python = _env_python(tflite_env(env))
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    name = name or onnx_path.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semedge-tflite-") as tmp:
        calib = Path(tmp) / "calibration_nhwc.npy"
        np.save(calib, _nhwc(calibration))
        info = _run_worker(python, onnx_path.resolve(), calib, out_dir.resolve(), name,
                           timeout)
    files = {fmt: out_dir / f"{name}{SUFFIXES[fmt]}" for fmt in FORMATS}
    graphs = {fmt: check_graph(inspect_tflite(path), fmt) for fmt, path in files.items()}
    return TFLiteConversion(name, files, graphs, info, time.perf_counter() - started)


def convert_stages(onnx_paths: dict[str, str | os.PathLike], out_dir: str | os.PathLike,
                   calibration: np.ndarray, **kwargs) -> dict[str, TFLiteConversion]:
    """:func:`convert_tflite` for each ``stage → ONNX fp32 path``; same keyword arguments."""
    return {stage: convert_tflite(path, out_dir, calibration, name=stage, **kwargs)
            for stage, path in onnx_paths.items()}


def predict_tflite(path: str | os.PathLike, x: np.ndarray, *, stage: str,
                   fmt: str = "tflite-int8", threads: int = 2,
                   batch_size: int = 64, outputs: int | None = None) -> np.ndarray:
    """Logits of a ``.tflite`` file for tiles ``x`` ``[N, 1, S, S]``, through the device
    runtime (XNNPACK on the CPU; a full-integer model is quantized/dequantized exactly
    as on the device). ``outputs``: the model's width when not the stage's usual one
    (a stage 2 with the other output)."""
    from edge.backends.tflite_backend import TFLiteBackend
    from edge.bundle import STAGES, StageFile

    width = STAGES[stage] if outputs is None else outputs
    session = TFLiteBackend(threads=threads, providers=["cpu"]).open(
        StageFile(stage, fmt, Path(path), ""), size=x.shape[-1], outputs=width)
    step = batch_size if fmt == "tflite-int8" else len(x) or 1
    outs = [session.run(np.ascontiguousarray(x[i:i + step], dtype=np.float32))
            for i in range(0, len(x), step)]
    return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)


def check_parity(evaluation: dict[str, dict], fmt: str, *,
                 min_agreement: float = MIN_AGREEMENT,
                 budget: DriftBudget | None = None) -> dict:
    """The TFLite parity gate on one held-out set.

    ``evaluation`` maps format → ``training.evaluate.evaluate_outputs`` dict on the same
    tiles: ``onnx`` (fp32), optionally ``onnx-int8``, and ``fmt``, the latter computed
    with ``reference=`` the **ONNX fp32** logits (so its ``agreement`` is against ONNX
    fp32). Returns the numbers for the manifest/report; raises
    :class:`~training.export.gate.ExportRefused` if stage-1 top-1 agreement (all tiles) or
    stage-2 top-1 agreement (on the tiles of its six classes) is under ``min_agreement`` or recall / macro-F1 drop beyond ``budget`` (default: the
    ONNX int8 budget, 0.5 point recall, 1 point macro-F1).
    """
    budget = budget or DriftBudget()
    got = evaluation[fmt]
    agree = got["agreement"]
    # stage 2 is gated on the tiles of its six classes (its macro-F1's tiles); the
    # all-tiles number is reported next to it
    agreement = {"stage1": float(agree["stage1"])}
    row: dict = {"format": fmt, "min_agreement": min_agreement,
                 "agreement_vs_onnx": agreement}
    metrics = {"stage1_recall": ("stage1", "recall")}
    if "stage2" in agree:  # a stage-1-only bundle has no stage 2 to gate
        agreement["stage2"] = float(agree.get("stage2_defect_tiles", agree["stage2"]))
        row["stage2_agreement_all_tiles"] = float(agree["stage2"])
        metrics["stage2_macro_f1"] = ("stage2", "macro_f1")
    for key, (part, metric) in metrics.items():
        row[key] = {f: float(evaluation[f][part][metric])
                    for f in ("onnx", "onnx-int8", fmt) if f in evaluation}
    failed = [f"{k}: no held-out tiles of its six classes to measure agreement on"
              if np.isnan(v) else f"{k} top-1 agreement {v:.4f} < {min_agreement}"
              for k, v in agreement.items() if not v >= min_agreement]
    try:
        row["drift"] = check_drift(evaluation["onnx"], got, budget, name=fmt)
    except ExportRefused as err:
        row["drift"] = err.drops
        failed.append(str(err).split(": ", 2)[-1])
    row["pass"] = not failed
    if failed:
        raise ExportRefused(f"export refused: {fmt} disagrees with ONNX fp32: "
                            + "; ".join(failed), {fmt: row})
    return row


def register_edgetpu(bundle: str | os.PathLike) -> dict:
    """List every ``<stage>.int8-full_edgetpu.tflite`` in ``bundle`` with its sha256
    under ``manifest.json``'s ``edgetpu`` key (what the Edge TPU runtime checks)."""
    from edge.bundle import sha256_file

    root = Path(bundle)
    mf = root / "manifest.json"
    manifest = json.loads(mf.read_text(encoding="utf-8"))
    entries = {}
    for stage, formats in manifest["files"].items():
        full = formats.get("tflite-int8-full")
        if full:
            compiled = root / Path(full["path"]).with_name(
                f"{Path(full['path']).stem}_edgetpu.tflite")
            if compiled.is_file():
                entries[stage] = {"path": compiled.relative_to(root).as_posix(),
                                  "sha256": sha256_file(compiled)}
    manifest["edgetpu"] = entries
    mf.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return entries


def run_setup(env: str | os.PathLike | None = None) -> int:
    """Run ``scripts/setup-tflite`` (for ``semedge export --setup-tflite``)."""
    if not SETUP_SCRIPT.is_file():
        raise FileNotFoundError(f"{SETUP_SCRIPT} not found: run scripts/setup-tflite from "
                                "a semedge source checkout")
    return subprocess.call(["bash", str(SETUP_SCRIPT), str(tflite_env(env))])


def main(argv: list[str] | None = None) -> int:
    """``python -m training.export.tflite {setup [ENV] | register-edgetpu BUNDLE}``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["setup"] and len(argv) <= 2 and not argv[-1].startswith("-"):
        return run_setup(argv[1] if len(argv) == 2 else None)
    if argv[:1] == ["register-edgetpu"] and len(argv) == 2:
        print(json.dumps(register_edgetpu(argv[1]), indent=2))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
