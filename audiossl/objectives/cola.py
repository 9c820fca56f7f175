"""COLA (Saeed et al. 2021): contrastive learning of general-purpose audio representations.

Two random crops of the same clip form a positive pair and the other clips of the batch are the
negatives. Each crop is encoded, max-pooled over its valid frames, mapped by Dense(512) -> LayerNorm -> tanh,
and pairs are scored with a learned bilinear similarity; the loss is softmax cross-entropy over the batch.
Crop positions come from a ``torch.Generator`` seeded from the global torch RNG, so a resumed run (which
restores that RNG) draws the same crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.audio.features import frame_mask
from audiossl.config import check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives.base import Objective, ObjectiveOutput, register_objective


@dataclass
class COLAConfig:
    name: str = "cola"
    crop_seconds: float = 1.0
    embedding_dim: int = 512

    def validate(self) -> COLAConfig:
        check_positive(self.crop_seconds, "objective.crop_seconds")
        check_positive(self.embedding_dim, "objective.embedding_dim")
        return self


def random_crops(waveforms: Tensor, lengths: Tensor, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One crop of ``crop`` samples per clip at a uniform random start; shorter clips are kept whole."""
    room = (lengths - crop).clamp(min=0) + 1
    starts = (torch.rand(len(lengths), generator=generator).to(lengths.device) * room).long()
    index = (starts[:, None] + torch.arange(crop, device=lengths.device)).clamp(max=waveforms.shape[1] - 1)
    crop_lengths = lengths.clamp(max=crop)
    keep = frame_mask(crop_lengths, crop).to(waveforms.dtype)
    return waveforms.gather(1, index) * keep, crop_lengths


def max_pool(features: Tensor, lengths: Tensor) -> Tensor:
    """Max over valid frames (padding never wins); items without frames pool to zeros."""
    valid = frame_mask(lengths, features.shape[1]).unsqueeze(-1)
    pooled = features.masked_fill(~valid, float("-inf")).amax(1)
    return torch.where(lengths[:, None] > 0, pooled, torch.zeros_like(pooled))


@register_objective("cola", COLAConfig)
@final
class COLA(Objective):
    """Batch-wise contrastive identification of the other crop of the same clip; see the module docstring."""

    def __init__(self, config: COLAConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.projection = nn.Sequential(nn.Linear(encoder.output_dim, config.embedding_dim),
                                        nn.LayerNorm(config.embedding_dim), nn.Tanh())
        self.similarity = nn.Linear(config.embedding_dim, config.embedding_dim, bias=False)  # bilinear W

    def _two_views(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        seed = int(torch.randint(0, 2**62, ()).item())
        generator = torch.Generator().manual_seed(seed)
        crop = round(self.config.crop_seconds * batch.sample_rate)
        first = random_crops(batch.waveforms, batch.lengths, crop, generator)
        second = random_crops(batch.waveforms, batch.lengths, crop, generator)
        return torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        if batch.size < 2:
            raise ValueError("cola: needs at least 2 clips per batch (the other clips are the negatives)")
        waveforms, lengths = self._two_views(batch)
        output = self.encoder(waveforms, lengths)
        embeddings = self.projection(max_pool(output.features, output.lengths))
        anchors, positives = embeddings.chunk(2)
        logits = anchors @ self.similarity(positives).T  # (B, B): a_i^T W p_j
        targets = torch.arange(batch.size, device=logits.device)
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return ObjectiveOutput(loss, {"loss": float(loss.detach()), "acc": float(accuracy)})
