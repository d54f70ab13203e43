"""The lean inference graph (training/export/lean.py): same function as the training graph, fp16-safe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from bga_mner.inference.onnx_local import OnnxBackend
from training.checkpoint import load_for_inference
from training.export.lean import (
    FP32_NODE_PREFIXES,
    LeanScorer,
    UnsupportedModel,
    build_lean,
    keep_top_fraction,
    logsumexp_stable,
)
from training.export.onnx_export import example_inputs, export_onnx
from training.model import sampler as training_sampler

FP16_MAX = 65504.0
# Ops that TensorRT cannot parse or that mark what the lean graph removes (the backbone's NaN scrubs,
# a log-sum-exp without max subtraction).
FORBIDDEN_OPS = {
    "TopK",
    "NonZero",
    "Loop",
    "Scatter",
    "ScatterND",
    "ScatterElements",
    "IsNaN",
    "ReduceLogSumExp",
}


def _inputs(batch: int, seq: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, seq), generator=generator)
    lengths = torch.randint(3, seq + 1, (batch,), generator=generator)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    casing = torch.randint(1, 5, (batch, seq), generator=generator) * mask
    casing[:, 0] = 0  # [CLS]
    return ids * mask, mask, casing


@pytest.mark.parametrize(("batch", "seq", "seed"), [(1, 5, 0), (3, 17, 1), (8, 24, 2), (2, 64, 3)])
def test_lean_module_computes_the_training_graph(
    tiny_checkpoint: Path, batch: int, seq: int, seed: int
) -> None:
    bundle = load_for_inference(tiny_checkpoint)
    lean = build_lean(bundle.module)
    inputs = _inputs(batch, seq, seed)
    with torch.inference_mode():
        expected, got = bundle.module(*inputs), lean(*inputs)
    real = inputs[1].bool()
    assert got.shape == expected.shape
    assert torch.allclose(got[real], expected[real], atol=1e-4, rtol=0), (got - expected)[real].abs().max()


def test_lean_text_crf_variant(tiny_checkpoint: Path) -> None:
    """The text baseline (no sampler, generator or fusion) rebuilds too."""
    bundle = load_for_inference(tiny_checkpoint)
    model: Any = bundle.module.model
    model.is_bga = False
    lean = build_lean(model)
    inputs = _inputs(2, 12, 4)
    with torch.inference_mode():
        expected = model.emissions_text_only(*inputs)
        got = lean(*inputs)
    assert not lean.is_bga
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)


def test_unknown_backbones_are_refused_not_guessed(tiny_checkpoint: Path) -> None:
    bundle = load_for_inference(tiny_checkpoint)
    model: Any = bundle.module.model
    model.text_encoder.backbone.config.model_type = "mpnet"
    with pytest.raises(UnsupportedModel, match="BERT"):
        build_lean(model)


def test_keep_top_fraction_selects_what_the_training_sampler_selects() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(50):
        batch, length = 4, int(torch.randint(1, 30, (1,), generator=generator))
        # few distinct values: many ties, which must break to the lower index as in training
        scores = torch.randint(-3, 4, (batch, length), generator=generator).float() * 1.5
        mask = torch.rand(batch, length, generator=generator) > 0.3
        for ratio in (0.25, 0.5, 0.75, 1.0):
            expected = training_sampler.keep_top_fraction(scores, mask, ratio)
            assert torch.equal(keep_top_fraction(scores, mask, ratio), expected), (trial, ratio)


def test_stable_logsumexp_matches_and_stays_finite_in_fp16() -> None:
    logits = torch.randn(3, 7, 16) * 4
    assert torch.allclose(logsumexp_stable(logits), torch.logsumexp(logits, dim=-1), atol=1e-5)
    large = torch.full((2, 16), 30.0, dtype=torch.float16)  # exp(30) overflows fp16
    assert torch.isinf(torch.exp(large).sum(dim=-1)).all()
    stable = logsumexp_stable(large)
    assert torch.isfinite(stable).all()
    assert torch.allclose(stable.float(), torch.full((2,), 30.0 + float(np.log(16))), atol=0.05)


def test_scorers_and_ranking_stay_fp32_under_autocast(tiny_checkpoint: Path) -> None:
    lean = build_lean(load_for_inference(tiny_checkpoint).module)
    dtypes: list[torch.dtype] = []
    for module in lean.modules():
        if isinstance(module, LeanScorer):
            scores = module.scores

            def recording(tokens: torch.Tensor, context: torch.Tensor, _scores: Any = scores) -> torch.Tensor:
                out: torch.Tensor = _scores(tokens, context)
                dtypes.append(out.dtype)
                return out

            module.scores = recording  # type: ignore[method-assign]
    inputs = _inputs(4, 20, 5)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        emissions = lean(*inputs)
    assert dtypes and all(d == torch.float32 for d in dtypes)
    assert torch.isfinite(emissions.float()).all()


def test_exported_lean_graph_is_fp16_safe_and_parses_for_tensorrt(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    bundle = load_for_inference(tiny_checkpoint)
    path = export_onnx(build_lean(bundle.module), tmp_path / "lean.onnx")
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & FORBIDDEN_OPS, ops & FORBIDDEN_OPS
    constants = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants += [onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
    # the sampler's scorers and ranking are one name prefix (the TensorRT build pins it to fp32)
    sampler = [n for n in model.graph.node if n.name.startswith(FP32_NODE_PREFIXES)]
    assert {"MatMul", "ReduceMax", "Exp", "Log", "Greater", "Ceil"} <= {n.op_type for n in sampler}
    floats = [c for c in constants if c.dtype.kind == "f" and c.size]
    assert floats
    assert max(float(np.abs(c).max()) for c in floats) <= FP16_MAX  # no -1e5 / finfo.min sentinels
    # ... and the ONNX graph runs the lean module's function at shapes it was not traced with
    lean = build_lean(bundle.module)
    backend = OnnxBackend(path, threads=1)
    for batch, seq in ((1, 9), (5, 31)):
        ids, mask, casing = example_inputs(batch, seq)
        with torch.inference_mode():
            expected = lean(ids, mask, casing).numpy()
        got = backend.infer(
            {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "casing_ids": casing.numpy()}
        )
        real = mask.numpy().astype(bool)
        assert np.abs(got[real] - expected[real]).max() < 1e-4
