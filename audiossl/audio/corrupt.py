"""Acoustic corruptions that turn clean synthetic speech into a harder ``-other`` condition.

Each corruption is a small pure function of (waveform, rng, parameters) so it can be tested alone;
``corrupt`` chains them in a fixed order (speed -> reverb -> band-limit -> noise). Noise comes last
so the requested SNR holds exactly against the signal the listener hears, and speed comes first
because it is the only one that moves phone boundaries: ``scale_segments`` rescales them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr
from scipy.fft import irfft, next_fast_len, rfft
from scipy.signal import butter, fftconvolve, sosfilt

from audiossl.audio.espeak import merge_segments

Segments = list[tuple[str, float, float]]
NOISE_KINDS = ("white", "pink", "babble")


@dataclass
class CorruptionConfig:
    """Ranges the corruptions draw from; every utterance of an ``-other`` split gets noise."""

    snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    noise_kinds: list[str] = field(default_factory=lambda: list(NOISE_KINDS))
    reverb_prob: float = 0.5
    rt60_s: list[float] = field(default_factory=lambda: [0.2, 0.7])
    telephone_prob: float = 0.3
    speed_prob: float = 0.5
    speed: list[float] = field(default_factory=lambda: [0.9, 1.1])


@dataclass
class Corrupted:
    waveform: np.ndarray
    phones: Segments
    applied: list[str]  # human-readable record, e.g. ["speed=1.05", "noise=pink@12.0dB"]


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of ``noisy`` against the ``clean`` signal it was made from (whole-utterance powers)."""
    return 10.0 * np.log10(power(clean) / max(power(noisy - clean), 1e-20))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain (equal energy per octave).

    The FFT runs at a fast length (small prime factors) and is cut to ``n``: arbitrary utterance
    lengths can otherwise make it 10x slower.
    """
    size = next_fast_len(n, real=True)
    spectrum = rfft(rng.standard_normal(size))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    return irfft(spectrum / np.sqrt(freqs), size)[:n].astype(np.float32)


def mix_talkers(talkers: list[np.ndarray], n: int) -> np.ndarray:
    """Babble: sum of several talkers at equal power, each tiled to ``n`` samples."""
    babble = np.zeros(n, np.float32)
    for talker in talkers:
        if len(talker) and power(talker) > 0:
            tiled = np.resize(talker, n)
            babble += tiled / np.sqrt(power(tiled) + 1e-20)
    return babble


def add_noise(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with ``g`` chosen so the whole-utterance SNR is exactly ``snr_db``."""
    if power(noise) == 0 or power(clean) == 0:
        return clean.copy()
    gain = np.sqrt(power(clean) / (power(noise) * 10.0 ** (snr_db / 10.0)))
    return (clean + gain * noise[: len(clean)]).astype(np.float32)


def synthetic_rir(rt60_s: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Room impulse response: a direct-path impulse plus exponentially decaying noise.

    The energy decays by 60 dB in ``rt60_s`` (amplitude ``exp(-6.9 t / rt60)``). Keeping the direct
    path at t=0 means the phone alignment is unchanged by the convolution.
    """
    n = max(int(rt60_s * sample_rate), 1)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    tail *= 0.5 / np.sqrt(np.sum(tail**2) + 1e-20)  # reverberant energy a fixed fraction of direct
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(wave: np.ndarray, rt60_s: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    wet = fftconvolve(wave, synthetic_rir(rt60_s, rng, sample_rate))[: len(wave)]
    return (wet * np.sqrt(power(wave) / max(power(wet), 1e-20))).astype(np.float32)


def band_limit(wave: np.ndarray, sample_rate: int, low_hz: float = 300.0, high_hz: float = 3400.0) -> np.ndarray:
    """Telephone channel: 4th-order Butterworth band-pass 300-3400 Hz."""
    sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    return sosfilt(sos, wave).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves too, like Kaldi's speed perturbation)."""
    return soxr.resample(wave, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def scale_segments(phones: Segments, factor: float, n_samples: int, sample_rate: int) -> Segments:
    """Phone times after a speed change by ``factor``: divided by it, re-covering the new length."""
    scaled = [(p, start / factor, end / factor) for p, start, end in phones]
    return merge_segments(scaled, round(n_samples / sample_rate, 3))


def corrupt(
    wave: np.ndarray,
    phones: Segments,
    rng: np.random.Generator,
    cfg: CorruptionConfig,
    sample_rate: int,
    babble: Callable[[int, np.random.Generator], np.ndarray] | None = None,
) -> Corrupted:
    """Apply a random chain of corruptions; ``babble(n, rng)`` supplies other talkers when drawn."""
    applied: list[str] = []
    if rng.random() < cfg.speed_prob:
        factor = float(rng.uniform(*cfg.speed))
        wave = change_speed(wave, factor, sample_rate)
        phones = scale_segments(phones, factor, len(wave), sample_rate)
        applied.append(f"speed={factor:.3f}")
    if rng.random() < cfg.reverb_prob:
        rt60 = float(rng.uniform(*cfg.rt60_s))
        wave = reverberate(wave, rt60, rng, sample_rate)
        applied.append(f"reverb={rt60:.2f}s")
    if rng.random() < cfg.telephone_prob:
        wave = band_limit(wave, sample_rate)
        applied.append("telephone")
    kinds = [k for k in cfg.noise_kinds if k != "babble" or babble is not None]
    if kinds:
        kind, snr = str(rng.choice(kinds)), float(rng.uniform(*cfg.snr_db))
        wave = add_noise(wave, make_noise(kind, len(wave), rng, babble), snr)
        applied.append(f"noise={kind}@{snr:.1f}dB")
    return Corrupted(wave, phones, applied)


def make_noise(
    kind: str, n: int, rng: np.random.Generator, babble: Callable[[int, np.random.Generator], np.ndarray] | None
) -> np.ndarray:
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble" and babble is not None:
        return babble(n, rng)
    raise ValueError(f"unknown noise kind {kind!r} (choose from {NOISE_KINDS}; babble needs talkers)")
