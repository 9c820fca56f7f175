"""WavLM-style denoising corruptions: levels as configured, padding untouched, deterministic under a seed."""

from __future__ import annotations

import pytest
import torch

from audiossl.audio.augment import DenoisingConfig, coloured_noise, corrupt_batch
from audiossl.config import ConfigError, to_config


def speech_like(rows: int = 4, samples: int = 16_000) -> torch.Tensor:
    torch.manual_seed(3)
    t = torch.arange(samples) / 16_000
    envelope = (torch.sin(2 * torch.pi * 3 * t) > 0).float()
    return torch.stack([0.1 * (i + 1) * envelope * torch.sin(2 * torch.pi * (150 + 40 * i) * t) for i in range(rows)])


def test_noise_lands_at_the_drawn_snr_and_padding_stays_zero() -> None:
    waves, lengths = speech_like(), torch.tensor([16_000, 16_000, 12_000, 16_000])
    waves[2, 12_000:] = 0
    config = DenoisingConfig(noise_prob=1.0, noise_snr_db=[10.0, 10.0]).validate()
    torch.manual_seed(0)
    noisy = corrupt_batch(waves, lengths, config)
    assert torch.equal(noisy[2, 12_000:], torch.zeros(4_000))
    for row, length in enumerate(lengths.tolist()):
        signal = waves[row, :length].pow(2).mean()
        noise = (noisy[row, :length] - waves[row, :length]).pow(2).mean()
        assert 10 * torch.log10(signal / noise) == pytest.approx(10.0, abs=1.5)  # noise power is per whole row


def test_mixing_adds_another_row_of_the_batch_and_is_reproducible() -> None:
    waves, lengths = speech_like(), torch.full((4,), 16_000)
    config = DenoisingConfig(mix_prob=1.0, mix_snr_db=[0.0, 0.0])
    torch.manual_seed(1)
    first = corrupt_batch(waves, lengths, config)
    torch.manual_seed(1)
    assert torch.equal(first, corrupt_batch(waves, lengths, config))
    changed = (first - waves).abs().sum(-1) > 0
    assert bool(changed.all())
    touched = ((first - waves).abs() > 0).float().mean(-1)
    assert bool((touched <= config.mix_max_share + 1e-3).all())  # the primary talker keeps most of the row


def test_off_by_default_and_bad_values_name_the_key() -> None:
    waves, lengths = speech_like(), torch.full((4,), 16_000)
    assert not DenoisingConfig().active
    assert torch.equal(corrupt_batch(waves, lengths, DenoisingConfig()), waves)
    with pytest.raises(ConfigError, match="objective.denoising.noise_prob"):
        DenoisingConfig(noise_prob=1.5).validate()
    with pytest.raises(ConfigError, match="mix_snr_db"):
        DenoisingConfig(mix_snr_db=[5.0, -5.0]).validate()
    assert to_config(DenoisingConfig, {"mix_prob": 0.2}, "objective.denoising").mix_prob == 0.2


def test_coloured_noise_has_unit_power_and_a_spectral_slope() -> None:
    torch.manual_seed(2)
    noise = coloured_noise(64, 8_000, torch.device("cpu"))
    assert noise.pow(2).mean(-1).allclose(torch.ones(64), atol=1e-4)
    spectrum = torch.fft.rfft(noise).abs().pow(2)
    low, high = spectrum[:, 10:100].mean(-1), spectrum[:, 2_000:3_000].mean(-1)
    assert bool((low >= high * 0.5).all()) and bool((low > 5 * high).any())  # white to brown, never bluer
