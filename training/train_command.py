"""`bga-mner train`: train BGA-MNER (or the text-only CRF baseline) from a YAML config."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML config file, or the name of a shipped recipe (configs/, e.g. joint-text_crf-release); "
        "defaults apply to what it omits",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        nargs="+",
        help="override config fields, e.g. --set optim.lr_encoder=3e-5 model.variant=text_crf",
    )
    parser.add_argument(
        "--out", type=Path, help="checkpoint directory (default runs/<dataset>-<variant>-seed<seed>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (without --config: with the run's config.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from bga_mner.errors import ConfigurationError
    from training.config import load_config
    from training.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = [item for group in args.overrides for item in group]
    config_path = args.config
    if config_path is None and args.resume and args.out is not None and (args.out / "config.yaml").is_file():
        config_path = args.out / "config.yaml"  # resume with the run's own configuration
    try:
        config = load_config(config_path, overrides)
    except (ValueError, yaml.YAMLError) as error:  # pydantic's ValidationError is a ValueError
        raise ConfigurationError(f"invalid training configuration: {error}") from error
    out = args.out or Path("runs") / f"{config.data.dataset}-{config.model.variant}-seed{config.runtime.seed}"
    results = train(config, out, resume=args.resume)
    print(
        json.dumps(
            {
                "out": str(out),
                "best_epoch": results["best_epoch"],
                "dev_f1": round(results["dev"]["f1"], 2),
                "test_f1": round(results["test"]["f1"], 2),
            }
        )
    )
    return 0
