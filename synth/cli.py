"""``semedge synth``: write a synthetic SEM defect dataset (wired into edge/cli.py by the lead)."""

from __future__ import annotations

import argparse
import sys
import time

from synth.recipe import BUILTIN


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


def run(args: argparse.Namespace) -> int:
    """Run ``semedge synth``; returns the exit code (2 on bad arguments)."""
    from synth.dataset import tune_malloc, write_dataset
    from synth.recipe import load_recipe

    tune_malloc()  # this process only renders: keep its freed heap for reuse

    try:
        recipe = load_recipe(args.recipe)
        t0 = time.perf_counter()
        manifest = write_dataset(
            args.out, per_class=args.per_class, seed=args.seed, recipe=recipe, size=args.size,
            fields=args.fields, workers=args.workers, sheet=args.sheet, overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"semedge synth: error: {exc}", file=sys.stderr)
        return 2
    n = args.per_class * len(recipe.labels)
    dt = time.perf_counter() - t0
    print(f"wrote {n} images ({len(recipe.labels)} labels) and {args.fields} fields to {args.out} "
          f"in {dt:.1f} s ({n / max(dt, 1e-9):.0f} images/s); manifest {manifest}; "
          f"recipe {recipe.name} {recipe.hash[:12]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m synth ...``."""
    parser = argparse.ArgumentParser(prog="python -m synth", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
