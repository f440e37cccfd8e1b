"""The one way from ``edge`` into the workstation packages ``synth`` and ``training``.

The CLI's workstation subcommands are delegated here, and ``semedge bench`` renders its
evaluation set here (:func:`render_labelled`). Both import the workstation package only
when they run: ``import edge.cli`` or ``import edge.bench.runner`` imports neither it
nor torch, and a board without them runs everything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["COMMANDS", "WorkstationUnavailable", "add_subparsers", "render_labelled", "run"]


@dataclass(frozen=True)
class Command:
    """A delegated subcommand: where its parser builder and runner live."""

    module: str
    add_arguments: str
    run: str
    help: str
    extra: str = "train"


COMMANDS: dict[str, Command] = {
    "synth": Command("synth.cli", "add_arguments", "run", "generate synthetic SEM images"),
    "synth-merge": Command("synth.cli", "add_merge_arguments", "run_merge",
                           "join the shards of a 'semedge synth --shard K/N' run"),
    "synth-train": Command("synth.cli", "add_train_arguments", "run_train",
                           "train a synthesis model (--engine diffusion)"),
    "train": Command("training.cli", "add_train_arguments", "run_train",
                     "train the stage-1 and stage-2 models"),
    "export": Command("training.cli", "add_export_arguments", "run_export",
                      "export trained models as a bundle (ONNX, int8, TFLite)"),
    "data": Command("training.cli", "add_data_arguments", "run_data",
                    "write a public data set (ELPV) as an ImageFolder"),
}


def add_subparsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the workstation subcommands for ``semedge --help`` (their own options
    are parsed by the delegated module, see :func:`run`)."""
    for name, cmd in COMMANDS.items():
        p = subparsers.add_parser(name, help=f"{cmd.help} (workstation; needs "
                                  f"semedge[{cmd.extra}])", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(name: str, argv: Sequence[str]) -> int:
    """Import the module behind subcommand ``name``, build its parser, parse ``argv``
    and run it. A missing module or dependency prints the extra to install; exit 2."""
    cmd = COMMANDS[name]
    try:
        module = importlib.import_module(cmd.module)
        add_arguments = getattr(module, cmd.add_arguments)
        runner = getattr(module, cmd.run)
    except ImportError as err:
        print(f"semedge {name}: {_unavailable_reason(cmd, err)}", file=sys.stderr)
        return 2
    except AttributeError as err:
        print(f"semedge {name}: {cmd.module} does not provide it yet ({err})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"semedge {name}", description=cmd.help)
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    result = runner(args)
    return int(result or 0)


def _unavailable_reason(cmd: Command, err: ImportError) -> str:
    """Why a workstation command cannot run here, and what to install."""
    from edge._flavour import FLAVOUR

    if FLAVOUR == "device":
        return ("not part of the device build of semedge (the runtime and int8 models "
                "only); run it on a workstation with the full build: "
                f"pip install 'semedge[{cmd.extra}]' from the source tree (docs/arm.md)")
    missing = getattr(err, "name", None) or str(err)
    return (f"needs the workstation extra (missing: {missing}); install it with: "
            f"pip install 'semedge[{cmd.extra}]'")


class WorkstationUnavailable(ImportError):
    """A workstation package is not installed here; the message names the extra."""


def render_labelled(labels: Sequence[str], *, recipe: str, per_class: int, seed: int,
                    size: int) -> tuple[list[np.ndarray], list[str], dict[str, Any]]:
    """Render ``per_class`` images of each label with ``synth`` (deterministic).

    Returns the images, their labels (in the order rendered) and the source:
    ``{"generator": "synth", "recipe": name, "recipe_hash": hash}``.

    Raises
    ------
    WorkstationUnavailable
        ``synth`` or one of its dependencies is not installed.
    """
    try:
        synth = importlib.import_module("synth")
    except ImportError as err:
        raise WorkstationUnavailable(
            f"the synth generator is not installed ({err}); install the workstation extra: "
            "pip install 'semedge[train]'") from None
    rec = synth.load_recipe(recipe)
    images, names = [], []
    for image, record in synth.generate(rec, per_class=per_class, seed=seed, size=size,
                                        labels=labels):
        images.append(image)
        names.append(record.label)
    return images, names, {"generator": "synth", "recipe": rec.name, "recipe_hash": rec.hash}
