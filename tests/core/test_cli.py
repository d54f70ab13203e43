"""Every CLI error is one line and a non-zero exit; a missing extra is named; --debug shows the traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bga_mner import cli
from bga_mner.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fake_command(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make `bga-mner tag` raise ``error`` from its run()."""
    module = types.ModuleType("fake_command")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", nargs="?")

    def run(args: argparse.Namespace) -> int:
        raise error

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "tag", cli.CommandSpec("fake_command", "fake", "worker"))
    monkeypatch.delenv("BGA_LOG_LEVEL", raising=False)


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (
            ConfigurationError("the thing is wrong:\n  - first\n  - second"),
            2,
            "bga-mner tag: the thing is wrong: - first - second",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "posts.jsonl"),
            1,
            "No such file or directory: 'posts.jsonl'",
        ),
        (ValueError("boom"), 1, "unexpected error: ValueError: boom (run with --debug for the traceback)"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    line: str,
) -> None:
    _fake_command(monkeypatch, error)
    assert cli.main(["tag"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and line in err and "Traceback" not in err


def test_a_missing_extra_is_named_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_command(monkeypatch, ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"))
    assert cli.main(["tag"]) == 2
    assert capsys.readouterr().err == (
        "bga-mner tag: `bga-mner tag` needs the 'worker' extra (module 'onnxruntime' is not installed): "
        "pip install 'bga-mner[worker]'\n"
    )


def test_a_missing_module_of_our_own_is_a_bug_not_an_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_command(monkeypatch, ModuleNotFoundError("No module named 'worker.gone'", name="worker.gone"))
    assert cli.main(["tag"]) == 1
    assert "unexpected error: ModuleNotFoundError" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        cli.main(["--debug", "tag"])
    monkeypatch.setenv("BGA_LOG_LEVEL", "DEBUG")
    with pytest.raises(ValueError, match="boom"):
        cli.main(["tag"])


def test_the_real_tag_command_reports_a_missing_repository_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bga_mner.cli", "tag", "--model-repository", str(tmp_path / "nope"), "-"],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"bga-mner tag: model repository {tmp_path / 'nope'} does not exist or is not a directory"
    ]
