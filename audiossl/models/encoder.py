"""Encoder = conv feature encoder over the waveform + projection + context network.

The split into ``extract`` / ``project`` / ``contextualize`` exists because objectives hook in between:
wav2vec 2.0 masks the projected features before the context network and quantises the unmasked ones; CPC
predicts the raw latents ``z``; fine-tuning freezes ``feature_encoder`` (and for a while ``context``) by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

import torch
from torch import Tensor, nn

from audiossl.config import ConfigError, check_choice, check_positive
from audiossl.models.context import RNNContext, TransformerContext
from audiossl.models.feature_encoder import (
    CONV_ACTIVATIONS, CONV_NORMS, WAV2VEC2_CONV_LAYERS, ConvFeatureEncoder, SpectrogramFeatureEncoder)
from audiossl.models.output import EncoderOutput

CONTEXT_KINDS = ("transformer", "gru", "lstm")
FEATURE_ENCODERS = ("conv", "logmel")


@dataclass
class EncoderConfig:
    """Everything that defines an encoder; defaults are wav2vec 2.0 BASE (``conf/encoder/w2v2_base.yaml``)."""

    name: str = "w2v2_base"
    # Feature encoder: ``conv`` (the raw waveform through ``conv_layers``) or ``logmel`` (an ``n_mels`` log-mel
    # spectrogram, 25 ms / 10 ms: the spectrogram branch of Multi-Format contrastive learning).
    feature_encoder: str = "conv"
    n_mels: int = 80
    # Conv feature encoder: [channels, kernel, stride] per conv layer.
    conv_layers: list[list[int]] = field(default_factory=lambda: [list(spec) for spec in WAV2VEC2_CONV_LAYERS])
    conv_norm: str = "group_norm_first"
    conv_bias: bool = False
    conv_activation: str = "gelu"
    conv_dropout: float = 0.0
    feature_grad_scale: float = 0.1
    normalize_waveform: bool = False  # per-utterance zero mean / unit variance over valid samples
    # Projection to the model dimension (dropout here is wav2vec 2.0's ``dropout_input``).
    model_dim: int = 768
    feature_dropout: float = 0.1
    # Context network.
    context: str = "transformer"
    num_layers: int = 12
    dropout: float = 0.1
    # Transformer only.
    num_heads: int = 12
    ffn_dim: int = 3072
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layerdrop: float = 0.05
    norm_first: bool = False
    causal: bool = False
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    # RNN only.
    rnn_residual: bool = False

    def validate(self) -> EncoderConfig:
        check_choice(self.feature_encoder, FEATURE_ENCODERS, "encoder.feature_encoder")
        check_positive(self.n_mels, "encoder.n_mels")
        check_choice(self.conv_norm, CONV_NORMS, "encoder.conv_norm")
        check_choice(self.conv_activation, CONV_ACTIVATIONS, "encoder.conv_activation")
        check_choice(self.context, CONTEXT_KINDS, "encoder.context")
        check_positive(self.model_dim, "encoder.model_dim")
        check_positive(self.num_layers, "encoder.num_layers")
        if not 0 < self.feature_grad_scale <= 1:
            raise ConfigError(f"invalid config at 'encoder.feature_grad_scale': must be in (0, 1], "
                              f"got {self.feature_grad_scale}")
        if any(len(spec) != 3 or min(spec) < 1 for spec in self.conv_layers) or not self.conv_layers:
            raise ConfigError("invalid config at 'encoder.conv_layers': expected a list of "
                              f"[channels, kernel, stride] with positive entries, got {self.conv_layers}")
        if self.context == "transformer" and self.model_dim % self.num_heads:
            raise ConfigError(f"invalid config at 'encoder.num_heads': {self.num_heads} does not divide "
                              f"model_dim={self.model_dim}")
        return self


def normalize_waveforms(waveforms: Tensor, lengths: Tensor) -> Tensor:
    """Zero mean, unit variance per utterance over its valid samples (padding stays zero)."""
    mask = (torch.arange(waveforms.shape[1], device=waveforms.device)[None] < lengths[:, None]).to(waveforms.dtype)
    count = lengths.clamp(min=1).to(waveforms.dtype)[:, None]
    mean = (waveforms * mask).sum(1, keepdim=True) / count
    var = (((waveforms - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (waveforms - mean) * torch.rsqrt(var + 1e-5) * mask


def _build_context(cfg: EncoderConfig) -> nn.Module:
    if cfg.context == "transformer":
        return TransformerContext(
            cfg.model_dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
            layerdrop=cfg.layerdrop, norm_first=cfg.norm_first, causal=cfg.causal,
            pos_conv_kernel=cfg.pos_conv_kernel, pos_conv_groups=cfg.pos_conv_groups)
    return RNNContext(cfg.context, cfg.model_dim, cfg.num_layers, dropout=cfg.dropout, residual=cfg.rnn_residual)


def _build_feature_encoder(cfg: EncoderConfig) -> nn.Module:
    if cfg.feature_encoder == "logmel":
        return SpectrogramFeatureEncoder(cfg.n_mels)
    return ConvFeatureEncoder(cfg.conv_layers, norm=cfg.conv_norm, bias=cfg.conv_bias, activation=cfg.conv_activation,
                              dropout=cfg.conv_dropout, grad_scale=cfg.feature_grad_scale)


@final
class Encoder(nn.Module):
    """Raw waveform -> ``EncoderOutput`` with ``num_hidden_states`` = context layers + 1 hidden states."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.feature_encoder = _build_feature_encoder(config)
        self.feature_norm = nn.LayerNorm(self.feature_encoder.output_dim)
        self.feature_projection = nn.Linear(self.feature_encoder.output_dim, config.model_dim)
        self.feature_dropout = nn.Dropout(config.feature_dropout)
        # Stands in for masked frames (wav2vec 2.0 and HuBERT pretraining, fine-tuning's time masks); it is part
        # of the encoder so fine-tuning masks with the embedding pretraining learnt, as fairseq does.
        self.mask_embedding = nn.Parameter(torch.empty(config.model_dim).uniform_())
        self.context = _build_context(config)
        self.downsample = self.feature_encoder.downsample
        self.output_dim = config.model_dim
        self.num_hidden_states = config.num_layers + 1

    @property
    def is_causal(self) -> bool:
        """True when no output frame has seen the future beyond the conv receptive field."""
        return bool(self.context.is_causal)

    def extract(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(batch, samples)`` -> latents ``z`` ``(batch, frames, channels)`` and valid frame counts."""
        if self.config.normalize_waveform:
            waveforms = normalize_waveforms(waveforms, lengths)
        return self.feature_encoder(waveforms, lengths)

    def project(self, z: Tensor) -> Tensor:
        """LayerNorm + linear to ``model_dim`` + dropout: the input of the context network."""
        return self.feature_dropout(self.feature_projection(self.feature_norm(z)))

    def mask(self, x: Tensor, mask: Tensor) -> Tensor:
        """Replace the frames where ``mask`` ``(batch, frames)`` is True by the learned mask embedding."""
        return torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)

    def contextualize(self, x: Tensor, frame_lengths: Tensor, z: Tensor | None = None) -> EncoderOutput:
        """Run the context network; ``z`` (if given) is passed through as ``local_features``."""
        layers = self.context(x, frame_lengths)
        return EncoderOutput(features=layers[-1], lengths=frame_lengths, hidden_states=[x, *layers],
                             local_features=z if z is not None else x)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        z, frame_lengths = self.extract(waveforms, lengths)
        return self.contextualize(self.project(z), frame_lengths, z)


def build_encoder(config: EncoderConfig) -> Encoder:
    return Encoder(config)
