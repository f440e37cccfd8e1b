"""``python -m training ARGS`` runs ``semedge train ARGS``; data-parallel under torchrun:
``torchrun --nproc-per-node 2 -m training --data DIR --out BUNDLE ...`` (docs/training.md)."""

import sys

from edge._workstation import run

sys.exit(run("train", sys.argv[1:]))
