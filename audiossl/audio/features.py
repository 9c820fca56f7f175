"""Spectral front-ends as ``nn.Module`` s: log-mel (APC targets), Kaldi fbank and MFCC (downstream baselines).

All share the encoder-like interface ``forward(waveforms (B, T), lengths (B,)) -> (features (B, F, D),
frame_lengths (B,))`` plus ``output_dim`` and ``downsample`` (samples per frame), so a baseline can stand in
for a learned encoder. Frames are not centred (frame ``t`` covers samples ``[t * hop, t * hop + win)``), the
same convention as the conv encoder, so APC targets line up with encoder frames without an offset.
"""

from __future__ import annotations

from typing import final

import torch
import torchaudio
from torch import Tensor, nn


def window_frame_lengths(lengths: Tensor, win_length: int, hop_length: int) -> Tensor:
    """Frames that fit entirely inside ``lengths`` samples (Kaldi's ``snip_edges=True``)."""
    frames = torch.div(lengths.to(torch.int64) - win_length, hop_length, rounding_mode="floor") + 1
    return frames.clamp(min=0)


def frame_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """``(batch, frames)`` bool, True on valid frames."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def mean_over_frames(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of per-frame ``values`` ``(B, F)`` over the frames where ``valid`` is True (0 when none): a
    frame-level loss that padding does not dilute."""
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1)


def utterance_cmvn(features: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance mean/variance normalisation over valid frames; padding becomes zero.

    Removes channel and level differences between recordings, which otherwise dominate an L1 loss on
    log-mel frames and the features of a linear probe.
    """
    mask = frame_mask(lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)
    count = lengths.clamp(min=1).to(features.dtype)[:, None, None]
    mean = (features * mask).sum(1, keepdim=True) / count
    var = (((features - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (features - mean) * torch.rsqrt(var + eps) * mask


@final
class LogMel(nn.Module):
    """``log(mel power + floor)`` with a ``win_length`` window every ``hop_length`` samples (no centring)."""

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 80, win_length: int = 400,
                 hop_length: int = 160, floor: float = 1e-6, cmvn: bool = False) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=win_length, win_length=win_length, hop_length=hop_length,
            n_mels=n_mels, center=False, power=2.0)
        self.win_length, self.downsample, self.output_dim = win_length, hop_length, n_mels
        self.floor, self.cmvn = floor, cmvn

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        frame_lengths = window_frame_lengths(lengths, self.win_length, self.downsample)
        if waveforms.shape[1] < self.win_length:
            return waveforms.new_zeros(waveforms.shape[0], 0, self.output_dim), frame_lengths
        features = torch.log(self.mel(waveforms) + self.floor).transpose(1, 2)
        if self.cmvn:
            features = utterance_cmvn(features, frame_lengths)
        return features, frame_lengths


def _pad_frames(per_item: list[Tensor], dim: int) -> Tensor:
    width = max((f.shape[0] for f in per_item), default=0)
    out = per_item[0].new_zeros(len(per_item), width, dim) if per_item else torch.zeros(0, 0, dim)
    for index, features in enumerate(per_item):
        out[index, : features.shape[0]] = features
    return out


@final
class Fbank(nn.Module):
    """Kaldi-compatible log-mel filterbank (``torchaudio.compliance.kaldi.fbank``): 25 ms / 10 ms, 80 bins.

    Computed per utterance on its valid samples only, so padding never changes a frame; input is scaled to
    16-bit range as Kaldi expects (the energy floor and dither are defined for that range).
    """

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 80, cmvn: bool = True) -> None:
        super().__init__()
        self.sample_rate, self.output_dim, self.cmvn = sample_rate, n_mels, cmvn
        self.win_length, self.downsample = sample_rate * 25 // 1000, sample_rate * 10 // 1000

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        frame_lengths = window_frame_lengths(lengths, self.win_length, self.downsample)
        per_item = []
        for waveform, length, frames in zip(waveforms, lengths.tolist(), frame_lengths.tolist()):
            if frames == 0:
                per_item.append(waveforms.new_zeros(0, self.output_dim))
                continue
            per_item.append(torchaudio.compliance.kaldi.fbank(
                waveform[None, :length] * 32768, num_mel_bins=self.output_dim, dither=0.0,
                sample_frequency=self.sample_rate, energy_floor=0.0))
        features = _pad_frames(per_item, self.output_dim)
        return (utterance_cmvn(features, frame_lengths) if self.cmvn else features), frame_lengths


@final
class MFCC(nn.Module):
    """13 MFCCs (+ deltas and delta-deltas -> 39 dims): the classic baseline of CPC's linear probes.

    Deltas use a 5-frame window, so the last two valid frames of a padded item see padding: harmless for a
    baseline, but not bit-identical to the item alone.
    """

    def __init__(self, sample_rate: int = 16_000, n_mfcc: int = 13, deltas: bool = True,
                 cmvn: bool = True) -> None:
        super().__init__()
        self.win_length, self.downsample = sample_rate * 25 // 1000, sample_rate * 10 // 1000
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": self.win_length, "win_length": self.win_length,
                       "hop_length": self.downsample, "n_mels": 40, "center": False})
        self.deltas = torchaudio.transforms.ComputeDeltas() if deltas else None
        self.output_dim = n_mfcc * (3 if deltas else 1)
        self.cmvn = cmvn

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        frame_lengths = window_frame_lengths(lengths, self.win_length, self.downsample)
        if waveforms.shape[1] < self.win_length:
            return waveforms.new_zeros(waveforms.shape[0], 0, self.output_dim), frame_lengths
        coefficients = self.mfcc(waveforms)  # (B, n_mfcc, F)
        if self.deltas is not None:
            first = self.deltas(coefficients)
            coefficients = torch.cat([coefficients, first, self.deltas(first)], dim=1)
        features = coefficients.transpose(1, 2)
        return (utterance_cmvn(features, frame_lengths) if self.cmvn else features), frame_lengths


FRONTENDS = {"logmel": LogMel, "fbank": Fbank, "mfcc": MFCC}
