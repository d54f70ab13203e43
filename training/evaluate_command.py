"""`bga-mner evaluate`: score a checkpoint on a split with seqeval's entity-level micro P/R/F1."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="checkpoint directory written by train"
    )
    parser.add_argument("--split", choices=["train", "dev", "test"], default="test")
    parser.add_argument(
        "--dataset",
        choices=["twitter2015", "twitter2017", "wnut16", "wnut17"],
        help="data set to score (default: the one the checkpoint was trained on)",
    )
    parser.add_argument(
        "--case",
        nargs="+",
        choices=["original", "lower", "upper", "title"],
        default=["original"],
        help="score case-transformed copies of the split too (robustness to how people type); "
        "one JSON per case, the original's as before",
    )
    parser.add_argument("--data-dir", type=Path, help="default: BGA_DATA_DIR or ../shared/data")
    parser.add_argument("--use-image", action="store_true", help="image-aware inference (needs --image-dir)")
    parser.add_argument("--image-dir", type=Path, help="folder of <IMGID>.jpg files")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the scores (default <checkpoint>/eval-<dataset>-<split>.json)",
    )


def run(args: argparse.Namespace) -> int:
    import torch
    from tokenizers import Tokenizer

    from bga_mner.paths import data_dir
    from bga_mner.preprocessing import SubwordEncoder
    from training.checkpoint import TOKENIZER_FILE, load_model
    from training.data.case_variants import recase_all
    from training.data.conll import read_split
    from training.data.dataset import Collator, encode_sentences
    from training.data.images import image_loader
    from training.evaluation.predict import predict_tags
    from training.evaluation.scores import score_tags
    from training.trainer import resolve_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.use_image and args.image_dir is None:
        raise SystemExit("--use-image needs --image-dir (tweet images are not shipped with the data)")
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    model, state = load_model(args.checkpoint, device)
    train_config = state.train_config
    dataset = args.dataset or train_config.data.dataset
    root = args.data_dir or train_config.data.data_dir or data_dir()
    if root is None:
        raise SystemExit("no data directory: pass --data-dir or set BGA_DATA_DIR")
    tokenizer = Tokenizer.from_file(str(args.checkpoint / TOKENIZER_FILE))
    encoder = SubwordEncoder(
        tokenizer, max_length=train_config.data.max_length, stride=train_config.data.stride
    )
    original = read_split(Path(root), dataset, args.split)
    images = image_loader(args.image_dir, train_config.model.image_encoder) if args.use_image else None
    collator = Collator(encoder.pad_id, images)
    mode = "image-aware" if args.use_image else "text-only"
    suffix = "-image" if args.use_image else ""
    summary: dict[str, float] = {}
    for case in args.case:
        sentences = original if case == "original" else recase_all(original, case)
        predicted = predict_tags(
            model,
            sentences,
            encode_sentences(sentences, encoder),
            collator,
            batch_size=args.batch_size,
            device=device,
            use_image=args.use_image,
        )
        scores = score_tags([sentence.labels for sentence in sentences], predicted)
        summary[case] = scores.f1
        label = "" if case == "original" else f", {case}cased"
        print(f"{dataset} {args.split}{label} ({mode}), {len(sentences)} sentences, {args.checkpoint}")
        print(scores.table())
        case_suffix = "" if case == "original" else f"-{case}"
        out = args.json if args.json is not None and len(args.case) == 1 else None
        out = out or args.checkpoint / f"eval-{dataset}-{args.split}{case_suffix}{suffix}.json"
        payload = {
            "dataset": dataset,
            "split": args.split,
            "case": case,
            "mode": mode,
            "checkpoint": str(args.checkpoint),
        }
        out.write_text(json.dumps({**payload, **scores.to_dict()}, indent=2), encoding="utf-8")
        print(f"wrote {out}")
    if images is not None:
        images.log_summary(f"{dataset} {args.split}")
    if len(summary) > 1 and "original" in summary:
        gaps = ", ".join(
            f"{case} {f1 - summary['original']:+.2f}" for case, f1 in summary.items() if case != "original"
        )
        print(f"F1 change against the original casing: {gaps}")
    return 0
