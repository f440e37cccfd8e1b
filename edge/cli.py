"""The ``semedge`` command line.

Device subcommands: ``info``, ``targets``, ``classify``, ``bench``, ``eval``,
``device-bundle``. Workstation
subcommands (``synth``, ``train``, ``export``) are delegated lazily by :mod:`edge._workstation`.
Exit status: 0 success, 1 some file failed, 2 usage or setup error (bundle, target,
missing backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__, _workstation
from edge.files import IMAGE_SUFFIXES, Inputs, collect_files, collect_inputs, samples_dir

if TYPE_CHECKING:
    import numpy as np

    from edge.cascade import Cascade
    from edge.results import ImageResult

__all__ = ["IMAGE_SUFFIXES", "Inputs", "collect_files", "collect_inputs", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semedge", description="Classify defects in SEM images on edge boards.")
    parser.add_argument("--version", action="version", version=f"semedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("info", help="version, kernel build, backends, default bundle")

    p = sub.add_parser("targets", help="list target profiles and which can run here")
    p.add_argument("--json", action="store_true", help="one JSON object per profile")

    p = sub.add_parser("classify", help="classify image files and folders")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    p.add_argument("--samples", action="store_true",
                   help="also classify the sample SEM images shipped with semedge")
    p.add_argument("--target", default="auto", help="target profile (default: auto)")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="model bundle folder (default: the bundle shipped in the package)")
    p.add_argument("--provider", action="append", dest="providers", metavar="EP",
                   help="onnxruntime execution provider to use instead of the profile's; "
                        "repeat for a priority list; a missing one is an error")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--overlay", metavar="DIR", help="write PNGs with flagged tiles drawn")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    p = sub.add_parser("bench", help="formats, cascade vs monolithic, preprocessing, threads: "
                                      "tables, --json, --plots")
    from edge.bench.cli import add_arguments as add_bench_arguments

    add_bench_arguments(p)

    p = sub.add_parser("eval", help="scorecard on a labelled folder: stage-1 recall, "
                                     "stage-2 macro-F1, unknown rate, --json, --plots")
    from edge.eval_report import add_arguments as add_eval_arguments

    add_eval_arguments(p)

    p = sub.add_parser("device-bundle", help="copy a bundle's int8 models and a manifest "
                                              "listing only them into OUT, for a board")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (as semedge train wrote it)")
    p.add_argument("out", metavar="OUT", help="new folder (must not exist or be empty)")

    _workstation.add_subparsers(sub)
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with its subcommand's usage."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    message = f"unrecognized arguments: {' '.join(extra)}"
    if set(extra) & set(argv[:argv.index(args.command)]):  # given before the command
        parser.error(message)
    commands = next(a for a in parser._actions  # noqa: SLF001  (argparse keeps no other handle)
                    if isinstance(a, argparse._SubParsersAction)).choices  # noqa: SLF001
    commands[args.command].error(message)
    return args  # not reached: error() exits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _workstation.COMMANDS:
        return _workstation.run(argv[0], argv[1:])
    args = _parse(argv)
    try:
        status = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `semedge … | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail again
        return 141  # 128 + SIGPIPE, as a shell reports it


def _run(args: argparse.Namespace) -> int:
    """Dispatch a parsed device subcommand."""
    if args.command == "info":
        return _info()
    if args.command == "targets":
        return _targets(args.json)
    if args.command == "bench":
        from edge.bench.cli import run as run_bench

        return run_bench(args)
    if args.command == "device-bundle":
        return _device_bundle(Path(args.bundle), Path(args.out))
    if args.command == "eval":
        from edge.eval_report import run as run_eval

        return run_eval(args)
    return _classify(args)


# --------------------------------------------------------------------------- info


def _info() -> int:
    from edge import backends
    from edge._flavour import FLAVOUR
    from edge.bundle import BundleError, default_bundle_path, load_bundle

    print(f"semedge {__version__} (python {sys.version.split()[0]}), {FLAVOUR} build")
    try:
        from edge import preprocess

        print(f"kernels: built, OpenMP {'yes' if preprocess.OPENMP else 'no'}")
    except ImportError as err:
        print(f"kernels: NOT BUILT ({err}); run `pip install -e .` to compile csrc/")
    for name in backends.backend_names():
        reason = backends.why_unavailable(name)
        if reason is None and name == "onnxruntime":
            import onnxruntime as ort

            extra = f" {ort.__version__}, providers: {', '.join(ort.get_available_providers())}"
        else:
            extra = ""
        print(f"backend {name}: {'available' + extra if reason is None else 'no (' + reason + ')'}")
    path = default_bundle_path()
    try:
        bundle = load_bundle(None)
        formats = ", ".join(bundle.formats("stage1"))
        print(f"default bundle: {bundle.name!r} at {path} (formats: {formats})")
    except BundleError as err:
        print(f"default bundle: not usable ({err.reason})")
    return 0


# ------------------------------------------------------------------ device-bundle


def _device_bundle(src: Path, out: Path) -> int:
    from edge.bundle import BundleError, load_bundle
    from edge.device_bundle import DeviceBundleError, write_device_bundle

    try:
        load_bundle(src)
        written = write_device_bundle(src, out)
        slim = load_bundle(out)
    except (BundleError, DeviceBundleError) as err:
        print(f"semedge device-bundle: {err}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in written)
    formats = ", ".join(slim.formats("stage1"))
    print(f"{out}: {len(written)} files, {size / 1e6:.2f} MB (formats: {formats})")
    return 0


# ------------------------------------------------------------------------ targets


def _targets(as_json: bool) -> int:
    from edge.profiles import detect, list_profiles

    profiles = list_profiles()
    try:
        chosen = detect(profiles)
        auto, auto_reason = chosen.profile.name, chosen.reason
    except ValueError as err:
        auto, auto_reason = None, str(err)
    rows: list[dict[str, Any]] = []
    for p in profiles:
        try:
            runtime, note = p.choose_runtime()
            status = "yes" if note is None else (f"fallback: {runtime.backend} "
                                                 f"{', '.join(runtime.formats)}")
            problem = note
        except Exception as err:  # noqa: BLE001  (report any reason it cannot run)
            status, problem = "no", str(err)
        rows.append({
            "name": p.name, "description": p.description, "backend": p.runtime.backend,
            "formats": list(p.runtime.formats), "providers": list(p.runtime.providers),
            "threads": p.threads, "tile": p.tile, "stride": p.stride, "batch": p.batch,
            "stage1_threshold": p.stage1_threshold, "runs_here": status != "no",
            "status": status, "reason": problem, "auto": p.name == auto,
        })
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="semedge targets")
    for col in ("target", "backend", "formats", "providers", "threads", "tile/stride/batch",
                "runs here"):
        table.add_column(col)
    notes: list[str] = []
    for row in rows:
        status = row["status"]
        if status == "no":
            notes.append(f"[{len(notes) + 1}] {row['reason']}")
            status = f"no [{len(notes)}]"
        table.add_row(
            row["name"] + (" (auto)" if row["auto"] else ""),
            row["backend"],
            ", ".join(row["formats"]),
            ", ".join(p.replace("ExecutionProvider", "") for p in row["providers"]) or "-",
            str(row["threads"] or "all"),
            f"{row['tile'] or 'bundle'}/{row['stride'] or 'tile'}/{row['batch']}",
            status,
        )
    console = Console()
    console.print(table)
    for note in notes:
        console.print(escape(note), highlight=False)
    console.print(f"auto → {auto or 'none'}: {escape(auto_reason)}", highlight=False)
    return 0


# ----------------------------------------------------------------------- classify


def _classify(args: argparse.Namespace) -> int:
    from edge.backends import BackendUnavailable, ProviderError
    from edge.cascade import load

    inputs, problem = _classify_inputs(args)
    overlays: list[Path] | None = None
    if problem is None and args.overlay:
        overlays, problem = _plan_overlays(Path(args.overlay), inputs.files)
    if problem is not None:
        print(f"semedge: error: {problem}", file=sys.stderr)
        return 2
    try:
        cascade = load(args.bundle, target=args.target, providers=args.providers)
    except (ValueError, BackendUnavailable, ProviderError) as err:
        print(f"semedge: error: {err}", file=sys.stderr)
        return 2
    print(f"semedge: {cascade.target_reason}", file=sys.stderr)
    for note in inputs.notes:
        print(f"semedge: {note}", file=sys.stderr)
    return _run_classify(args, cascade, inputs, overlays)


def _classify_inputs(args: argparse.Namespace) -> tuple[Inputs, str | None]:
    """The files to classify, or the setup problem that stops the run before any work."""
    from edge.preprocess import pixel_limit

    paths = [*args.paths, *([str(samples_dir())] if args.samples else [])]
    if not paths:
        return Inputs(), "give image files or folders, or --samples"
    try:
        pixel_limit()
    except ValueError as err:
        return Inputs(), str(err)
    inputs = collect_inputs(paths)
    return inputs, None if inputs.files else "no image files found"


def _results(cascade: Cascade, inputs: Inputs
             ) -> Iterator[tuple[ImageResult, np.ndarray | None]]:
    """``(result, image)`` per entry of ``inputs.files``, in order: the readable ones
    through the cascade, the others as error records of their known problem."""
    from edge.results import error_result

    readable = cascade.iter_files(f for f in inputs.files if f not in inputs.problems)
    for path in inputs.files:
        if path in inputs.problems:
            yield error_result(str(path), f"{path}: {inputs.problems[path]}",
                               backend=cascade.backend), None
        else:
            yield next(readable)


def _plan_overlays(out_dir: Path, files: list[Path]) -> tuple[list[Path], str | None]:
    """One overlay path per input, in order, or the problem that refuses ``--overlay``.

    Each overlay is ``<stem>.png``; a name taken by an earlier input of the run or by a
    file already in the folder gets the next free ``<stem>-N.png`` (files there are never
    replaced; stderr says how many names were taken). An overlay name that is one of the
    inputs refuses the whole run.
    """
    problem = _overlay_folder_problem(out_dir)
    if problem is not None:
        return [], problem
    inputs = {os.path.realpath(f) for f in files}
    for f in files:
        target = out_dir / f"{f.stem}.png"
        if os.path.realpath(target) in inputs:
            return [], (f"--overlay {out_dir} would overwrite the input {target}; "
                        "choose a folder that holds no input image")
    plan, used, taken = [], set(), []
    for f in files:
        name, n = f.stem, 0
        while name in used or (out_dir / f"{name}.png").exists():
            n += 1
            name = f"{f.stem}-{n}"
        if (out_dir / f"{f.stem}.png").exists():
            taken.append(out_dir / f"{f.stem}.png")
        used.add(name)
        plan.append(out_dir / f"{name}.png")
    if taken:
        print(f"semedge: --overlay {out_dir}: {len(taken)} overlay names are taken by files "
              f"already there, which are kept; those overlays get a -N suffix "
              f"(first: {taken[0].name})", file=sys.stderr)
    return plan, None


def _overlay_folder_problem(out_dir: Path) -> str | None:
    """Why ``out_dir`` cannot take overlays (not a folder, not writable), or None."""
    if out_dir.exists() and not out_dir.is_dir():
        return f"--overlay {out_dir}: exists and is not a folder"
    existing = out_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"--overlay {out_dir}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--overlay {out_dir}: no permission to write in {existing}"
    return None


def _run_classify(args: argparse.Namespace, cascade: Cascade, inputs: Inputs,
                  overlays: list[Path] | None) -> int:
    """Classify ``inputs``, print JSON lines or a table, write overlays; the exit status."""
    files = inputs.files
    progress = None
    if not args.no_progress and len(files) > 1 and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True)
    failed = 0
    counts: Counter[str] = Counter()
    table_rows: list[ImageResult] = []
    task = progress.add_task("classifying", total=len(files)) if progress else None
    if progress:
        progress.start()
    try:
        for k, (result, image) in enumerate(_results(cascade, inputs)):
            if progress and task is not None:
                progress.advance(task)
            if not result.ok:
                failed += 1
            else:
                counts[result.label] += 1
                if overlays is not None and image is not None:
                    failed += not _write_overlay(image, result, overlays[k])
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            else:
                table_rows.append(result)
    finally:
        if progress:
            progress.stop()
    if not args.json:
        _print_table(table_rows, counts, failed)
    return 1 if failed else 0


def _write_overlay(image: np.ndarray, result: ImageResult, path: Path) -> bool:
    """Write one overlay without replacing any file; False (and a line on stderr) if it
    cannot be written."""
    from edge.overlay import write_overlay

    target = path
    for n in range(1, 10_000):
        try:
            write_overlay(image, result, target, replace=False)
            return True
        except FileExistsError:  # appeared since the run began: take the next free name
            target = path.with_name(f"{path.stem}-{n}.png")
        except OSError as err:
            print(f"semedge: error: {result.path}: cannot write the overlay {target}: "
                  f"{err.strerror or err}", file=sys.stderr)
            return False
    print(f"semedge: error: {result.path}: no free overlay name beside {path}", file=sys.stderr)
    return False


def sample_truths() -> dict[str, str]:
    """``{absolute path of a shipped sample: its ground truth}`` from ``samples.json``: the
    class of a tile, ``normal`` for a field without defects, else its defects' labels."""
    import json

    folder = samples_dir()
    try:
        images = json.loads((folder / "samples.json").read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError):
        return {}
    truths = {}
    for name, truth in images.items():
        if truth.get("label") == "field":
            labels = sorted({d["label"] for d in truth.get("defects", [])})
            truth_text = ", ".join(labels) if labels else "normal"
        else:
            truth_text = str(truth.get("label"))
        truths[os.path.abspath(folder / name)] = truth_text
    return truths


