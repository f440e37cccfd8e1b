"""``semedge synth``, ``semedge synth-merge`` and ``semedge synth-train``: write a synthetic
SEM defect dataset (procedural, whole or in shards, or sampled from a diffusion model), join
the shards, train a diffusion model (wired into edge/cli.py by ``edge._workstation``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from synth.recipe import BUILTIN
from synth.shards import parse_shard

ENGINES = ("procedural", "diffusion")
DIFFUSION_ONLY = ("model", "guidance", "steps", "sampler", "batch", "threads")
NEEDS = "needs torch and diffusers; install them with: pip install 'semedge[train]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` options to ``parser``."""
    parser.add_argument("--out", required=True, help="output folder (ImageFolder layout)")
    parser.add_argument("--per-class", type=int, required=True, help="images per label")
    parser.add_argument("--seed", type=int, required=True, help="run seed; with the recipe it fixes every pixel")
    parser.add_argument("--recipe", default="default",
                        help=f"built-in recipe ({'|'.join(BUILTIN)}) or a TOML file")
    parser.add_argument("--size", type=int, default=None, help="image size in px (default: the recipe's, 224)")
    parser.add_argument("--fields", type=int, default=0, help="also write K large fields to OUT/fields/")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (output is identical for any W)")
    parser.add_argument("--sheet", action="store_true", help="write OUT/sheet.png, one row per label")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty OUT")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="render only shard K of N (0 <= K < N) of the run; join the N "
                             "shards with 'semedge synth-merge' (docs/synth.md)")
    parser.add_argument("--engine", choices=ENGINES, default="procedural",
                        help="procedural renderer (default) or a trained diffusion model")
    diff = parser.add_argument_group("diffusion engine (--engine diffusion)")
    diff.add_argument("--model", default=None, metavar="MODEL_DIR",
                      help="model folder written by 'semedge synth-train'")
    diff.add_argument("--guidance", type=float, default=None,
                      help="classifier-free guidance scale (default 2.0; 1 = none)")
    diff.add_argument("--steps", type=int, default=None, help="sampler steps (default 20)")
    diff.add_argument("--sampler", choices=("dpm", "ddim"), default=None,
                      help="DDIM (default) or DPM-Solver++ 2M")
    diff.add_argument("--batch", type=int, default=None,
                      help="images per network call (default 16)")
    diff.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    """Run ``semedge synth``; returns the exit code (2 on bad arguments)."""
    if getattr(args, "engine", "procedural") == "diffusion":
        return run_diffusion(args)
    given = [f"--{n}" for n in DIFFUSION_ONLY if getattr(args, n, None) is not None]
    if given:
        print(f"semedge synth: error: {', '.join(given)} only apply to --engine diffusion",
              file=sys.stderr)
        return 2
    from synth.dataset import tune_malloc, write_dataset
    from synth.recipe import load_recipe

    tune_malloc()  # this process only renders: keep its freed heap for reuse

    try:
        shard = parse_shard(args.shard) if args.shard is not None else None
        recipe = load_recipe(args.recipe)
        t0 = time.perf_counter()
        manifest = write_dataset(
            args.out, per_class=args.per_class, seed=args.seed, recipe=recipe, size=args.size,
            fields=args.fields, workers=args.workers, sheet=args.sheet, overwrite=args.overwrite,
            progress=not args.no_progress, shard=shard,
        )
    except ValueError as exc:
        print(f"semedge synth: error: {exc}", file=sys.stderr)
        return 2
    n, nf = args.per_class * len(recipe.labels), args.fields
    if shard is not None:
        n, nf = len(range(shard[0], n, shard[1])), len(range(shard[0], nf, shard[1]))
    dt = time.perf_counter() - t0
    part = f"shard {shard[0]} of {shard[1]}: " if shard is not None else ""
    print(f"{part}wrote {n} images ({len(recipe.labels)} labels) and {nf} fields to {args.out} "
          f"in {dt:.1f} s ({n / max(dt, 1e-9):.0f} images/s); manifest {manifest}; "
          f"recipe {recipe.name} {recipe.hash[:12]}")
    return 0


