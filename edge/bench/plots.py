"""PNG plots of a bench result (matplotlib, Agg backend, imported lazily).

matplotlib is not a runtime dependency: :func:`write_plots` raises ``ImportError`` with
the install hint when it is missing, and nothing else in ``semedge bench`` needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge._plotting import pyplot
from edge.classes import CLASSES

if TYPE_CHECKING:
    from edge.bench.runner import BenchResult

__all__ = ["write_plots"]




def _latency(plt: Any, result: BenchResult, path: Path) -> bool:
    rows = [r for r in result.formats if r.ran and r.stage1 is not None]
    if not rows:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, stage in zip(axes, ("stage1", "stage2")):
        data = [np.asarray(getattr(r, stage).samples_ms) for r in rows]
        ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(rows) + 1), [r.format for r in rows])
        ax.set_yscale("log")
        ax.set_ylabel("ms per tile (batch 1)")
        ax.set_title(f"{stage.replace('stage', 'stage ')} latency (whiskers p1–p99)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cost(plt: Any, result: BenchResult, path: Path) -> bool:
    rows = result.cascade
    if not rows:
        return False
    rates = [100 * r.defect_rate for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [r.cascade.median_ms for r in rows], "o-", label="cascade (nominal rate)")
    at_flag = [r.cascade_at_flag_rate for r in rows if r.cascade_at_flag_rate is not None]
    if len(at_flag) == len(rows):
        ax.plot(rates, [t.median_ms for t in at_flag], "s--", label="cascade (measured flag rate)")
    monolithic = [r.monolithic for r in rows if r.monolithic is not None]
    if len(monolithic) == len(rows):  # a bundle has a monolithic model for every row or none
        ax.plot(rates, [t.median_ms for t in monolithic], "^-", label="monolithic")
    ax.set_xlabel("defective tiles (%)")
    ax.set_ylabel("ms per field (median)")
    info = result.cascade_info
    ax.set_title(f"cost per {info.get('field', ['?'])[0]}² field, {info.get('format')}, "
                 f"{info.get('threads')} threads")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _matrix(plt: Any, cm: np.ndarray, cols: list[str], title: str, path: Path) -> None:
    cm = np.asarray(cm)
    rows = list(CLASSES)[: cm.shape[0]]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(cols), 1.0 + 0.7 * len(rows)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(result: BenchResult, folder: str | Path) -> list[Path]:
    """Write the PNGs into ``folder`` (created) and return their paths.

    ``latency.png`` (per-tile latency distributions per format), ``cost.png`` (cost per
    field vs defect rate), ``confusion-<format>.png`` (cascade decisions, with
    ``unknown``) and ``confusion-monolithic.png``.

    Raises
    ------
    ImportError
        matplotlib is not installed (the message says what to install).
    """
    plt = pyplot()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, fn in (("latency.png", _latency), ("cost.png", _cost)):
        if fn(plt, result, out / name):
            written.append(out / name)
    for r in result.formats:
        conf = r.accuracy.get("confusion") if r.ran else None
        if conf:
            path = out / f"confusion-{r.format}.png"
            _matrix(plt, np.asarray(conf["matrix"]), conf["labels"],
                    f"cascade, {r.format}: tiles by true class", path)
            written.append(path)
    if result.monolithic_confusion is not None:
        path = out / "confusion-monolithic.png"
        _matrix(plt, result.monolithic_confusion, list(CLASSES),
                f"monolithic, {result.cascade_info.get('format')}", path)
        written.append(path)
    return written
