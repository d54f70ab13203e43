"""The text-only inference path must export to ONNX (what `bga-mner export` does) and agree with torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from training.model.batch import Batch
from training.model.bga_mner import BGAMNER, TextOnlyInference
from training.model.config import ModelConfig

ort = pytest.importorskip("onnxruntime")
INPUTS = ["input_ids", "attention_mask", "casing_ids"]


@pytest.mark.parametrize("variant", ["bga", "text_crf"])
def test_text_only_path_exports_with_dynamic_axes(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch], tmp_path: Path, variant: str
) -> None:
    torch.manual_seed(0)
    config = tiny_config(variant=variant, sampler={"text_keep": [0.75, 0.5], "patch_keep": [0.5, 0.5]})
    module = TextOnlyInference(BGAMNER(config, 9)).eval()
    traced = make_batch(seed=5, with_images=False, rows=2, length=9)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        module,
        (traced.input_ids, traced.attention_mask, traced.casing_ids),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=INPUTS,
        output_names=["emissions"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*INPUTS, "emissions"]},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = make_batch(seed=6, with_images=False, rows=4, length=15)  # another batch size and length
    feeds = {name: getattr(other, name).numpy() for name in INPUTS}
    (onnx_emissions,) = session.run(["emissions"], feeds)
    with torch.no_grad():
        torch_emissions = module(other.input_ids, other.attention_mask, other.casing_ids).numpy()
    assert onnx_emissions.shape == (4, 15, 9)
    np.testing.assert_allclose(onnx_emissions, torch_emissions, atol=1e-4, rtol=0)
