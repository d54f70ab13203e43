"""`bga-mner tag` as a user runs it: a real subprocess over a real (tiny) model repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.model_repository import open_repository
from bga_mner.posts import Post
from bga_mner.tagging import Tagger, entity_to_dict

REPO_ROOT = Path(__file__).resolve().parents[3]


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bga_mner.cli", "tag", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_tags_jsonl_and_text_lines_like_the_in_process_tagger(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    posts: list[dict[str, Any]] = [
        {"id": "a1", "text": "I met Taylor Swift in Paris", "lang": "en", "unknown_field": 1},
        {"id": "a2", "text": "NASA and #space 🚀 https://t.co/x"},
        {"id": "a3", "text": ""},
    ]
    plain = "we love NASA\u200b and Barack Obama 👨‍👩‍👧"
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join([*(json.dumps(p, ensure_ascii=False) for p in posts), "", plain]) + "\n")

    result = _run([str(source), "--model-repository", str(tiny_model_repository), "--batch-size", "2"])
    assert result.returncode == 0, result.stderr
    lines = _lines(result.stdout)
    assert [line["id"] for line in lines] == ["a1", "a2", "a3", "5"]  # plain text: id = line number

    repository = open_repository(tiny_model_repository)
    tagger = Tagger(repository, OnnxBackend(repository.version_dir / "model.onnx", threads=1))
    texts = [str(p["text"]) for p in posts] + [plain]
    expected = tagger.tag([Post(id=str(i), text=t) for i, t in enumerate(texts)])
    assert [line["entities"] for line in lines] == [[entity_to_dict(e) for e in t.entities] for t in expected]
    assert any(line["entities"] for line in lines)
    for line, text in zip(lines, texts, strict=True):
        for entity in line["entities"]:
            assert set(entity) == {"text", "type", "start", "end", "score"}
            assert text[entity["start"] : entity["end"]] == entity["text"]


def test_bad_lines_are_reported_and_skipped_with_a_failing_exit_code(tiny_model_repository: Path) -> None:
    stdin = "\n".join(
        [
            json.dumps({"id": "ok", "text": "Hello NASA"}),
            '{"id": "broken", "text": ',
            json.dumps({"text": "no id"}),
            json.dumps({"id": "img", "text": "x", "image": {"data": "!!!not base64"}}),
            "plain text survives",
        ]
    )
    result = _run(["-", "--model-repository", str(tiny_model_repository)], stdin=stdin)
    assert result.returncode == 1
    assert [line["id"] for line in _lines(result.stdout)] == ["ok", "5"]
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4"]
    assert "invalid_json" in errors[0] and "schema" in errors[1] and "schema" in errors[2]


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    result = _run(["-", "--model-repository", str(tmp_path / "nowhere")], stdin="hello\n")
    assert result.returncode != 0
    assert "nowhere" in result.stderr


def test_tag_never_imports_torch(tiny_model_repository: Path) -> None:
    code = (
        "import sys\n"
        "from bga_mner.cli import main\n"
        f"rc = main(['tag', '-', '--model-repository', {str(tiny_model_repository)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input="we love NASA\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout)[0]["entities"][0]["text"] == "NASA"


@pytest.mark.parametrize("batch_size", ["0", "-3"])
def test_rejects_nonsense_batch_size(tiny_model_repository: Path, batch_size: str) -> None:
    result = _run(["-", "--model-repository", str(tiny_model_repository), "--batch-size", batch_size], "x\n")
    assert result.returncode != 0
    assert "--batch-size" in result.stderr
