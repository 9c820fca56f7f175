"""Contrastive Predictive Coding (van den Oord et al. 2018; CPC_audio's "modified CPC" defaults).

From the context ``c_t`` a linear predictor per step ``k = 1..K`` guesses the latent ``z_{t+k}``; InfoNCE
scores the guess against the true latent and ``num_negatives`` latents drawn from the same utterance, the
whole batch, or the same speaker. Padded frames are neither predicted nor drawn as negatives.

Negatives are drawn once per utterance and shared by all its frames and steps (CPC_audio draws them per
frame): the scores then are one batched GEMM ``(B, F*K, C) x (B, C, N)`` instead of gathering ``B*F*N``
latent vectors, which took ~60% of a CPU training step for the same FLOPs (profiled). The InfoNCE form is
unchanged. A negative that *is* the positive latent (same frame) is excluded: drawing 128 frames from a
200-frame utterance would otherwise hit the positive about half the time and cap the accuracy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.audio.features import frame_mask
from audiossl.config import check_choice, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives._contrastive import info_nce, positive_wins
from audiossl.objectives.base import Objective, ObjectiveOutput, register_objective, require_causal

log = logging.getLogger(__name__)

NEGATIVE_POOLS = ("utterance", "batch", "speaker")


@dataclass
class CPCConfig:
    name: str = "cpc"
    prediction_steps: int = 12
    num_negatives: int = 128
    negatives: str = "batch"  # utterance | batch | speaker (CPC_audio's "samespeaker")
    speaker_label: str = "spk"  # label kind holding the speaker for negatives=speaker

    def validate(self) -> CPCConfig:
        check_positive(self.prediction_steps, "objective.prediction_steps")
        check_positive(self.num_negatives, "objective.num_negatives")
        check_choice(self.negatives, NEGATIVE_POOLS, "objective.negatives")
        return self


def shift_future(z: Tensor, steps: int) -> Tensor:
    """``(B, F, C)`` -> ``(B, F, steps, C)`` where ``[:, t, k-1]`` is ``z[:, t+k]`` (zeros past the end)."""
    padded = F.pad(z, (0, 0, 0, steps))
    return torch.stack([padded[:, k: k + z.shape[1]] for k in range(1, steps + 1)], dim=2)


@register_objective("cpc", CPCConfig)
@final
class CPC(Objective):
    """InfoNCE over K future latents; see the module docstring.

    The K per-step linear predictors are stored as one ``Linear(dim, K * channels)``: identical maths, one
    matmul instead of K.
    """

    def __init__(self, config: CPCConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        require_causal(encoder, "CPC")
        self.encoder = encoder
        self.channels = encoder.feature_encoder.output_dim
        self.predictors = nn.Linear(encoder.output_dim, config.prediction_steps * self.channels)
        self._warned_no_speaker = False

    def _allowed_pairs(self, batch: AudioBatch, size: int, device: torch.device) -> Tensor:
        """``(B, B)`` bool: may item ``j`` supply negatives for item ``i``?"""
        mode = self.config.negatives
        if mode == "speaker":
            speakers = batch.labels.get(self.config.speaker_label)
            if speakers is not None:
                ids = {name: index for index, name in enumerate(dict.fromkeys(s.strip() for s in speakers))}
                codes = torch.tensor([ids[s.strip()] for s in speakers], device=device)
                return codes[:, None] == codes[None, :]
            if not self._warned_no_speaker:
                log.warning("cpc: negatives=speaker but batches carry no %r labels; drawing negatives from "
                            "the whole batch instead", self.config.speaker_label)
                self._warned_no_speaker = True
            mode = "batch"
        if mode == "utterance":
            return torch.eye(size, dtype=torch.bool, device=device)
        return torch.ones(size, size, dtype=torch.bool, device=device)

    def _negative_indices(self, allowed: Tensor, valid: Tensor) -> Tensor:
        """``(B, N)`` flat indices into ``z.view(B * F, C)``, uniform over each item's allowed valid frames.

        An item whose pool is empty (e.g. its only same-speaker clip has no frames) falls back to the batch.
        """
        batch_size = valid.shape[0]
        weights = (allowed[:, :, None] & valid[None, :, :]).reshape(batch_size, -1).float()
        empty = weights.sum(1) == 0
        if bool(empty.all()):
            raise ValueError("cpc: no valid frames in the batch to draw negatives from")
        weights[empty] = valid.reshape(1, -1).float()
        return torch.multinomial(weights, self.config.num_negatives, replacement=True)

    def _logits(self, predictions: Tensor, z: Tensor, index: Tensor) -> Tensor:
        """``(B, F, K, 1 + N)`` dot-product scores: the true ``z_{t+k}`` first, then the N negatives."""
        batch_size, frames, steps, channels = predictions.shape
        positives = (predictions * shift_future(z, steps)).sum(-1, keepdim=True)
        negatives = z.reshape(-1, channels)[index]  # (B, N, C)
        scores = torch.bmm(predictions.reshape(batch_size, -1, channels), negatives.transpose(1, 2))
        scores = scores.view(batch_size, frames, steps, -1)
        # Flat index of each positive z_{t+k}: a negative with that index is the positive itself.
        offsets = torch.arange(frames, device=z.device)[:, None] + torch.arange(1, steps + 1, device=z.device)
        target_index = torch.arange(batch_size, device=z.device)[:, None, None] * frames + offsets
        is_positive = target_index[..., None] == index[:, None, None, :]
        return torch.cat([positives, scores.masked_fill(is_positive, float("-inf"))], dim=-1)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        output = self.encoder(batch.waveforms, batch.lengths)
        z, steps = output.local_features, self.config.prediction_steps
        batch_size, frames, channels = z.shape
        predictions = self.predictors(output.features).view(batch_size, frames, steps, channels)
        valid = frame_mask(output.lengths, frames)
        index = self._negative_indices(self._allowed_pairs(batch, batch_size, z.device), valid)
        logits = self._logits(predictions, z, index).float()  # softmax statistics in float32 under AMP
        positions = torch.arange(frames, device=z.device)[None, :, None]
        offsets = torch.arange(1, steps + 1, device=z.device)
        targets_valid = positions + offsets < output.lengths[:, None, None]  # (B, F, K): z_{t+k} exists
        loss, _ = info_nce(logits, targets_valid)
        return ObjectiveOutput(loss, {"loss": loss.detach(), **self._step_accuracies(logits, targets_valid)})

    @staticmethod
    def _step_accuracies(logits: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """``acc_k1`` .. ``acc_kK`` (accuracy falls with distance) and their mean ``acc``."""
        with torch.no_grad():
            correct = (positive_wins(logits) & valid).sum((0, 1)).float()
            per_step = correct / valid.sum((0, 1)).clamp(min=1)
        metrics = {f"acc_k{k + 1}": value for k, value in enumerate(per_step.unbind())}
        return {"acc": per_step.mean(), **metrics}
