"""Multi-Format contrastive learning (Wang & van den Oord, ICASSP 2021): a clip's raw waveform and its
spectrogram are two views of the same content, so an encoder of each format learns by picking the other
format's embedding of the same clip among the batch's other clips.

Two encoders share one architecture except their front-end: ``encoder`` reads the raw waveform through the
conv stack, ``spectrogram_encoder`` reads log-mel frames (``EncoderConfig.feature_encoder: logmel``). Each
clip gives two random crops (``_crops.two_views``: never the same audio); each crop goes through both
encoders, is max-pooled over its frames and mapped by a two-layer projection to a unit vector. With
``same_crop: false`` the cross-format pairs are (waveform of crop 1, spectrogram of crop 2) and the other way
round, so matching the formats of a clip needs what the two crops share, not their sample-exact alignment.
``within_weight`` adds the paper's within-format terms (waveform vs waveform, spectrogram vs spectrogram of the
two crops). Every term is symmetric InfoNCE over the batch at ``temperature`` (CLIP's form).

Either branch goes to downstream tasks: ``runs/pretrain/multiformat_tiny`` is the waveform encoder,
``runs/pretrain/multiformat_tiny:spectrogram`` the spectrogram one (``features.upstream.split_branch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder, EncoderConfig, build_encoder
from audiossl.objectives._crops import max_pool, two_views
from audiossl.objectives.base import CountsUpdates, ObjectiveOutput, register_objective


@dataclass
class MultiFormatConfig:
    name: str = "multiformat"
    spectrogram_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(feature_encoder="logmel"))
    """The spectrogram branch; its ``feature_encoder`` must be ``logmel``, the rest usually mirrors ``encoder``."""
    crop_seconds: float = 1.0
    """Length of each of the two crops per clip."""
    max_crop_share: float = 0.8
    """Crops of clips too short for two different crops take this share of the clip."""
    projection_dim: int = 128
    """Width of the unit vectors the loss compares (after Linear -> ReLU -> Linear)."""
    temperature: float = 0.1
    """Cosine similarities are divided by this before the softmax over the batch."""
    same_crop: bool = False
    """True: the two formats of the *same* crop are the positive pair; False: of the two different crops."""
    cross_weight: float = 1.0
    """Weight of the cross-format terms (waveform vs spectrogram)."""
    within_weight: float = 0.0
    """Weight of the within-format terms (crop 1 vs crop 2 in each format), the paper's ablation."""
    collapse_std: float = 0.01
    """Warn when the embeddings' spread across the batch falls below this."""
    collapse_check_after: int = 100

    def validate(self) -> MultiFormatConfig:
        self.spectrogram_encoder.validate()
        if self.spectrogram_encoder.feature_encoder != "logmel":
            raise ConfigError("invalid config at 'objective.spectrogram_encoder.feature_encoder': the spectrogram "
                              f"branch reads log-mel frames, set it to logmel (got "
                              f"{self.spectrogram_encoder.feature_encoder!r})")
        check_positive(self.crop_seconds, "objective.crop_seconds")
        check_positive(self.projection_dim, "objective.projection_dim")
        check_positive(self.temperature, "objective.temperature")
        check_positive(self.cross_weight, "objective.cross_weight", allow_zero=True)
        check_positive(self.within_weight, "objective.within_weight", allow_zero=True)
        if self.cross_weight == 0 and self.within_weight == 0:
            raise ConfigError("invalid config at 'objective.cross_weight': cross_weight and within_weight are both 0")
        if not 0 < self.max_crop_share < 1:
            raise ConfigError(f"invalid config at 'objective.max_crop_share': must be in (0, 1), "
                              f"got {self.max_crop_share}")
        return self


def projection_head(dim: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


def symmetric_info_nce(a: Tensor, b: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Row ``i`` of ``a`` must pick row ``i`` of ``b`` and vice versa; unit vectors ``(B, D)``.

    Returns the mean of both directions' cross-entropy and the accuracy of the ``a -> b`` direction.
    """
    logits = a @ b.T / temperature
    targets = torch.arange(len(a), device=a.device)
    loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    return loss, (logits.argmax(-1) == targets).float().mean()


@register_objective("multiformat", MultiFormatConfig)
@final
class MultiFormat(CountsUpdates):
    """Contrast a clip's waveform view with its spectrogram view; see the module docstring."""

    def __init__(self, config: MultiFormatConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.spectrogram_encoder = build_encoder(config.spectrogram_encoder)
        self.waveform_projection = projection_head(encoder.output_dim, config.projection_dim)
        self.spectrogram_projection = projection_head(self.spectrogram_encoder.output_dim, config.projection_dim)

    def embed(self, encoder: nn.Module, projection: nn.Module, crops: Tensor, lengths: Tensor) -> Tensor:
        output = encoder(crops, lengths)
        return F.normalize(projection(max_pool(output.features, output.lengths)).float(), dim=-1)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        if batch.size < 2:
            raise ValueError("multiformat: needs at least 2 clips per batch (the other clips are the negatives)")
        crops, lengths = two_views(batch, self.config.crop_seconds, self.config.max_crop_share)
        waveform = self.embed(self.encoder, self.waveform_projection, crops, lengths)
        spectrogram = self.embed(self.spectrogram_encoder, self.spectrogram_projection, crops, lengths)
        wave_1, wave_2 = waveform.chunk(2)
        spec_1, spec_2 = spectrogram.chunk(2)
        temperature = self.config.temperature
        if self.config.same_crop:
            pairs = [(wave_1, spec_1), (wave_2, spec_2)]
        else:
            pairs = [(wave_1, spec_2), (wave_2, spec_1)]
        cross = [symmetric_info_nce(a, b, temperature) for a, b in pairs]
        within = [symmetric_info_nce(wave_1, wave_2, temperature), symmetric_info_nce(spec_1, spec_2, temperature)]
        cross_loss = (cross[0][0] + cross[1][0]) / 2
        within_loss = (within[0][0] + within[1][0]) / 2
        loss = self.config.cross_weight * cross_loss + self.config.within_weight * within_loss
        metrics = {"loss": loss, "cross": cross_loss, "within": within_loss,
                   "acc": (cross[0][1] + cross[1][1]) / 2, "acc_wave": within[0][1], "acc_spec": within[1][1],
                   "std_wave": waveform.std(0).mean(), "std_spec": spectrogram.std(0).mean()}
        return ObjectiveOutput(loss, {name: value.detach() for name, value in metrics.items()})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Advice when either branch maps every clip to (almost) the same embedding."""
        if int(self.num_updates) < self.config.collapse_check_after:
            return []
        low = [name for name in ("std_wave", "std_spec") if metrics.get(name, 1.0) < self.config.collapse_std]
        if not low:
            return []
        return [f"multiformat looks collapsed: {', '.join(f'{n} {metrics[n]:.4f}' for n in low)} "
                f"(< {self.config.collapse_std:g}) with cross-format accuracy {metrics.get('acc', float('nan')):.3f}."
                " Try: a lower optim.lr, a longer warmup, a higher objective.temperature, more clips per batch."]
