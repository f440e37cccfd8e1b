"""``semedge bench``: arguments, progress, tables, ``--json`` and ``--plots``.

The measuring is :func:`edge.bench.runner.run_bench`; this module only parses, prints
and writes files. Exit status: 0 done, 2 usage or setup error (bundle, target, backend,
``--plots`` without matplotlib).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["add_arguments", "run"]

_T = TypeVar("_T")


def _list_of(kind: Callable[[str], _T], what: str) -> Callable[[str], tuple[_T, ...]]:
    def parse(text: str) -> tuple[_T, ...]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        try:
            return tuple(kind(s) for s in items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {what}, got {text!r}") from None
    return parse


def _formats(text: str) -> tuple[str, ...]:
    from edge.bench.formats import all_formats

    items = _list_of(str, "formats")(text)
    known = all_formats()
    bad = [f for f in items if f not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown format {bad[0]!r}; known: {', '.join(known)}")
    return items


def _threads(text: str) -> tuple[int, ...]:
    items = _list_of(int, "thread counts")(text)
    if any(t < 1 for t in items):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return items


def _rates(text: str) -> tuple[float, ...]:
    items = _list_of(float, "defect rates")(text)
    if any(not 0.0 <= r <= 1.0 for r in items):
        raise argparse.ArgumentTypeError(f"defect rates are fractions in [0, 1], got {text!r}")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``semedge bench``."""
    p.add_argument("--target", default="auto", help="target profile (default: auto)")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="model bundle folder (default: the bundle shipped in the package)")
    p.add_argument("--formats", type=_formats, default=None, metavar="F,...",
                   help="formats for the formats table (default: all: onnx, onnx-int8, "
                        "tflite-int8, tflite-int8-full)")
    p.add_argument("--threads", type=_threads, default=None, metavar="N,...",
                   help="thread counts of the sweep (default: 1, 2, 4… up to the CPUs)")
    p.add_argument("--defect-rate", type=_rates, default=None, metavar="R,...",
                   dest="defect_rates", help="defect rates of the cascade table "
                   "(default: 0.02,0.1,0.5)")
    p.add_argument("--field", type=_positive, default=None, metavar="PX",
                   help="side of the square field in pixels (default: 2048)")
    p.add_argument("--eval-per-class", type=_positive, default=None, metavar="N",
                   help="evaluation images per class (default: 50; 4 with --quick)")
    p.add_argument("--json", metavar="FILE", dest="json_path",
                   help="write the results as JSON ('-': stdout, the tables go to stderr)")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (needs matplotlib)")
    p.add_argument("--quick", action="store_true",
                   help="CI mode: tiny evaluation set, short timings (not for reporting)")


def run(args: argparse.Namespace) -> int:
    """Run ``semedge bench`` with parsed ``args``; return the exit status."""
    from rich.console import Console

    from edge.backends import BackendUnavailable, ProviderError
    from edge.bench.runner import BenchConfig, run_bench
    from edge.bundle import BundleError

    err = Console(stderr=True, highlight=False)
    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from edge._plotting import INSTALL_HINT

            print(f"semedge bench: error: {INSTALL_HINT}", file=sys.stderr)
            return 2
    options: dict[str, Any] = {"bundle": args.bundle, "target": args.target,
                               "formats": args.formats, "threads": args.threads,
                               "quick": args.quick, "per_class": args.eval_per_class}
    if args.defect_rates is not None:
        options["defect_rates"] = args.defect_rates
    if args.field is not None:
        options["field"] = args.field
    try:
        config = BenchConfig(**options)
    except ValueError as exc:
        print(f"semedge bench: error: {exc}", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        err.print(f"[dim]semedge bench: {message}…[/dim]")

    try:
        result = run_bench(config, on_step=progress)
    except BundleError as exc:
        from edge.bundle import default_bundle_path

        default = default_bundle_path()
        if args.bundle is None and not (default / "manifest.json").is_file():
            print(f"semedge bench: error: no default bundle is installed in this semedge "
                  f"package ({default} has no manifest.json); benchmark a bundle folder "
                  "with `semedge bench --bundle DIR`", file=sys.stderr)
        else:
            print(f"semedge bench: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, BackendUnavailable, ProviderError) as exc:
        print(f"semedge bench: error: {exc}", file=sys.stderr)
        return 2
    doc = result.as_dict()
    to_stdout = args.json_path == "-"
    from edge.bench.report import render

    console = err if to_stdout else Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 180)
    render(doc, console)
    if args.json_path:
        text = json.dumps(doc, indent=2)
        if to_stdout:
            print(text)
        else:
            Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_path).write_text(text + "\n", encoding="utf-8")
            err.print(f"semedge bench: wrote {args.json_path}")
    if args.plots:
        from edge.bench.plots import write_plots

        for path in write_plots(result, args.plots):
            err.print(f"semedge bench: wrote {path}")
    return 0
