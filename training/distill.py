"""Distilling an ensemble of trained models into one model of the same (serving) size.

An ensemble of seeds is usually more accurate than any one of its members, but serving it would
multiply the inference cost. Here its knowledge is moved into one student of the same architecture:
the teachers' CRF posteriors (per-word label marginals, averaged over the teachers) become soft
targets, and the student minimises its CRF loss on the gold labels plus `distill.weight` times the
cross-entropy from the teachers' marginals to its own CRF marginals. Marginals, not emission
softmaxes, because what the CRF decodes is the posterior over paths; its per-word marginals are the
gradient of log Z with respect to the emissions, so the forward algorithm that training already has
gives them (and, with `create_graph`, their gradient) without a separate forward-backward pass.

Targets are computed once, before training, on the training sentences as written. A sentence shown
recased by the case augmentation keeps the targets of its original form: the teachers saw the
capitals, and the student learns to give the same answer without them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from training.data.dataset import Collator, EncodedExample, bucket_batches, iterate_batches
from training.model.bga_mner import gather_words
from training.model.crf import CRF

logger = logging.getLogger(__name__)

# Targets are indexed by (sentence index, window number within the sentence).
TargetKey = tuple[int, int]


def crf_marginals(
    crf: CRF, word_emissions: torch.Tensor, word_mask: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """p(y_t = l | x) for emissions [B, W, L] and a left-packed word mask [B, W]; 0 where masked."""
    emissions = word_emissions.float()
    if not emissions.requires_grad:
        emissions = emissions.detach().requires_grad_(True)
    log_z = crf.log_partition(emissions, word_mask).sum()
    (grad,) = torch.autograd.grad(log_z, emissions, create_graph=create_graph)
    return grad * word_mask.unsqueeze(-1).to(grad.dtype)


def distill_loss(
    crf: CRF, word_emissions: torch.Tensor, word_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy from the target marginals to the student's: summed over words, mean over rows
    (the same scale as the CRF's negative log-likelihood). Rows whose targets are all 0 add 0."""
    student = crf_marginals(crf, word_emissions, word_mask, create_graph=True)
    log_student = torch.log(student.clamp(min=1e-6))
    per_row = -(targets.to(log_student.dtype) * log_student).sum(dim=(1, 2))
    return per_row.mean()


def window_keys(examples: Sequence[EncodedExample]) -> list[TargetKey]:
    """(sentence, window number) of each example, windows numbered in their order within a sentence."""
    seen: dict[int, int] = {}
    keys = []
    for example in examples:
        rank = seen.get(example.sentence_index, 0)
        seen[example.sentence_index] = rank + 1
        keys.append((example.sentence_index, rank))
    return keys


def teacher_targets(
    teacher_dirs: Sequence[Path],
    examples: Sequence[EncodedExample],
    collator: Collator,
    *,
    batch_size: int,
    device: torch.device,
) -> dict[TargetKey, torch.Tensor]:
    """The teachers' mean CRF marginals [n_words, L] (float16) for every example, by window key."""
    from training.checkpoint import load_model

    if not teacher_dirs:
        return {}
    keys = window_keys(examples)
    sums: dict[TargetKey, torch.Tensor] = {}
    batches = bucket_batches([example.length for example in examples], batch_size, shuffle=False)
    for directory in teacher_dirs:
        model, _ = load_model(Path(directory), device)
        for indices, batch in iterate_batches(examples, batches, collator):
            batch = batch.to(device)
            with torch.no_grad():
                emissions = model.emissions_text_only(batch.input_ids, batch.attention_mask, batch.casing_ids)
                words = gather_words(emissions, batch.word_index)
            with torch.enable_grad():
                marginals = crf_marginals(model.crf, words, batch.word_mask).detach().cpu()
            for row, index in enumerate(indices):
                count = len(examples[index].word_index)
                key = keys[index]
                value = marginals[row, :count]
                sums[key] = value if key not in sums else sums[key] + value
        logger.info("teacher %s: marginals for %d windows", directory, len(examples))
        del model
    return {key: (total / len(teacher_dirs)).to(torch.float16) for key, total in sums.items()}


def batch_targets(targets: Sequence[torch.Tensor | None], width: int, num_labels: int) -> torch.Tensor:
    """Pad per-example targets into [B, width, L]; a missing target is all zeros (no KD signal)."""
    out = torch.zeros(len(targets), width, num_labels)
    for row, target in enumerate(targets):
        if target is not None:
            count = min(width, target.shape[0])
            out[row, :count] = target[:count].float()
    return out
