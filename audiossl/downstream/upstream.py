"""What a downstream task reads features from: a pretrained encoder, a random one, or a classic front-end.

Every result needs its reference point, so the baselines (random init of the same architecture, log-mel
filterbank, MFCC) expose exactly the interface of a pretrained encoder: ``(waveforms, lengths) ->
EncoderOutput``. Heads and tasks never know which one they got.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from audiossl.models.output import EncoderOutput

BASELINES = ("random", "fbank", "mfcc")


@dataclass
class UpstreamSpec:
    """Everything needed to rebuild an upstream without the file it was first loaded from.

    ``kind`` is ``encoder`` (pretrained or random; weights come from the fine-tuning checkpoint) or a
    front-end name. ``encoder`` holds the ``EncoderConfig`` as a plain dict; ``source`` records where the
    weights came from (a checkpoint path or ``random``) for the report. ``cmvn`` (front-ends only):
    per-utterance mean/variance normalisation, right for phones but fatal for mean-pooled speaker ID
    (the pooled mean of normalised frames is zero for every utterance).
    """

    kind: str
    source: str
    encoder: dict[str, Any] = field(default_factory=dict)
    cmvn: bool = True


class Upstream(nn.Module):
    """Base: ``forward(waveforms, lengths) -> EncoderOutput``, plus the frame geometry tasks need.

    ``frame_stride`` (samples between frames) maps alignments in seconds onto frames; ``num_layers`` is
    the number of ``hidden_states`` a weighted layer sum mixes; ``dim`` is their width.
    """

    frame_stride: int
    num_layers: int
    dim: int
    spec: UpstreamSpec

    def set_trainable(self, feature_encoder: bool, context: bool) -> None:
        """Front-ends have nothing to train; encoders override this."""

    def trainable(self) -> bool:
        return any(parameter.requires_grad for parameter in self.parameters())


class FrontEndUpstream(Upstream):
    """Log-mel filterbank or MFCC frames (10 ms hop) as a one-layer "encoder": the SUPERB/CPC baselines."""

    def __init__(self, kind: str, cmvn: bool = True) -> None:
        from audiossl.audio.features import FRONTENDS

        super().__init__()
        if kind not in ("fbank", "mfcc"):
            raise ValueError(f"unknown front-end {kind!r}; choose fbank or mfcc")
        self.frontend = FRONTENDS[kind](cmvn=cmvn)
        self.frame_stride = int(self.frontend.downsample)
        self.dim = int(self.frontend.output_dim)
        self.num_layers = 1
        self.spec = UpstreamSpec(kind=kind, source=kind, cmvn=cmvn)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        frames, frame_lengths = self.frontend(waveforms, lengths)
        return EncoderOutput(features=frames, lengths=frame_lengths, hidden_states=[frames], local_features=frames)


class EncoderUpstream(Upstream):
    """A raw-waveform encoder (``feature_encoder`` + ``context``), pretrained or randomly initialised.

    The encoder's submodules are registered directly on this module, so a task's state_dict reads
    ``encoder.feature_encoder...``, exactly like a pretraining checkpoint: ``load_pretrained_encoder``
    accepts fine-tuned checkpoints too.

    Freezing is explicit state rather than optimizer tricks: frozen parts get ``requires_grad=False`` (no
    gradients, AdamW skips them) and stay in eval mode (no dropout noise) even when the trainer calls
    ``train()``.
    """

    def __init__(self, encoder: nn.Module, spec: UpstreamSpec) -> None:
        super().__init__()
        for name, child in encoder.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_encoder", encoder)  # not a submodule: its children already are
        self.spec = spec
        self.frame_stride = int(encoder.downsample)
        self.num_layers = int(encoder.num_hidden_states)
        self.dim = int(encoder.output_dim)
        self._frozen = {"feature_encoder": False, "context": False}

    def forward(self, waveforms: Tensor, lengths: Tensor, masker: nn.Module | None = None) -> EncoderOutput:
        """``masker`` (training only) hides spans of the projected features before the context network,
        where wav2vec 2.0 fine-tuning masks them."""
        encoder = self._encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable()):
            z, frame_lengths = encoder.extract(waveforms, lengths)
            projected = encoder.project(z)
            if masker is not None:
                projected = masker(projected)
            return encoder.contextualize(projected, frame_lengths, z)

    def set_trainable(self, feature_encoder: bool, context: bool) -> None:
        self._frozen = {"feature_encoder": not feature_encoder, "context": not context}
        for name, module in self.named_children():
            module.requires_grad_(not self._frozen[_part(name)])
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderUpstream:
        super().train(mode)
        self._encoder.training = mode
        for name, module in self.named_children():
            if self._frozen[_part(name)]:
                module.eval()
        return self


def _part(child: str) -> str:
    """The freezing schedule names two parts; the projection between them goes with ``context``."""
    return "feature_encoder" if child == "feature_encoder" else "context"


def build_upstream(init: str, encoder_config: Any = None, cmvn: bool = True) -> Upstream:
    """``init`` is a pretraining checkpoint (any objective) or ``random`` / ``fbank`` / ``mfcc``.

    ``random`` builds ``encoder_config`` (an ``EncoderConfig``) with fresh weights, the reference that
    shows what pretraining bought. ``cmvn`` applies to the front-ends (see ``UpstreamSpec``).
    """
    if init in ("fbank", "mfcc"):
        return FrontEndUpstream(init, cmvn)
    from audiossl.models.encoder import build_encoder

    if init == "random":
        if encoder_config is None:
            raise ValueError("init=random needs an encoder config (the 'encoder' key)")
        return EncoderUpstream(build_encoder(encoder_config), UpstreamSpec("encoder", "random", asdict(encoder_config)))
    from audiossl.training.checkpoint import load_pretrained_encoder

    checkpoint = resolve_checkpoint(init)
    encoder = load_pretrained_encoder(checkpoint)
    return EncoderUpstream(encoder, UpstreamSpec("encoder", str(checkpoint), asdict(encoder.config)))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its ``best.pt`` when there is one, else its latest step)."""
    from audiossl.training.checkpoint import BEST_NAME, checkpoint_dir, latest_checkpoint

    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        best = checkpoint_dir(path) / BEST_NAME
        found = best if best.is_file() else latest_checkpoint(path)
        if found is not None:
            return found
        raise FileNotFoundError(f"run directory {path} holds no checkpoint under {checkpoint_dir(path)}")
    raise FileNotFoundError(f"{path} is neither a checkpoint file, a run directory nor one of {list(BASELINES)}")


def rebuild_upstream(spec: UpstreamSpec) -> Upstream:
    """The same architecture as at fine-tuning time, weights to be loaded from the fine-tuned checkpoint."""
    if spec.kind != "encoder":
        return FrontEndUpstream(spec.kind, spec.cmvn)
    from audiossl.config import to_config
    from audiossl.models.encoder import EncoderConfig, build_encoder

    return EncoderUpstream(build_encoder(to_config(EncoderConfig, spec.encoder, "upstream.encoder")), spec)
