"""InfoNCE pieces shared by CPC, wav2vec 2.0 and COLA: every one of them scores a positive against
distractors and trains with softmax cross-entropy where the positive sits at index 0."""

from __future__ import annotations

import torch
from torch import Tensor


def info_nce(logits: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy with the positive at index 0 of the last dim, and the accuracy of picking it.

    ``logits``: ``(..., 1 + num_negatives)``; ``valid``: bool of shape ``logits.shape[:-1]`` (None = all).
    Accuracy counts a row right only when the positive strictly beats every distractor, so a constant
    score (a collapsed model) reads as 0, not 1.
    """
    losses = torch.logsumexp(logits, dim=-1) - logits[..., 0]
    correct = positive_wins(logits)
    if valid is None:
        return losses.mean(), correct.float().mean()
    weight = valid.to(logits.dtype)
    count = weight.sum().clamp(min=1)
    return (losses * weight).sum() / count, (correct.to(logits.dtype) * weight).sum() / count


def positive_wins(logits: Tensor) -> Tensor:
    """Bool ``logits.shape[:-1]``: does the positive (index 0) strictly beat every distractor?"""
    return logits[..., 0] > logits[..., 1:].amax(dim=-1)


def sample_excluding_self(num_rows: int, pool: int, num_samples: int, device: torch.device) -> Tensor:
    """``(num_rows, pool, num_samples)`` indices into ``range(pool)``, never equal to their own position.

    Drawn uniformly from the ``pool - 1`` other positions (draw from ``pool - 1``, shift those >= self by
    one), with replacement, from the global torch RNG so runs resume bit-identically.
    """
    if pool < 2:
        raise ValueError(f"need at least 2 candidates to draw distractors excluding the positive, got {pool}")
    draws = torch.randint(0, pool - 1, (num_rows, pool, num_samples), device=device)
    own = torch.arange(pool, device=device)[None, :, None]
    return draws + (draws >= own).to(draws.dtype)