def _short_path(path: str | None) -> str:
    """A shipped sample's file name; else the path relative to the working folder when
    that is shorter (table display only)."""
    text = str(path)
    if os.path.dirname(os.path.abspath(text)) == str(samples_dir().resolve()):
        return os.path.basename(text)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive (Windows)
        return text
    return rel if len(rel) < len(text) else text


def _print_table(results: list[ImageResult], counts: Counter[str], failed: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from edge.classes import CLASSES, UNKNOWN

    known = sample_truths()
    truths = [known.get(os.path.abspath(str(r.path))) for r in results]
    with_truth = any(t is not None for t in truths)
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)  # fits 80 columns
    columns = (("file", "left"), *((("truth", "left"),) if with_truth else ()),
               ("label", "left"), ("score", "right"), ("flagged", "right"), ("ms", "right"))
    names = [_short_path(r.path) for r in results]
    # whole file names up to 32 characters; longer paths fold across lines
    name_width = min(32, max((len(n) for n in names), default=4))
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold" if col == "file" else "ellipsis",
                         min_width=name_width if col == "file" else None)
    for r, name, truth in zip(results, names, truths):
        first = [escape(name), *([escape(truth or "")] if with_truth else [])]
        if not r.ok:
            table.add_row(*first, f"[red]error[/red]: {escape(r.error or '')}", "", "", "")
            continue
        label = r.label
        if r.warning is not None:  # the JSON has it all; the table its first words
            label += f" [yellow]({escape(r.warning.split(':')[0])})[/yellow]"
        table.add_row(*first, label, f"{r.score:.3f}", f"{r.stage2_count}/{len(r.tile_labels)}",
                      f"{r.timings_ms.get('total', 0.0):.1f}")
    console = Console()
    console.print(table)
    parts = [f"{c}: {counts[c]}" for c in (*CLASSES, UNKNOWN) if counts[c]]
    if failed:
        parts.append(f"errors: {failed}")
    console.print(f"{len(results)} images — " + (", ".join(parts) or "none classified"))
