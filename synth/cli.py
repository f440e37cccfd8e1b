"""``semedge synth`` and ``semedge synth-merge``: write a synthetic SEM defect dataset, whole
or in shards, and join the shards (wired into edge/cli.py by ``edge._workstation``)."""

from __future__ import annotations

import argparse
import sys
import time

from synth.recipe import BUILTIN
from synth.shards import parse_shard


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


def run(args: argparse.Namespace) -> int:
    """Run ``semedge synth``; returns the exit code (2 on bad arguments)."""
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
