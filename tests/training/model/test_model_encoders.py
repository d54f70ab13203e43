from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch

from training.model.bga_mner import BGAMNER
from training.model.config import ModelConfig
from training.model.image_encoder import ImageEncoder, image_spec
from training.model.text_encoder import EncoderNotFoundError, tokenizer_file


def test_a_hub_name_fails_fast_and_clearly_offline(
    tiny_config: Callable[..., ModelConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(EncoderNotFoundError, match="not a local folder"):
        BGAMNER(tiny_config(text_encoder="no-such-org/no-such-bert"), 9)
    assert time.monotonic() - started < 10


def test_casing_vocabulary_must_cover_the_preprocessing(tiny_config: Callable[..., ModelConfig]) -> None:
    preprocessing = pytest.importorskip("bga_mner.preprocessing")
    with pytest.raises(ValueError, match="NUM_CASING_CLASSES"):
        BGAMNER(tiny_config(num_casing_classes=preprocessing.NUM_CASING_CLASSES - 1), 9)


def test_default_text_encoder_is_the_offline_minilm() -> None:
    config = ModelConfig()
    assert tokenizer_file(config.text_encoder).is_file()


def test_efficientnet_lite0_gives_a_grid_of_patches() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    encoder = ImageEncoder("efficientnet-lite0").train()
    spec = image_spec("efficientnet-lite0")
    assert spec.size == 224
    with torch.no_grad():
        patches = encoder(torch.randn(2, 3, spec.size, spec.size))
    assert patches.shape == (2, 49, encoder.out_dim) and encoder.out_dim == 1280
    assert not encoder.backbone.training  # frozen: batch-norm statistics stay put


def test_hugging_face_vision_folder(tiny_config: Callable[..., ModelConfig]) -> None:
    folder = tiny_config().image_encoder
    encoder = ImageEncoder(folder)
    assert image_spec(folder).size == 16
    assert encoder.skip_tokens == 1
    assert encoder(torch.randn(3, 3, 16, 16)).shape == (3, 16, 32)  # 4x4 patches, [CLS] dropped


def test_text_layers_keeps_the_first_layers_and_rebuilds_from_the_saved_config(
    tiny_config: Callable[..., ModelConfig],
) -> None:
    full = BGAMNER(tiny_config(variant="text_crf"), 9)
    student = BGAMNER(tiny_config(variant="text_crf", text_layers=1), 9)
    backbone = student.text_encoder.backbone
    assert len(backbone.encoder.layer) == 1 and backbone.config.num_hidden_layers == 1
    kept = backbone.encoder.layer[0].state_dict()
    for name, weight in full.text_encoder.backbone.encoder.layer[0].state_dict().items():
        assert torch.equal(kept[name], weight), name  # the teacher's own first layer, not a fresh one
    # A checkpoint loaded where the encoder folder is missing rebuilds the cut architecture.
    rebuilt = BGAMNER(
        tiny_config(variant="text_crf", text_layers=1),
        9,
        backbone_config=backbone.config.to_dict(),
    )
    rebuilt.load_state_dict(student.state_dict())  # strict: no missing or unexpected layer weights
    assert len(rebuilt.text_encoder.backbone.encoder.layer) == 1


def test_text_layers_beyond_the_encoder_is_an_error(tiny_config: Callable[..., ModelConfig]) -> None:
    with pytest.raises(ValueError, match="has 2 layers"):
        BGAMNER(tiny_config(variant="text_crf", text_layers=3), 9)
