"""PASE+ (Pascual et al. 2019; Ravanelli et al. 2020): one encoder, many small "workers", each solving a
self-supervised task from the encoder's frames, so no single target decides what the features keep.

Regression workers (a 1-hidden-layer MLP each, MSE against per-utterance normalised targets computed from the
clean waveform at the encoder's frame rate, ``audio.descriptors``):

* ``waveform``: the ``hop`` samples of frame ``t`` (a framewise decoder standing in for PASE's upsampling
  waveform decoder);
* ``lps``, ``fbank``, ``mfcc``: log power spectrum, 40 log-mel bins, 20 MFCCs of a 25 ms window;
* ``lps_long``, ``fbank_long``, ``mfcc_long``: the same over 200 ms (PASE+'s long-context targets; here the
  25 ms power spectra averaged over 200 ms, Welch's estimate);
* ``prosody``: log F0, zero-crossing rate and log energy, plus voicing (a logistic output, BCE).

Binary InfoMax workers (a bilinear score of a pair of embeddings, BCE; PASE's MLP over the concatenated pair
stayed at chance for hundreds of updates in our tests, a bilinear score, as CPC and COLA compare pairs, does not):

* ``lim`` (local): two frames of the same clip vs a frame of this clip and one of another clip;
* ``gim`` (global): the means over two ``gim_seconds`` chunks of the same clip vs of two clips.

They assume two clips of a batch are two speakers, as PASE does. PASE+'s gammatone worker is not built (no
gammatone filterbank in the stack; the log-mel workers cover the same band structure). With ``denoising`` on,
the encoder hears a corrupted batch (a second talker, coloured noise; ``audio.augment``) and the workers
still predict the clean audio's descriptors: PASE+'s online distortion, minus reverberation, band drop and
clipping, which the augmenter does not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.audio import descriptors
from audiossl.audio.augment import DenoisingConfig, corrupt_batch
from audiossl.audio.features import frame_mask, mean_over_frames, utterance_cmvn, window_frame_lengths
from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives.base import CountsUpdates, ObjectiveOutput, register_objective

REGRESSION_WORKERS = ("waveform", "lps", "fbank", "mfcc", "lps_long", "fbank_long", "mfcc_long", "prosody")
INFOMAX_WORKERS = ("lim", "gim")
N_FBANK, N_MFCC = 40, 20


@dataclass
class PASEConfig:
    name: str = "pase"
    workers: list[str] = field(default_factory=lambda: [*REGRESSION_WORKERS, *INFOMAX_WORKERS])
    """Which workers train the encoder (all of PASE+'s that need no labels)."""
    worker_hidden: int = 256
    """Hidden units of each worker's MLP (PASE+: small workers, so the encoder does the work)."""
    win_ms: float = 25.0
    """Window of the short-context spectral targets."""
    long_ms: float = 200.0
    """Context of the ``*_long`` targets."""
    gim_seconds: float = 0.5
    """Length of the chunks the global InfoMax worker averages."""
    sample_rate: int = 16_000
    denoising: DenoisingConfig = field(default_factory=DenoisingConfig)
    """PASE+'s online distortion: the encoder hears a corrupted batch, the workers predict the clean one."""
    stalled_check_after: int = 200
    """Warn after this many updates if the regression workers still explain almost nothing."""

    def validate(self) -> PASEConfig:
        known = (*REGRESSION_WORKERS, *INFOMAX_WORKERS)
        unknown = [w for w in self.workers if w not in known]
        if unknown or not self.workers:
            raise ConfigError(f"invalid config at 'objective.workers': unknown {unknown} or empty; choose from "
                              f"{list(known)}")
        for key in ("worker_hidden", "win_ms", "long_ms", "gim_seconds", "sample_rate"):
            check_positive(getattr(self, key), f"objective.{key}")
        self.denoising.validate()
        return self


def mlp(dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.PReLU(), nn.Linear(hidden, out))


class Targets:
    """Every regression target of a batch at the encoder's frame rate, from the clean waveform."""

    def __init__(self, config: PASEConfig, hop: int) -> None:
        self.config, self.hop = config, hop
        self.win = round(config.sample_rate * config.win_ms / 1000)
        self.long_frames = max(1, round(config.long_ms / 1000 * config.sample_rate / hop))
        # Fixed matrices, built once rather than per batch.
        self.mel = descriptors.mel_filters(self.win, N_FBANK, config.sample_rate)
        self.cepstral = descriptors.cepstral_basis(N_FBANK, N_MFCC)

    def dims(self) -> dict[str, int]:
        spectrum = self.win // 2 + 1
        return {"waveform": self.hop, "lps": spectrum, "fbank": N_FBANK, "mfcc": N_MFCC, "lps_long": spectrum,
                "fbank_long": N_FBANK, "mfcc_long": N_MFCC, "prosody": 4}

    def __call__(self, waveforms: Tensor, lengths: Tensor, wanted: list[str]) -> tuple[dict[str, Tensor], Tensor]:
        """``{worker: (B, F, D)}`` and the valid frames per clip; prosody's last column is voicing (0/1)."""
        frame_lengths = window_frame_lengths(lengths, self.win, self.hop)
        power = descriptors.power_spectrum(waveforms, self.win, self.hop)
        mel, cepstral = self.mel.to(power.device), self.cepstral.to(power.device)
        spectra = {"": power, "_long": descriptors.smooth_frames(power, self.long_frames)}
        out = {}
        for suffix, spectrum in spectra.items():
            if f"lps{suffix}" in wanted:
                out[f"lps{suffix}"] = torch.log(spectrum + descriptors.LOG_FLOOR)
            log_mel = torch.log(spectrum @ mel + descriptors.LOG_FLOOR)
            if f"fbank{suffix}" in wanted:
                out[f"fbank{suffix}"] = log_mel
            if f"mfcc{suffix}" in wanted:
                out[f"mfcc{suffix}"] = log_mel @ cepstral
        out = {name: utterance_cmvn(value, frame_lengths) for name, value in out.items()}
        if "waveform" in wanted:
            scale = waveforms.float().pow(2).sum(1) / lengths.clamp(min=1)
            chunks = descriptors.frames(waveforms.float() * scale.clamp(min=1e-10).rsqrt()[:, None], self.hop, self.hop)
            out["waveform"] = chunks[:, : power.shape[1]]
        if "prosody" in wanted:
            values, voiced = descriptors.prosody(F.pad(waveforms, (0, self.win)), self.hop, self.config.sample_rate)
            values = utterance_cmvn(values[:, : power.shape[1]], frame_lengths)
            out["prosody"] = torch.cat([values, voiced[:, : power.shape[1], None]], dim=-1)
        return out, frame_lengths


def chunk_means(features: Tensor, lengths: Tensor, size: int) -> Tensor:
    """Mean of ``size`` frames (fewer in short clips) from a random valid start per clip: ``(B, D)``."""
    size_per_clip = lengths.clamp(min=1).clamp(max=size)
    room = (lengths - size_per_clip + 1).clamp(min=1)
    starts = (torch.rand(len(lengths), device=features.device) * room).long()
    positions = torch.arange(features.shape[1], device=features.device)[None]
    inside = (positions >= starts[:, None]) & (positions < (starts + size_per_clip)[:, None])
    return (features * inside.unsqueeze(-1)).sum(1) / size_per_clip[:, None]


def random_frames(features: Tensor, lengths: Tensor) -> Tensor:
    """One random valid frame per clip: ``(B, D)``."""
    index = (torch.rand(len(lengths), device=features.device) * lengths.clamp(min=1)).long()
    return features[torch.arange(len(lengths), device=features.device), index]


@register_objective("pase", PASEConfig)
@final
class PASE(CountsUpdates):
    """Regression and InfoMax workers over one encoder; see the module docstring."""

    def __init__(self, config: PASEConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.targets = Targets(config, encoder.downsample)
        dims, dim, hidden = self.targets.dims(), encoder.output_dim, config.worker_hidden
        self.regressors = nn.ModuleDict({w: mlp(dim, hidden, dims[w]) for w in config.workers if w in dims})
        self.discriminators = nn.ModuleDict({w: nn.Bilinear(dim, dim, 1) for w in config.workers
                                             if w in INFOMAX_WORKERS})

    def regression_losses(self, features: Tensor, targets: dict[str, Tensor], valid: Tensor) -> dict[str, Tensor]:
        losses = {}
        for name, worker in self.regressors.items():
            prediction, target = worker(features).float(), targets[name][:, : features.shape[1]]
            if name == "prosody":
                voicing = F.binary_cross_entropy_with_logits(prediction[..., -1], target[..., -1], reduction="none")
                squared = (prediction[..., :-1] - target[..., :-1]).pow(2).mean(-1)
                losses[name] = mean_over_frames(squared + voicing, valid)
            else:
                losses[name] = mean_over_frames((prediction - target).pow(2).mean(-1), valid)
        return losses

    def infomax(self, name: str, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """BCE of the ``name`` discriminator on positive (same clip) and negative (next clip) pairs, and accuracy."""
        if name == "lim":
            anchor, positive = random_frames(features, lengths), random_frames(features, lengths)
        else:
            size = max(1, round(self.config.gim_seconds * self.config.sample_rate / self.encoder.downsample))
            anchor, positive = chunk_means(features, lengths, size), chunk_means(features, lengths, size)
        shift = int(torch.randint(1, len(lengths), ()))
        negative = positive.roll(shift, dims=0)
        pairs = torch.cat([anchor, anchor]).float(), torch.cat([positive, negative]).float()  # bilinear: no autocast
        logits = self.discriminators[name](*pairs).squeeze(-1)
        labels = torch.cat([torch.ones(len(anchor)), torch.zeros(len(anchor))]).to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        return loss, ((logits > 0).float() == labels).float().mean()

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        if batch.sample_rate != self.config.sample_rate:
            raise ValueError(f"pase: batch sample rate {batch.sample_rate} != objective.sample_rate "
                             f"{self.config.sample_rate}")
        heard = batch.waveforms
        if self.training and self.config.denoising.active:
            heard = corrupt_batch(batch.waveforms, batch.lengths, self.config.denoising)
        output = self.encoder(heard, batch.lengths)
        with torch.no_grad():
            targets, target_lengths = self.targets(batch.waveforms, batch.lengths, list(self.regressors))
        frames = min(output.features.shape[1], next(iter(targets.values())).shape[1]) if targets else 0
        lengths = torch.minimum(output.lengths, target_lengths).clamp(max=frames)
        losses = self.regression_losses(output.features[:, :frames], targets, frame_mask(lengths, frames))
        metrics: dict[str, Tensor] = {}
        for name in self.discriminators if batch.size > 1 else ():  # one clip has no negative to contrast
            losses[name], metrics[f"acc_{name}"] = self.infomax(name, output.features, output.lengths)
        loss = torch.stack(list(losses.values())).sum()
        metrics.update({"loss": loss, **losses})
        return ObjectiveOutput(loss, {name: value.detach() for name, value in metrics.items()})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Advice when, after a while, the spectral workers still predict barely better than the mean (MSE ~1
        on unit-variance targets): the encoder is not learning."""
        if int(self.num_updates) < self.config.stalled_check_after:
            return []
        spectral = [metrics[w] for w in ("lps", "fbank", "mfcc") if w in metrics]
        if not spectral or min(spectral) < 0.9:
            return []
        return [f"pase looks stalled: the spectral workers' MSE is {min(spectral):.3f} on unit-variance targets "
                "(predicting the mean gives 1.0). Try: a lower optim.lr, a longer warmup, fewer workers."]
