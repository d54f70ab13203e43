"""Put one exported version into a model repository, all at once.

Triton (in poll mode) and workers may be reading the repository while an export runs, so nothing is
written in place: the version is assembled in a staging repository inside the output directory (same
filesystem) and moved into ``<out>/<model>/<version>`` with one rename, then ``config.pbtxt`` is
replaced atomically. A half-written version is never visible; a failed export leaves no trace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bga_mner.errors import ConfigurationError
from bga_mner.model_repository import TRITON_CONFIG_FILE, Manifest, TritonModelConfig, write_repository_assets


class VersionExists(ConfigurationError, FileExistsError):
    """The requested version directory already exists (and --force was not given)."""


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    """One more than the highest version present (1 for a new model)."""
    return max(existing_versions(model_dir), default=0) + 1


class StagedVersion:
    """A version directory being assembled; :meth:`commit` publishes it, leaving the context discards it."""

    def __init__(self, out: Path, model_name: str, version: int, *, force: bool = False) -> None:
        self.out = Path(out)
        self.model_name = model_name
        self.version = version
        self.target_dir = self.out / model_name / str(version)
        if self.target_dir.exists() and not force:
            raise VersionExists(
                f"{self.target_dir} already exists: choose another --version, or --force to replace it"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".export-{model_name}-{version}-", dir=self.out))
        self.model_dir = self._staging / model_name
        self.version_dir = self.model_dir / str(version)
        self.version_dir.mkdir(parents=True)

    def __enter__(self) -> StagedVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def add_file(self, source: Path, name: str | None = None) -> Path:
        destination = self.version_dir / (name or source.name)
        if source.resolve() != destination.resolve():
            shutil.copyfile(source, destination)
        return destination

    def commit(
        self,
        manifest: Manifest,
        tokenizer_json: Path,
        config: TritonModelConfig,
        model_dir_links: Mapping[str, Path] | None = None,
        model_dir_files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write manifest.json, the tokenizer and config.pbtxt, then publish; returns the version dir.

        ``model_dir_links`` are symlinks created next to config.pbtxt (e.g. the python backend's
        EXECUTION_ENV_PATH environment), replacing any of the same name. ``model_dir_files`` are
        files next to config.pbtxt (relative path -> content, e.g. ``warmup/`` inputs), written before
        the config that reads them is published.
        """
        write_repository_assets(self.version_dir, manifest, tokenizer_json, config)
        final_model_dir = self.out / self.model_name
        final_model_dir.mkdir(parents=True, exist_ok=True)
        if self.target_dir.exists():  # --force: the old version goes only once the new one is complete
            shutil.rmtree(self.target_dir)
        os.replace(self.version_dir, self.target_dir)
        for name, target in (model_dir_links or {}).items():
            link = final_model_dir / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
            link.symlink_to(Path(target).resolve(), target_is_directory=True)
        for relative, content in (model_dir_files or {}).items():
            path = final_model_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(content)
            os.replace(partial, path)
        os.replace(self.model_dir / TRITON_CONFIG_FILE, final_model_dir / TRITON_CONFIG_FILE)
        return self.target_dir
