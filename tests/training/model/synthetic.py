"""A synthetic paired image-text set on which the generator's behaviour can be measured.

Tweet images are not available on these machines, so the image-dependent parts of BGA-MNER (text2image
reconstruction, image2text, the image cycle, contrastive alignment) cannot be shown on real data. Here
each "image" contains two of K objects, each object a fixed random 4x4 RGB pattern tiled over a
random quadrant (2x2 patches) of a noisy 16x16 image, and the paired "tweet" names the same two
objects with object words (tagged as entities) among filler words. A tiny random BERT and a tiny
frozen random ViT are saved to a temporary folder and loaded with `from_pretrained(path)`, so the
real loading code runs.

Run: `python -m tests.training.model.synthetic --steps 300 --seed 0` (prints the before/after numbers
as JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from training.model.batch import Batch
from training.model.bga_mner import BGAMNER
from training.model.config import GeneratorConfig, LossWeights, ModelConfig, SamplerConfig

OBJECTS = 6
FILLERS = 16
FIRST_FILLER = 4  # 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP]
FIRST_OBJECT = FIRST_FILLER + FILLERS
VOCAB = FIRST_OBJECT + OBJECTS
WORDS = 8
IMAGE = 16
PATCH = 4


def save_tiny_encoders(folder: Path, seed: int) -> tuple[Path, Path]:
    """A tiny BERT and a tiny ViT with random weights, saved as Hugging Face folders."""
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    vit = ViTModel(
        ViTConfig(
            image_size=IMAGE,
            patch_size=PATCH,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    bert.save_pretrained(folder / "bert")
    vit.save_pretrained(folder / "vit")
    return folder / "bert", folder / "vit"


def synthetic_config(text_encoder: Path, image_encoder: Path) -> ModelConfig:
    return ModelConfig(
        text_encoder=str(text_encoder),
        image_encoder=str(image_encoder),
        hidden=32,
        casing_dim=4,
        dropout=0.0,
        fusion_heads=2,
        sampler=SamplerConfig(text_keep=[0.75, 0.5], patch_keep=[0.5, 0.5]),
        generator=GeneratorConfig(image_queries=4, text_queries=4, heads=2, ffn_dim=64, levels=[-1, 1]),
        loss=LossWeights(ner=1.0, recon_t2i=1.0, recon_i2t=1.0, cycle=0.5, align=0.1),
    )


@dataclass
class SyntheticPairs:
    batch: Batch
    objects: torch.Tensor  # [N, 2] object ids per pair


def make_pairs(count: int, patterns: torch.Tensor, generator: torch.Generator) -> SyntheticPairs:
    """`count` image-text pairs; object words are B-PER (objects 0-2) or B-LOC (3-5), fillers O."""
    quadrants = 4  # each object fills one 2x2-patch quadrant with its tiled pattern
    objects = torch.stack([torch.randperm(OBJECTS, generator=generator)[:2] for _ in range(count)])
    images = 0.3 * torch.randn(count, 3, IMAGE, IMAGE, generator=generator)
    tokens = FIRST_FILLER + torch.randint(0, FILLERS, (count, WORDS), generator=generator)
    labels = torch.zeros(count, WORDS, dtype=torch.long)
    for row in range(count):
        places = torch.randperm(quadrants, generator=generator)[:2].tolist()
        slots = torch.randperm(WORDS, generator=generator)[:2].tolist()
        half = IMAGE // 2
        for obj, place, slot in zip(objects[row].tolist(), places, slots, strict=True):
            y, x = divmod(place, 2)
            tile = patterns[obj].repeat(1, half // PATCH, half // PATCH)
            images[row, :, y * half : (y + 1) * half, x * half : (x + 1) * half] = tile
            tokens[row, slot] = FIRST_OBJECT + obj
            labels[row, slot] = 1 if obj < 3 else 3
    input_ids = torch.cat([torch.full((count, 1), 2), tokens, torch.full((count, 1), 3)], dim=1)
    casing = torch.cat([torch.zeros(count, 1), torch.ones(count, WORDS), torch.zeros(count, 1)], dim=1)
    batch = Batch(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        casing_ids=casing.long(),
        word_index=torch.arange(1, WORDS + 1).repeat(count, 1),
        word_mask=torch.ones(count, WORDS, dtype=torch.bool),
        labels=labels,
        pixel_values=images,
        image_mask=torch.ones(count, dtype=torch.bool),
    )
    return SyntheticPairs(batch, objects)


def slot_similarity(generated: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """[N, Q, D] x [M, P, D] -> [N, M]: mean over generated slots of the best cosine to a patch."""
    cosine = torch.einsum("nqd,mpd->nmqp", F.normalize(generated, dim=-1), F.normalize(patches, dim=-1))
    return cosine.max(dim=3).values.mean(dim=2)


@torch.no_grad()
def measure(model: BGAMNER, pairs: SyntheticPairs) -> dict[str, float]:
    """Reconstruction losses and text2image-vs-image similarity on held-out pairs (eval mode)."""
    model.eval()
    batch = pairs.batch
    losses = model(batch).losses
    assert batch.pixel_values is not None
    generated = model.pseudo_visual_features(batch.input_ids, batch.attention_mask, batch.casing_ids)
    similarity = slot_similarity(generated, model.image_features(batch.pixel_values))
    paired = similarity.diagonal()
    equal = pairs.objects[:, None, :, None] == pairs.objects[None, :, None, :]  # [N, M, 2, 2]
    shares_no_object = ~equal.any(-1).any(-1)
    same_objects = equal.any(-1).all(-1)
    best = similarity.argmax(dim=1)
    model.train()
    return {
        "recon_t2i": float(losses["recon_t2i"]),
        "recon_i2t": float(losses["recon_i2t"]),
        "cycle": float(losses["cycle"]),
        "cosine_paired": float(paired.mean()),
        "cosine_unpaired": float(similarity[shares_no_object].mean()),
        "retrieval_same_objects": float(same_objects[torch.arange(len(best)), best].float().mean()),
    }


def run_synthetic_alignment(steps: int = 300, seed: int = 0, batch_size: int = 16) -> dict[str, object]:
    """Train BGA-MNER on synthetic pairs; return the held-out numbers before and after training.

    `cosine_*` is the mean over generated slots of the best cosine similarity to a patch of the paired
    image or of unpaired images (sharing no object); `retrieval_same_objects` is how often the held-out
    image most similar to a text's generated slots shows the same two objects (chance about 1/15 + ties).
    """
    with tempfile.TemporaryDirectory() as folder:
        bert, vit = save_tiny_encoders(Path(folder), seed)
        torch.manual_seed(seed)
        model = BGAMNER(synthetic_config(bert, vit), num_labels=9)
    data = torch.Generator().manual_seed(seed)
    patterns = 1.5 * torch.randn(OBJECTS, 3, PATCH, PATCH, generator=data)
    train = make_pairs(256, patterns, data).batch
    held_out = make_pairs(48, patterns, data)
    before = measure(model, held_out)
    optimizer = torch.optim.AdamW([p for group in model.param_groups().values() for p in group], lr=2e-3)
    for _ in range(steps):
        rows = torch.randint(0, 256, (batch_size,), generator=data)
        step = Batch(**{name: value[rows] for name, value in vars(train).items()})
        loss = model(step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = measure(model, held_out)
    return {"steps": steps, "seed": seed, "held_out_pairs": 48, "before": before, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="tiny models run fastest on one thread")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run_synthetic_alignment(args.steps, args.seed), indent=2))


if __name__ == "__main__":
    main()