def run_diffusion(args: argparse.Namespace) -> int:
    """``semedge synth --engine diffusion``: sample a model folder; exit 2 on bad arguments
    or a model folder that fails its checks."""
    bad = [opt for opt, on in (("--recipe", args.recipe != "default"), ("--fields", args.fields),
                               ("--workers", args.workers != 1), ("--shard", args.shard))
           if on]
    if args.model is None or bad:
        why = (f"{', '.join(bad)} only apply to --engine procedural" if bad
               else "--engine diffusion needs --model MODEL_DIR")
        print(f"semedge synth: error: {why}", file=sys.stderr)
        return 2
    try:
        from synth.diffusion.writer import write_dataset
    except ImportError as err:
        print(f"semedge synth: --engine diffusion {NEEDS} (missing: {err.name or err})",
              file=sys.stderr)
        return 2
    steps = 20 if args.steps is None else args.steps
    guidance = 2.0 if args.guidance is None else args.guidance
    try:
        _set_threads(args.threads)
        res = write_dataset(args.model, args.out, args.per_class, args.seed, steps=steps,
                            guidance=guidance, sampler=args.sampler or "ddim",
                            size=args.size or 224, batch=args.batch or 16,
                            overwrite=args.overwrite, sheet=args.sheet,
                            progress=not args.no_progress)
    except ValueError as exc:
        print(f"semedge synth: error: {exc}", file=sys.stderr)
        return 2
    if res.skipped:
        print(f"semedge synth: no images of {', '.join(res.skipped)}: the model was trained "
              "on none", file=sys.stderr)
    print(f"wrote {res.images} images ({len(res.labels)} labels) to {args.out} in "
          f"{res.seconds:.1f} s ({res.images / max(res.seconds, 1e-9):.2f} images/s, sampling "
          f"and writing); manifest {res.manifest}; diffusion model {args.model}, "
          f"{steps} steps, guidance {guidance:g}")
    return 0


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth-train`` options to ``parser``."""
    parser.add_argument("--engine", choices=("diffusion",), default="diffusion",
                        help="the engine to train (diffusion)")
    parser.add_argument("--data", required=True, help="training ImageFolder (label folders)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="model folder; training continues when it already holds a model")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="wall-clock budget of this run (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    parser.add_argument("--batch", type=int, default=32, help="tiles per step (default 32)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps of this run, even within the budget")
    parser.add_argument("--resolution", type=int, default=None,
                        help="a new model's tile size in px (default 64)")
    parser.add_argument("--channels", default=None, metavar="C1,C2,...",
                        help="a new model's channels per UNet level (default 32,64,128)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_train(args: argparse.Namespace) -> int:
    """Run ``semedge synth-train``: exit 2 on bad arguments, data or model folder; 130 when
    interrupted (the folder is saved and the same command resumes it)."""
    try:
        from synth.diffusion.train import Settings, train
        _set_threads(args.threads)
    except ImportError as err:
        print(f"semedge synth-train: {NEEDS} (missing: {err.name or err})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"semedge synth-train: error: {exc}", file=sys.stderr)
        return 2
    try:
        res = train(args.data, args.out, minutes=args.minutes, seed=args.seed,
                    settings=Settings(batch=args.batch), max_steps=args.max_steps,
                    arch=_architecture(args.resolution, args.channels),
                    progress=not args.no_progress)
    except ValueError as exc:
        print(f"semedge synth-train: error: {exc}", file=sys.stderr)
        return 2
    loss = f"{res.loss:.4f}" if res.loss is not None else "n/a"
    print(f"{'resumed and ' if res.resumed else ''}trained {res.steps_this_run} steps in "
          f"{res.seconds / 60:.1f} min ({res.steps_trained} in all; loss {loss}); "
          f"model {res.folder}")
    return 130 if res.interrupted else 0


def _architecture(resolution: int | None, channels: str | None) -> Any:
    """The ``Architecture`` the options ask for; None when neither is given."""
    from synth.diffusion.config import Architecture

    if resolution is None and channels is None:
        return None
    base = Architecture()
    try:
        chans = (tuple(int(c) for c in channels.split(",")) if channels is not None
                 else base.block_out_channels)
    except ValueError:
        raise ValueError(f"--channels must be integers separated by commas, got {channels!r}"
                         ) from None
    return Architecture(resolution=base.resolution if resolution is None else resolution,
                        block_out_channels=chans)


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth-merge`` options to ``parser``."""
    parser.add_argument("--out", required=True, help="folder of the merged run (may be the "
                        "folder the shards share)")
    parser.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR",
                        help="folders holding the shards (OUT/shards/shard-K-of-N.*)")
    parser.add_argument("--sheet", action="store_true", help="write OUT/sheet.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty OUT that is no shard folder, or a second merge")


def run_merge(args: argparse.Namespace) -> int:
    """Run ``semedge synth-merge``; exit 2 when the shards do not make one whole run."""
    from synth.shards import merge_shards

    try:
        manifest = merge_shards(args.out, args.shard_dirs, sheet=args.sheet,
                                overwrite=args.overwrite)
    except ValueError as exc:
        print(f"semedge synth-merge: error: {exc}", file=sys.stderr)
        return 2
    with open(manifest) as fh:
        n = sum(1 for _ in fh)
    print(f"merged {n} images into {args.out}; manifest {manifest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m synth ...``."""
    parser = argparse.ArgumentParser(prog="python -m synth", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
