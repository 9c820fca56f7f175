"""Autoregressive Predictive Coding (Chung et al. 2019) over a raw-waveform encoder.

A causal encoder (conv stack + GRU/LSTM) reads the waveform up to frame ``t`` and a linear head predicts
the log-mel frame ``t + shift`` with an L1 loss. Targets are 80-bin, 25 ms log-mel frames computed from the
same waveform *at the encoder's frame rate* (hop = encoder downsample, frame ``t`` starting at sample
``t * hop`` like encoder frame ``t``), so frame ``t`` of both lines up. ``copy_l1`` is the L1 of predicting
frame ``t + shift`` as frame ``t``: the model has learnt something once ``loss`` is clearly below it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import final

import torch
from torch import nn
from typing_extensions import override

from audiossl.audio.features import LogMel, frame_mask, mean_over_frames
from audiossl.config import check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives.base import Objective, ObjectiveOutput, register_objective, require_causal

log = logging.getLogger(__name__)


@dataclass
class APCConfig:
    name: str = "apc"
    shift: int = 3  # predict n frames ahead (the paper's best n for phonetic content is about 3)
    n_mels: int = 80
    win_ms: float = 25.0
    cmvn: bool = True  # per-utterance mean/variance normalised targets: L1 comparable across recordings
    sample_rate: int = 16_000

    def validate(self) -> APCConfig:
        check_positive(self.shift, "objective.shift")
        check_positive(self.n_mels, "objective.n_mels")
        check_positive(self.win_ms, "objective.win_ms")
        return self


@register_objective("apc", APCConfig)
@final
class APC(Objective):
    """L1 prediction of the log-mel frame ``shift`` steps ahead; see the module docstring."""

    def __init__(self, config: APCConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        require_causal(encoder, "APC")
        self.encoder = encoder
        hop, window = encoder.downsample, round(config.sample_rate * config.win_ms / 1000)
        self.target_features = LogMel(config.sample_rate, config.n_mels, window, hop, cmvn=config.cmvn)
        self.head = nn.Linear(encoder.output_dim, config.n_mels)
        receptive = encoder.feature_encoder.receptive_field
        if config.shift * hop < receptive:
            log.warning("apc: target frame t+%d starts %d samples after frame t, inside the encoder's %d-sample "
                        "receptive field: the model sees part of its target (raise objective.shift)",
                        config.shift, config.shift * hop, receptive)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        if batch.sample_rate != self.config.sample_rate:
            raise ValueError(f"apc: batch sample rate {batch.sample_rate} != objective.sample_rate "
                             f"{self.config.sample_rate}")
        output = self.encoder(batch.waveforms, batch.lengths)
        with torch.no_grad():
            mel, mel_lengths = self.target_features(batch.waveforms, batch.lengths)
        shift = self.config.shift
        frames = min(output.features.shape[1], mel.shape[1])
        if frames <= shift:
            raise ValueError(f"apc: clips of batch {batch.ids[:3]}... give {frames} frames, need more than "
                             f"objective.shift={shift}")
        valid = frame_mask(torch.minimum(output.lengths, mel_lengths) - shift, frames - shift)
        target = mel[:, shift:frames]
        prediction = self.head(output.features[:, : frames - shift]).float()  # float32 loss under AMP
        loss = mean_over_frames((prediction - target).abs().mean(-1), valid)
        copy_l1 = mean_over_frames((mel[:, : frames - shift] - target).abs().mean(-1), valid)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "copy_l1": copy_l1.detach()})
