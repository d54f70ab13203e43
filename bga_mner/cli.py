"""The `bga-mner` console entry point.

Each subcommand lives in the package that owns it and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``. They are imported by name so that the core
never imports the worker or training packages, and each command module imports its heavy
dependencies inside ``run``: ``bga-mner --help`` and the worker never import torch.

Errors reach the terminal as one line and a non-zero exit code, never a traceback: a
``BgaMnerError`` exits with its own code (2 for configuration errors), a missing optional
dependency names the extra to install (exit 2), anything else exits 1. ``--debug`` (or
``BGA_LOG_LEVEL=DEBUG``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from bga_mner.errors import EXIT_FAILURE, BgaMnerError, MissingExtra

EXIT_INTERRUPTED = 130


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True)
class CommandSpec:
    module: str  # implements add_arguments and run
    help: str
    extra: str  # the optional-dependency group its run() needs (pyproject.toml)


COMMANDS: dict[str, CommandSpec] = {
    "stack": CommandSpec(
        "bga_mner.stack.command", "start/stop/inspect the local Kafka broker, Redis and Triton", "stack"
    ),
    "worker": CommandSpec("worker.command", "run the streaming worker: Kafka -> Triton -> Redis", "worker"),
    "tag": CommandSpec(
        "bga_mner.tagging.command",
        "tag posts from a file or stdin in-process (no Kafka, Triton or Redis)",
        "worker",
    ),
    "train": CommandSpec(
        "training.train_command", "train BGA-MNER (or a baseline) from a YAML config", "training"
    ),
    "evaluate": CommandSpec(
        "training.evaluate_command",
        "score a checkpoint: entity-level micro P/R/F1 and per type",
        "training",
    ),
    "export": CommandSpec(
        "training.export.command", "export a checkpoint as a Triton model repository", "training"
    ),
    "demo": CommandSpec(
        "bga_mner.demo",
        "end-to-end demo: train (or reuse), export, start the stack, stream, show",
        "all",
    ),
}

# Top-level modules of this distribution: a ModuleNotFoundError naming one of them is a bug, not an extra.
_OWN_MODULES = frozenset({"bga_mner", "worker", "training", "model_repo"})


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name].module))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bga-mner",
        description="Named entities from a live social-media stream with BGA-MNER on Triton.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also BGA_LOG_LEVEL=DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, spec in COMMANDS.items():
        command_parser = sub.add_parser(name, help=spec.help, description=spec.help)
        _load(name).add_arguments(command_parser)
    return parser


def one_line(error: BaseException) -> str:
    """An error's message on one line (multi-line messages list their items after a colon)."""
    parts = [part.strip() for part in str(error).splitlines() if part.strip()]
    return " ".join(parts) if parts else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(args.debug) or os.environ.get("BGA_LOG_LEVEL", "").upper() == "DEBUG"
    command = str(args.command)
    try:
        return _load(command).run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            raise
        error = _as_missing_extra(command, error)
        print(f"bga-mner {command}: {_describe(error)}", file=sys.stderr)
        return error.exit_code if isinstance(error, BgaMnerError) else EXIT_FAILURE


def _as_missing_extra(command: str, error: Exception) -> Exception:
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.split(".")[0]
        if top not in _OWN_MODULES:
            return MissingExtra(command, COMMANDS[command].extra, top)
    return error


def _describe(error: Exception) -> str:
    if isinstance(error, BgaMnerError | OSError):
        return one_line(error)
    return f"unexpected error: {type(error).__name__}: {one_line(error)} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
