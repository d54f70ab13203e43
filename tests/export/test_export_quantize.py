"""int8 dynamic quantisation and the benchmark that measures its cost and gain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bga_mner.inference.onnx_local import OnnxBackend
from bga_mner.paths import data_dir
from training.export.onnx_export import export_onnx, onnx_signature
from training.export.quantize import ffn_output_matmuls, quantize_int8

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_int8_graph_is_a_drop_in_replacement(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from training.checkpoint import load_for_inference
    from training.export.onnx_export import example_inputs
    from training.export.targets import INPUT_NAMES

    bundle = load_for_inference(tiny_checkpoint)
    fp32 = export_onnx(bundle.module, tmp_path / "model.onnx")
    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx")
    assert onnx_signature(int8) == onnx_signature(fp32)
    quantized = [n for n in onnx.load(str(int8)).graph.node if n.op_type == "MatMulInteger"]
    assert quantized, "no MatMul was quantised"
    batch = {n: t.numpy() for n, t in zip(INPUT_NAMES, example_inputs(4, 20), strict=True)}
    a, b = OnnxBackend(fp32, threads=2).infer(batch), OnnxBackend(int8, threads=2).infer(batch)
    assert a.shape == b.shape
    # Close but not equal: int8 changes the numbers, not what they mean.
    assert 0 < np.max(np.abs(a - b)) < 0.25 * np.max(np.abs(a))
    assert np.mean(a.argmax(-1) == b.argmax(-1)) > 0.8


def test_the_feed_forward_outputs_can_stay_fp32(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Both graph spellings (Hugging Face's training graph, the lean one) name one feed-forward output
    MatMul per encoder layer, the attention's output projection not among them; those stay float."""
    from training.checkpoint import load_for_inference
    from training.export.lean import build_lean

    bundle = load_for_inference(tiny_checkpoint)
    layers = sum(name.rsplit(".", 2)[-2:-1] == ["layer"] for name, _ in bundle.module.named_modules())
    assert layers >= 2
    for name, module in (("training", bundle.module), ("lean", build_lean(bundle.module))):
        fp32 = export_onnx(module, tmp_path / f"{name}.onnx")
        keep = ffn_output_matmuls(fp32)
        assert len(keep) == layers and not any("attention" in node for node in keep), (name, keep)
        mixed = {
            n.name: n.op_type
            for n in onnx.load(
                str(quantize_int8(fp32, tmp_path / f"{name}.mixed.onnx", keep_fp32=keep))
            ).graph.node
        }
        full = [n for n in onnx.load(str(quantize_int8(fp32, tmp_path / f"{name}.int8.onnx"))).graph.node]
        assert all(mixed.get(node) == "MatMul" for node in keep), name
        integer = sum(op == "MatMulInteger" for op in mixed.values())
        assert 0 < integer < sum(n.op_type == "MatMulInteger" for n in full), name


def _benchmark(checkpoint: Path, out: Path, dataset: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "quantization.py"),
            "--checkpoint",
            str(checkpoint),
            "--datasets",
            dataset,
            "--limit",
            "40",
            "--repeats",
            "1",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )


def test_benchmark_writes_f1_and_speed_side_by_side(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = data_dir()
    if root is None or not all((root / d / "test.txt").is_file() for d in ("twitter2015", "twitter2017")):
        pytest.skip("Twitter MNER data not found (BGA_DATA_DIR or ../shared/data)")
    out = tmp_path / "quantization.json"
    result = _benchmark(tiny_checkpoint, out, "twitter2017")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    row = report["results"]["twitter2017"]
    assert row["sentences"] == 40
    assert "--datasets twitter2017" in row["command"]
    for graph in ("fp32", "int8"):
        assert 0.0 <= row[graph]["f1"] <= 100.0 and row[graph]["sentences_per_second"] > 0
    assert row["speedup_int8_over_fp32"] == pytest.approx(
        row["fp32"]["seconds_median"] / row["int8"]["seconds_median"]
    )
    assert 0 < report["size_ratio_int8_over_fp32"] < 1.0
    assert "twitter2017" in result.stdout and "speed-up" in result.stdout

    # --merge adds another dataset of the same checkpoint and keeps the first ...
    result = _benchmark(tiny_checkpoint, out, "twitter2015", "--merge")
    assert result.returncode == 0, result.stderr[-2000:]
    merged = json.loads(out.read_text())
    assert merged["results"]["twitter2017"] == row and merged["results"]["twitter2015"]["sentences"] == 40
    # ... and refuses to mix checkpoints.
    result = _benchmark(tmp_path / "elsewhere", out, "twitter2015", "--merge")
    assert result.returncode == 2 and "was measured on" in result.stderr
    assert json.loads(out.read_text()) == merged
