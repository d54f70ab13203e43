from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from training.model.batch import Batch
from training.model.bga_mner import BGAMNER, LOSS_NAMES
from training.model.config import ModelConfig

NUM_LABELS = 9


def overfit(model: BGAMNER, batch: Batch, steps: int) -> tuple[float, float]:
    optimizer = torch.optim.AdamW([p for group in model.param_groups().values() for p in group], lr=3e-3)
    first = last = 0.0
    for step in range(steps):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first, last = (float(loss), float(loss)) if step == 0 else (first, float(loss))
    return first, last


@pytest.mark.parametrize("variant", ["bga", "text_crf"])
def test_loss_falls_when_overfitting_a_tiny_batch(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch], variant: str
) -> None:
    torch.manual_seed(0)
    model = BGAMNER(tiny_config(variant=variant), NUM_LABELS)
    batch = make_batch(seed=1, with_images=variant == "bga")
    first, last = overfit(model, batch, steps=60)
    assert last < 0.3 * first
    model.eval()
    predicted = model.decode(batch)
    assert [len(p) for p in predicted] == batch.word_mask.sum(dim=1).tolist()
    assert batch.labels is not None
    gold = [row[mask].tolist() for row, mask in zip(batch.labels, batch.word_mask, strict=True)]
    assert predicted == gold  # memorised


def test_without_images_the_image_encoder_is_skipped_and_image_losses_are_zero(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch]
) -> None:
    torch.manual_seed(0)
    model = BGAMNER(tiny_config(), NUM_LABELS)
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    text_only = model(make_batch(seed=2, with_images=False))
    assert not calls
    assert set(text_only.losses) == set(LOSS_NAMES)
    assert all(float(text_only.losses[name]) == 0.0 for name in ("recon_t2i", "recon_i2t", "align"))
    assert float(text_only.losses["cycle"]) > 0.0  # text -> pseudo image -> text still regularises
    with_images = model(make_batch(seed=2, with_images=True))
    assert calls
    assert all(float(with_images.losses[name]) > 0.0 for name in LOSS_NAMES)
    assert torch.isclose(with_images.loss, sum(with_images.losses.values()), atol=1e-5)


def test_loss_weights_scale_and_switch_off_terms(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch]
) -> None:
    batch = make_batch(seed=3, with_images=True)
    torch.manual_seed(0)
    base = BGAMNER(tiny_config(), NUM_LABELS).eval()
    torch.manual_seed(0)
    weights = {"ner": 2.0, "recon_t2i": 0.0, "recon_i2t": 1.0, "cycle": 0.5, "align": 0.0}
    scaled = BGAMNER(tiny_config(loss=weights), NUM_LABELS).eval()
    reference, changed = base(batch).losses, scaled(batch).losses
    assert float(changed["ner"]) == pytest.approx(2.0 * float(reference["ner"]), rel=1e-5)
    assert float(changed["recon_t2i"]) == 0.0 and float(changed["align"]) == 0.0
    assert float(changed["recon_i2t"]) == pytest.approx(float(reference["recon_i2t"]), rel=1e-5)


def test_image_aware_inference_reads_the_image(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch]
) -> None:
    torch.manual_seed(0)
    model = BGAMNER(tiny_config(), NUM_LABELS).eval()
    batch = make_batch(seed=4, with_images=True)
    assert batch.pixel_values is not None and batch.image_mask is not None
    args = (batch.input_ids, batch.attention_mask, batch.casing_ids)
    with torch.no_grad():
        text_only = model.emissions_text_only(*args)
        with_image = model.emissions_with_image(*args, batch.pixel_values, batch.image_mask)
        other_image = model.emissions_with_image(*args, batch.pixel_values.flip(0), batch.image_mask)
        no_image = model.emissions_with_image(*args, batch.pixel_values, torch.zeros_like(batch.image_mask))
    assert with_image.shape == text_only.shape == (*batch.input_ids.shape, NUM_LABELS)
    assert not torch.allclose(with_image[0], other_image[0])  # row 0 has an image
    assert torch.allclose(no_image, text_only, atol=1e-5)  # no image: falls back to generated features


def test_param_groups_partition_trainable_parameters(tiny_config: Callable[..., ModelConfig]) -> None:
    model = BGAMNER(tiny_config(), NUM_LABELS)
    groups = model.param_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert {id(p) for p in groups["crf"]} == {id(p) for p in model.crf.parameters()}
    assert {id(p) for p in groups["encoder"]} == {id(p) for p in model.text_encoder.backbone.parameters()}
    assert not any(p.requires_grad for p in model.image_encoder.parameters())  # frozen by default
    model.train()
    assert not model.image_encoder.backbone.training


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_step_on_gpu(
    tiny_config: Callable[..., ModelConfig], make_batch: Callable[..., Batch]
) -> None:
    torch.manual_seed(0)
    model = BGAMNER(tiny_config(), NUM_LABELS).cuda()
    batch = make_batch(seed=7, with_images=True).to("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        output = model(batch)
    assert all(torch.isfinite(value) for value in output.losses.values())
    torch.autograd.backward(output.loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    assert [len(p) for p in model.decode(batch)] == batch.word_mask.sum(dim=1).tolist()
