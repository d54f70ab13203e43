"""Placeholder: filled in by its issue."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    raise SystemExit(f"bga-mner {args.command}: not implemented yet")
