"""The `bga-mner` console entry point.

Each subcommand lives in the package that owns it and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``. They are imported lazily so that
``bga-mner --help`` and the worker's subcommands never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module implementing it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("bga_mner.stack.command", "start/stop/inspect the local Kafka broker, Redis and Triton"),
    "worker": ("worker.command", "run the streaming worker: Kafka -> Triton -> Redis"),
    "tag": ("worker.tag_command", "tag posts from a file or stdin in-process (no Kafka, Triton or Redis)"),
    "train": ("training.train_command", "train BGA-MNER (or a baseline) from a YAML config"),
    "evaluate": ("training.evaluate_command", "score a checkpoint: entity-level micro P/R/F1 and per type"),
    "export": ("training.export.command", "export a checkpoint as a Triton model repository"),
    "demo": ("bga_mner.demo", "end-to-end demo: train (or reuse), export, start the stack, stream, show"),
}


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bga-mner",
        description="Named entities from a live social-media stream with BGA-MNER on Triton.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        _load(name).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _load(args.command).run(args)


if __name__ == "__main__":
    sys.exit(main())
