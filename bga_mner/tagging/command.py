"""`bga-mner tag [FILE|-]`: tag posts in-process with ONNX Runtime; no Kafka, Triton or Redis.

The same ``Tagger`` as the streaming worker, over the same exported model repository, so what this
prints is what the worker writes to Redis. Input: JSON Lines posts (``{"id", "text", ...}``, the
worker's input contract) or plain text lines (id = line number); a line whose first non-blank
character is ``{`` is JSON. Blank lines are skipped. Bad lines are reported on stderr with their
line number and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, TextIO

from bga_mner.errors import ConfigurationError
from bga_mner.posts import InvalidPost, LimitSettings, Post, parse_post

# Posts read before tagging (the window requests are length-sorted across: less padding) and windows per
# model request; the worker's defaults (BGA_BATCHING__MAX_BATCH_SIZE, BGA_BATCHING__REQUEST_SIZE).
DEFAULT_BATCH_SIZE = 256
DEFAULT_REQUEST_SIZE = 32
# The worker's default limits, so `tag` accepts exactly what the worker accepts.
DEFAULT_LIMITS = LimitSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", default="-", help="JSONL posts or text lines; '-' = stdin (default)"
    )
    parser.add_argument(
        "--model-repository", type=Path, required=True, help="an exported model repository (bga-mner export)"
    )
    parser.add_argument("--model-name", default="bga_mner", help="model folder inside the repository")
    parser.add_argument(
        "--model-version", type=int, default=None, help="version folder (default: the newest)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="posts tagged together (length-sorted)"
    )
    parser.add_argument(
        "--request-size", type=int, default=DEFAULT_REQUEST_SIZE, help="windows per model request"
    )
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")


class _Writer(Protocol):
    def write(self, text: str, /) -> int: ...


def read_posts(lines: Iterable[str], errors: _Writer) -> Iterator[tuple[int, Post]]:
    """(line number, post) for every usable line; unusable ones are reported to ``errors``."""
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                yield number, parse_post(stripped.encode(), DEFAULT_LIMITS)
            except InvalidPost as exc:
                errors.write(f"line {number}: {exc.reason}: {exc.detail}\n")
            continue
        text = line.rstrip("\r\n")
        if len(text) > DEFAULT_LIMITS.max_text_chars:
            errors.write(f"line {number}: oversize: {len(text)} characters\n")
            continue
        yield number, Post(id=str(number), text=text)


def run(args: argparse.Namespace) -> int:
    from bga_mner.inference.onnx_local import OnnxBackend
    from bga_mner.model_repository import open_repository
    from bga_mner.tagging import PostError, Tagger, entity_to_dict

    if args.batch_size < 1 or args.request_size < 1:
        raise ConfigurationError("--batch-size and --request-size must be >= 1")
    repository = open_repository(args.model_repository, args.model_name, args.model_version)
    backend = OnnxBackend(repository.version_dir / "model.onnx", threads=args.threads)
    tagger = Tagger(repository, backend, max_batch_size=args.request_size)

    failed = False
    stream: TextIO = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    counting = _CountingErrors(sys.stderr)
    try:
        batch: list[tuple[int, Post]] = []

        def flush() -> bool:
            ok = True
            for (number, _), result in zip(batch, tagger.tag_with_errors([p for _, p in batch]), strict=True):
                if isinstance(result, PostError):
                    sys.stderr.write(f"line {number}: {result.reason}: {result.detail}\n")
                    ok = False
                    continue
                entities = [entity_to_dict(e) for e in result.entities]
                sys.stdout.write(
                    json.dumps({"id": result.post_id, "entities": entities}, ensure_ascii=False) + "\n"
                )
            sys.stdout.flush()
            batch.clear()
            return ok

        for item in read_posts(stream, counting):
            batch.append(item)
            if len(batch) >= args.batch_size:
                failed |= not flush()
        failed |= not flush()
    finally:
        if stream is not sys.stdin:
            stream.close()
    return 1 if failed or counting.count else 0


class _CountingErrors:
    """stderr that remembers whether anything was reported, for the exit code."""

    def __init__(self, target: _Writer) -> None:
        self._target = target
        self.count = 0

    def write(self, text: str) -> int:
        self.count += 1
        return self._target.write(text)
