"""Write the dev-set scorecard (JSON + PNGs + the terminal tables) into a folder.

    python benchmarks/real_dev_scorecard.py OUT_DIR [--bundle DIR] [--target T]
                                            [--data DIR] [--worst N]

It is ``semedge eval`` on ``../shared/data/sem-real-dev`` (752 real SEM crops, read at
run time, evaluation only) and writes

    OUT_DIR/scorecard.json       every number and every prediction (docs/eval.md)
    OUT_DIR/scorecard.txt        the tables as printed
    OUT_DIR/confusion.png        image-level confusion matrix
    OUT_DIR/worst_mistakes.png   contact sheet of the worst mistakes

so that every change to the models can be measured the same way. The bundle defaults
to the one shipped in the package (``edge/models/default``). Exit status: that of
``semedge eval``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "data" / "sem-real-dev"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--bundle", default=None, help="bundle folder (default: shipped)")
    parser.add_argument("--target", default="auto", help="target profile (default: auto)")
    parser.add_argument("--data", type=Path, default=DEV_SET,
                        help=f"labelled folder (default: {DEV_SET})")
    parser.add_argument("--worst", default="24", help="mistakes on the contact sheet")
    args = parser.parse_args(argv)

    from edge.cli import main as semedge

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COLUMNS", "120")  # tables into a file: wide enough not to wrap
    cmd = ["eval", "--data", str(args.data), "--target", args.target,
           "--json", str(args.out / "scorecard.json"), "--plots", str(args.out),
           "--worst", args.worst, "--no-progress"]
    if args.bundle:
        cmd += ["--bundle", args.bundle]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = semedge(cmd)
    text = buffer.getvalue()
    sys.stdout.write(text)
    (args.out / "scorecard.txt").write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
