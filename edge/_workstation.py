"""The CLI's workstation subcommands, delegated lazily to ``synth`` and ``training``.

This is the only place where ``edge`` reaches the workstation packages, and only when
one of these subcommands runs: ``import edge.cli`` imports neither them nor torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "add_subparsers", "run"]


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
    "train": Command("training.cli", "add_train_arguments", "run_train",
                     "train the stage-1 and stage-2 models"),
    "export": Command("training.cli", "add_export_arguments", "run_export",
                      "export trained models as a bundle (ONNX, int8, TFLite)"),
    "data": Command("training.cli", "add_data_arguments", "run_data",
                    "write a public data set (ELPV) as an ImageFolder"),
}


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
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
        missing = getattr(err, "name", None) or str(err)
        print(f"semedge {name}: needs the workstation extra (missing: {missing}); install it "
              f"with: pip install 'semedge[{cmd.extra}]'", file=sys.stderr)
        return 2
    except AttributeError as err:
        print(f"semedge {name}: {cmd.module} does not provide it yet ({err})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"semedge {name}", description=cmd.help)
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    result = runner(args)
    return int(result or 0)
