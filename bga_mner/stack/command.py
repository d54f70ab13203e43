"""`bga-mner stack up|down|status`: the local stack for humans (the demo and tests use `LocalStack`)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bga_mner.stack.local import SERVICE_NAMES, LocalStack, parse_only
from bga_mner.stack.service import StackError
from bga_mner.stack.state import STATE_DIR_ENV, default_state_dir
from bga_mner.stack.triton import MODEL_CONTROL_MODES, ModelControl

ENV_FILE = "env"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"), help="start, stop or inspect the stack")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where pids, ports and logs are kept (default: ${STATE_DIR_ENV} or .stack)",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="Triton model repository (default: an empty one in the state directory)",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SERVICE_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--model-control",
        choices=MODEL_CONTROL_MODES,
        default="explicit",
        help="Triton model control: explicit loads every model at start and allows load/unload (default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds each service may take to be ready"
    )


def _print_exports(env: dict[str, str]) -> None:
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


def _up(stack: LocalStack, args: argparse.Namespace) -> int:
    model_control: ModelControl = args.model_control
    began = time.monotonic()
    result = stack.up(
        only=parse_only(args.only), model_repository=args.model_repository, model_control=model_control
    )
    elapsed = time.monotonic() - began
    for name, record in result.state.services.items():
        how = f"started in {result.seconds[name]:.1f} s" if name in result.started else "already running"
        print(f"# {name:<7} pid {record.pid:<8} {how:<18} log {record.log}", file=sys.stderr)
    print(f"# stack up in {elapsed:.1f} s; state in {stack.state_dir}", file=sys.stderr)
    env = stack.environment()
    (stack.state_dir / ENV_FILE).write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()), encoding="utf-8"
    )
    _print_exports(env)
    return 0


def _status(stack: LocalStack) -> int:
    statuses = stack.status()
    if not statuses:
        print(f"no stack recorded in {stack.state_dir}")
        return 1
    for name, status in statuses.items():
        record = status.record
        alive = "alive" if status.alive else "DEAD"
        endpoints = " ".join(f"{k}={v}" for k, v in record.endpoints.items() if "__" not in k)
        print(f"{name:<7} pid {record.pid:<8} {alive:<6} {endpoints}  log {record.log}")
        for key, value in record.settings.items():
            print(f"{'':<7} {key}: {value}")
    return 0 if all(s.alive for s in statuses.values()) else 1


def _down(stack: LocalStack) -> int:
    stopped = stack.down()
    (stack.state_dir / ENV_FILE).unlink(missing_ok=True)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {stack.state_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir if args.state_dir is not None else default_state_dir()
    stack = LocalStack(state_dir, ready_timeout=args.timeout)
    try:
        if args.action == "up":
            return _up(stack, args)
        if args.action == "status":
            return _status(stack)
        return _down(stack)
    except StackError as exc:
        print(f"bga-mner stack {args.action}: {exc}", file=sys.stderr)
        return 2
