"""COLA (Saeed et al. 2021): contrastive learning of general-purpose audio representations.

Two random crops of the same clip form a positive pair and the other clips of the batch are the
negatives. Each crop is encoded, max-pooled over its valid frames, mapped by Dense(512) -> LayerNorm -> tanh,
and pairs are scored with a learned bilinear similarity; the loss is softmax cross-entropy over the batch.

Two views are never the same audio: a clip too short for two different ``crop_seconds`` crops is cropped
to ``max_crop_share`` of its length, and the second crop's start is drawn among the starts the first did
not take. Collapse (every clip mapped to one embedding: accuracy exactly 1/batch) is watched through the
spread of the embeddings across the batch (``emb_std``) and guarded against, as wav2vec 2.0's diversity
term guards its codebook, by a variance hinge: ``variance_weight * mean(relu(variance_target - std))``
over embedding dimensions (VICReg's variance term). Crop positions come from a ``torch.Generator``
seeded from the global torch RNG, so a resumed run (which restores that RNG) draws the same crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives._crops import max_pool, two_views
from audiossl.objectives.base import CountsUpdates, ObjectiveOutput, register_objective


@dataclass
class COLAConfig:
    name: str = "cola"
    crop_seconds: float = 1.0
    max_crop_share: float = 0.8  # crops of shorter clips take this share of the clip, so two views differ
    embedding_dim: int = 512
    variance_weight: float = 1.0  # collapse guard; 0 = the paper's loss alone
    variance_target: float = 0.5  # wanted std of each tanh embedding dimension across the batch
    collapse_std: float = 0.02  # warn when the embeddings' spread across the batch falls below this
    collapse_check_after: int = 100

    def validate(self) -> COLAConfig:
        check_positive(self.crop_seconds, "objective.crop_seconds")
        check_positive(self.embedding_dim, "objective.embedding_dim")
        check_positive(self.variance_weight, "objective.variance_weight", allow_zero=True)
        if not 0 < self.max_crop_share < 1:
            raise ConfigError(f"invalid config at 'objective.max_crop_share': must be in (0, 1), "
                              f"got {self.max_crop_share}")
        return self


@register_objective("cola", COLAConfig)
@final
class COLA(CountsUpdates):
    """Batch-wise contrastive identification of the other crop of the same clip; see the module docstring."""

    def __init__(self, config: COLAConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.projection = nn.Sequential(nn.Linear(encoder.output_dim, config.embedding_dim),
                                        nn.LayerNorm(config.embedding_dim), nn.Tanh())
        self.similarity = nn.Linear(config.embedding_dim, config.embedding_dim, bias=False)  # bilinear W

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        if batch.size < 2:
            raise ValueError("cola: needs at least 2 clips per batch (the other clips are the negatives)")
        waveforms, lengths = two_views(batch, self.config.crop_seconds, self.config.max_crop_share)
        output = self.encoder(waveforms, lengths)
        embeddings = self.projection(max_pool(output.features, output.lengths)).float()
        anchors, positives = embeddings.chunk(2)
        logits = anchors @ self.similarity(positives).T  # (B, B): a_i^T W p_j
        targets = torch.arange(batch.size, device=logits.device)
        contrastive = F.cross_entropy(logits, targets)
        spread = embeddings.std(0)  # per dimension, across the 2B crops
        variance = F.relu(self.config.variance_target - spread).mean()
        loss = contrastive + self.config.variance_weight * variance
        metrics = {"loss": loss, "contrastive": contrastive, "variance": variance, "emb_std": spread.mean(),
                   "acc": (logits.argmax(-1) == targets).float().mean()}
        return ObjectiveOutput(loss, {name: value.detach() for name, value in metrics.items()})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Advice when every clip maps to (almost) the same embedding."""
        if int(self.num_updates) < self.config.collapse_check_after or "emb_std" not in metrics:
            return []
        if metrics["emb_std"] >= self.config.collapse_std:
            return []
        return [f"cola looks collapsed: the embeddings' spread across the batch is {metrics['emb_std']:.4f} "
                f"(< {self.config.collapse_std:g}) and accuracy {metrics.get('acc', float('nan')):.3f} sits at "
                "chance (1/clips per batch). Try: a higher objective.variance_weight, a lower optim.lr, a longer "
                "warmup, more clips per batch (data.max_batch_samples)."]
