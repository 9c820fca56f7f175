"""Frame-wise signal descriptors on any hop: the regression targets of PASE+'s workers.

Frames follow the convention of ``audio.features`` (frame ``t`` covers samples ``[t * hop, t * hop + win)``,
not centred), so with ``hop`` = an encoder's stride, frame ``t`` of every descriptor lines up with encoder frame
``t``. Everything is batched tensor work: targets are recomputed for every training batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor

LOG_FLOOR = 1e-6


def frames(waveforms: Tensor, win: int, hop: int) -> Tensor:
    """``(B, T)`` -> ``(B, F, win)`` windows every ``hop`` samples (only windows that fit)."""
    if waveforms.shape[1] < win:
        waveforms = F.pad(waveforms, (0, win - waveforms.shape[1]))
    return waveforms.unfold(1, win, hop)


def power_spectrum(waveforms: Tensor, win: int, hop: int) -> Tensor:
    """``(B, F, win // 2 + 1)`` power of Hann-windowed frames."""
    windowed = frames(waveforms.float(), win, hop) * torch.hann_window(win, device=waveforms.device)
    return torch.fft.rfft(windowed).abs().pow(2)


def smooth_frames(values: Tensor, width: int) -> Tensor:
    """Centred moving average over ``width`` frames (``(B, F, D)``; edges average what exists).

    On a power spectrum this is Welch's estimate of the spectrum of a ``width``-frame window: PASE+'s
    "long" targets (200 ms) without a second, 8x larger FFT.
    """
    if width <= 1:
        return values
    x = values.transpose(1, 2)
    pooled = F.avg_pool1d(x, width, stride=1, padding=width // 2, count_include_pad=False)
    return pooled[..., : values.shape[1]].transpose(1, 2)


def mel_filters(win: int, n_mels: int, sample_rate: int) -> Tensor:
    """``(win // 2 + 1, n_mels)``: power spectrum frames ``@`` this are mel energies."""
    return torchaudio.functional.melscale_fbanks(win // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)


def cepstral_basis(n_mels: int, n_coefficients: int) -> Tensor:
    """``(n_mels, n_coefficients)``: log-mel frames ``@`` this are MFCCs (the orthonormal DCT-II, first
    ``n_coefficients`` kept, as torchaudio's MFCC)."""
    return torchaudio.functional.create_dct(n_coefficients, n_mels, "ortho")


def prosody(waveforms: Tensor, hop: int, sample_rate: int, window_ms: float = 40.0, fmin: float = 60.0,
            fmax: float = 400.0, voicing_threshold: float = 0.45) -> tuple[Tensor, Tensor]:
    """Per frame: voicing, log F0, zero-crossing rate and log energy, as PASE's prosody worker regresses.

    F0 is the lag of the highest normalised autocorrelation between ``fmin`` and ``fmax`` over a
    ``window_ms`` window (two periods of the lowest pitch); a frame is voiced when that peak exceeds
    ``voicing_threshold``. Returns ``(B, F, 3)`` [log F0, zero-crossing rate, log energy] and the voicing
    ``(B, F)`` as 0/1 floats; log F0 is 0 on unvoiced frames.
    """
    win = round(sample_rate * window_ms / 1000)
    x = frames(waveforms.float(), win, hop)
    x = x - x.mean(-1, keepdim=True)
    spectrum = torch.fft.rfft(x, n=2 * win)
    autocorrelation = torch.fft.irfft(spectrum.abs().pow(2), n=2 * win)[..., :win]
    energy = autocorrelation[..., 0]
    low, high = int(sample_rate / fmax), min(int(sample_rate / fmin), win - 1)
    peak, lag = (autocorrelation[..., low:high + 1] / energy.clamp(min=1e-8).unsqueeze(-1)).max(-1)
    voiced = ((peak > voicing_threshold) & (energy > 1e-6 * win)).float()
    log_f0 = torch.log(sample_rate / (lag + low).float()) * voiced
    crossings = (x[..., 1:].sign() != x[..., :-1].sign()).float().mean(-1)
    log_energy = torch.log(energy / win + LOG_FLOOR)
    return torch.stack([log_f0, crossings, log_energy], dim=-1), voiced
