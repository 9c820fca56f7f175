"""Waveform corruptions applied to a training batch on the fly (WavLM-style denoising pretraining).

A denoising objective hears the corrupted batch and predicts targets made from the clean one, so the
encoder learns to ignore what the corruption adds. Two kinds, both drawn from torch's global RNG (a
resumed run draws the same corruptions) and both aimed at one utterance's power, so an SNR means the same
thing on loud and quiet rows:

- another utterance of the batch over part of this one (WavLM's utterance mixing): a second talker;
- Gaussian noise with a random spectral slope between white (0) and brown (2): a stationary background.

Speed, reverberation and band limits are deliberately absent: the corpus's ``-other`` test condition uses
them, and it stays a test of what the encoder was not shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from audiossl.config import ConfigError, check_positive


@dataclass
class DenoisingConfig:
    """How often and how loudly a pretraining batch is corrupted (all zero: a clean batch, HuBERT BASE)."""

    mix_prob: float = 0.0
    """Share of rows that get a chunk of another row of the batch added (a second talker)."""
    mix_max_share: float = 0.5
    """The added chunk covers at most this share of the row (WavLM keeps the primary talker dominant in time)."""
    mix_snr_db: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    """Energy ratio of the primary utterance over the added chunk, drawn uniformly from this range."""
    noise_prob: float = 0.0
    """Share of rows that get coloured Gaussian noise over their whole length."""
    noise_snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    """Signal-to-noise ratio of that noise, drawn uniformly from this range."""

    def validate(self, key: str = "objective.denoising") -> DenoisingConfig:
        for name in ("mix_prob", "noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"invalid config at '{key}.{name}': must be in [0, 1], got {getattr(self, name)}")
        check_positive(self.mix_max_share, f"{key}.mix_max_share")
        for name in ("mix_snr_db", "noise_snr_db"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ConfigError(f"invalid config at '{key}.{name}': expected [low, high] in dB, got {low_high}")
        return self

    @property
    def active(self) -> bool:
        return self.mix_prob > 0 or self.noise_prob > 0


def _uniform(low_high: list[float], n: int, device: torch.device) -> Tensor:
    low, high = low_high
    return low + (high - low) * torch.rand(n, device=device)


def _power(x: Tensor) -> Tensor:
    return x.float().pow(2).mean(-1).clamp(min=1e-10)


def coloured_noise(rows: int, samples: int, device: torch.device) -> Tensor:
    """``(rows, samples)`` unit-power noise, each row with power spectrum ~ 1 / f^slope, slope ~ U(0, 2)."""
    spectrum = torch.fft.rfft(torch.randn(rows, samples, device=device))
    freqs = torch.arange(spectrum.shape[-1], device=device).clamp(min=1).float()
    slope = 2 * torch.rand(rows, 1, device=device)
    noise = torch.fft.irfft(spectrum * freqs.pow(-slope / 2), samples)
    return noise / _power(noise).sqrt().unsqueeze(-1)


def corrupt_batch(waveforms: Tensor, lengths: Tensor, config: DenoisingConfig) -> Tensor:
    """``waveforms (B, T)`` with some rows corrupted as ``config`` says; padding stays zero.

    Rows are scaled against their own power over their valid samples, so padding does not lower it.
    """
    rows, samples = waveforms.shape
    device = waveforms.device
    valid = torch.arange(samples, device=device) < lengths.unsqueeze(-1)
    clean_power = waveforms.float().pow(2).sum(-1) / lengths.clamp(min=1)
    out = waveforms.clone()
    if config.mix_prob > 0 and rows > 1:
        chosen = (torch.rand(rows, device=device) < config.mix_prob).nonzero().flatten().tolist()
        snr = _uniform(config.mix_snr_db, rows, device)
        for row in chosen:
            other = (row + int(torch.randint(1, rows, ()))) % rows
            length = min(int(lengths[row]), int(lengths[other]))
            span = max(1, int(float(torch.rand(())) * config.mix_max_share * length))
            start = int(torch.randint(0, length - span + 1, ()))
            source = int(torch.randint(0, length - span + 1, ()))
            chunk = waveforms[other, source:source + span]
            gain = (clean_power[row] / (_power(chunk) * 10 ** (snr[row] / 10))).sqrt()
            out[row, start:start + span] += gain * chunk
    if config.noise_prob > 0:
        chosen = torch.rand(rows, device=device) < config.noise_prob
        snr = _uniform(config.noise_snr_db, rows, device)
        noise = coloured_noise(rows, samples, device)
        gain = (clean_power / 10 ** (snr / 10)).sqrt() * chosen
        out = out + (gain.unsqueeze(-1) * noise).to(out.dtype)
    return out * valid
