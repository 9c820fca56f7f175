"""What a downstream task reads features from: a pretrained encoder, a random one, or a classic front-end.

Every result needs its reference point, so the baselines (random init of the same architecture, log-mel
filterbank, MFCC) expose exactly the interface of a pretrained encoder: ``(waveforms, lengths) ->
EncoderOutput``. Heads and tasks never know which one they got.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor, nn

from audiossl.models.output import EncoderOutput

log = logging.getLogger(__name__)

FRONT_ENDS = ("fbank", "mfcc")
"""The classic front-ends an upstream (or ``fuse``) can name."""
BASELINES = ("random", *FRONT_ENDS)
BRANCH_SEPARATOR = ":"  # hydra takes it unquoted in overrides, unlike "#"


@dataclass
class UpstreamSpec:
    """Everything needed to rebuild an upstream without the file it was first loaded from.

    ``kind`` is ``encoder`` (pretrained or random; weights come from the fine-tuning checkpoint) or a
    front-end name. ``encoder`` holds the ``EncoderConfig`` as a plain dict; ``source`` records where the
    weights came from (a checkpoint path or ``random``) for the report. ``cmvn`` (front-ends only):
    per-utterance mean/variance normalisation, right for phones but fatal for mean-pooled speaker ID
    (the pooled mean of normalised frames is zero for every utterance). ``fuse`` (encoders only): a front-end
    (``fbank`` or ``mfcc``, with CMVN) whose frames are appended to every hidden state, so a head reads the
    spectrum beside the learned features (spectral + self-supervised fusion, Berrebbi et al., 2022): what an
    encoder pretrained on little or clean audio left out, the spectrum still carries.
    """

    kind: str
    source: str
    encoder: dict[str, Any] = field(default_factory=dict)
    cmvn: bool = True
    fuse: str | None = None


class Upstream(nn.Module):
    """Base: ``forward(waveforms, lengths) -> EncoderOutput``, plus the frame geometry tasks need.

    ``frame_stride`` (samples between frames) and ``receptive_field`` (samples one frame sees, from
    ``frame * frame_stride`` on) map alignments in seconds onto frames; ``num_layers`` is the number of
    ``hidden_states`` a weighted layer sum mixes; ``dim`` is their width. ``padding_invariant`` is False
    when an utterance's frames change with the padding around it in a batch (GroupNorm over time in the
    first conv, as in wav2vec 2.0 BASE): exact per-utterance features then need one utterance per forward.
    """

    frame_stride: int
    receptive_field: int
    num_layers: int
    dim: int
    spec: UpstreamSpec
    padding_invariant: bool = True

    def set_trainable(self, feature_encoder: bool, context: bool, may_thaw: Collection[str] = ()) -> None:
        """Front-ends have nothing to train; encoders override this."""


class FrontEndUpstream(Upstream):
    """Log-mel filterbank or MFCC frames (10 ms hop) as a one-layer "encoder": the SUPERB/CPC baselines."""

    def __init__(self, kind: str, cmvn: bool = True) -> None:
        from audiossl.audio.features import FRONTENDS

        super().__init__()
        if kind not in FRONT_ENDS:
            raise ValueError(f"unknown front-end {kind!r}; choose one of {list(FRONT_ENDS)}")
        self.frontend = FRONTENDS[kind](cmvn=cmvn)
        self.frame_stride = int(self.frontend.downsample)
        self.receptive_field = int(self.frontend.win_length)
        self.dim = int(self.frontend.output_dim)
        self.num_layers = 1
        self.spec = UpstreamSpec(kind=kind, source=kind, cmvn=cmvn)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        frames, frame_lengths = self.frontend(waveforms, lengths)
        return EncoderOutput(features=frames, lengths=frame_lengths, hidden_states=[frames], local_features=frames)


class EncoderUpstream(Upstream):
    """A raw-waveform encoder (``feature_encoder`` + ``context``), pretrained or randomly initialised.

    The encoder's submodules are registered directly on this module, so a task's state_dict reads
    ``encoder.feature_encoder...``, exactly like a pretraining checkpoint: ``load_encoder`` accepts
    fine-tuned checkpoints too.

    Freezing is explicit state rather than optimizer tricks: a frozen part runs without autograd (no
    gradients, AdamW skips it) and stays in eval mode (no dropout noise) even when the trainer calls
    ``train()``. ``requires_grad`` only marks what may *ever* train (``set_trainable(..., may_thaw=...)``):
    DistributedDataParallel registers its gradient buckets once, at wrapping time, so a part that thaws
    later must already be registered then, or its gradients would never be averaged across ranks.
    """

    def __init__(self, encoder: nn.Module, spec: UpstreamSpec) -> None:
        super().__init__()
        for name, child in encoder.named_children():
            self.add_module(name, child)
        for name, parameter in encoder.named_parameters(recurse=False):  # e.g. the mask embedding
            self.register_parameter(name, parameter)
        object.__setattr__(self, "_encoder", encoder)  # not a submodule: its children already are
        self.spec = spec
        self.frame_stride = int(encoder.downsample)
        self.receptive_field = int(encoder.feature_encoder.receptive_field)
        self.num_layers = int(encoder.num_hidden_states)
        self.dim = int(encoder.output_dim)
        self.padding_invariant = bool(encoder.feature_encoder.padding_invariant)
        self.fused = FrontEndUpstream(spec.fuse) if spec.fuse else None
        if self.fused is not None:
            if self.frame_stride % self.fused.frame_stride:
                raise ValueError(f"cannot fuse {spec.fuse} (hop {self.fused.frame_stride}) with an encoder whose "
                                 f"frames are {self.frame_stride} samples apart: not a whole number of hops")
            self.dim += self.fused.dim * (self.frame_stride // self.fused.frame_stride)
        self._frozen = {"feature_encoder": False, "context": False}

    @property
    def base_encoder(self) -> nn.Module:
        """The wrapped ``Encoder`` (same parameters), e.g. to export it."""
        return self._encoder

    def forward(self, waveforms: Tensor, lengths: Tensor, masker: nn.Module | None = None) -> EncoderOutput:
        """``masker`` (training only) hides spans of the projected features before the context network,
        where wav2vec 2.0 fine-tuning masks them, filling masked frames with the encoder's mask embedding."""
        encoder, grad = self._encoder, torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not self._frozen["feature_encoder"]):
            z, frame_lengths = encoder.extract(waveforms, lengths)
        with torch.set_grad_enabled(grad and not self._frozen["context"]):
            projected = encoder.project(z)
            if masker is not None:
                projected = masker(projected, encoder.mask_embedding)
            output = encoder.contextualize(projected, frame_lengths, z)
        return output if self.fused is None else self._append_spectrum(output, waveforms, lengths)

    def _append_spectrum(self, output: EncoderOutput, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        """Every hidden state ``(B, T, D)`` becomes ``(B, T', D + k F)``: the ``k`` front-end frames (10 ms hop)
        that fall in each encoder frame go side by side (``k`` = 2 for a 20 ms encoder, 1 for a 10 ms one), and
        ``T'`` is the shorter of the two frame counts (they differ by the conv edges)."""
        spectrum = self.fused(waveforms, lengths)
        per_frame = self.frame_stride // self.fused.frame_stride
        batch, steps, channels = spectrum.features.shape
        steps -= steps % per_frame
        stacked = spectrum.features[:, :steps].reshape(batch, steps // per_frame, per_frame * channels)
        frames = min(output.features.shape[1], stacked.shape[1])

        def append(hidden: Tensor) -> Tensor:
            return torch.cat([hidden[:, :frames], stacked[:, :frames].to(hidden.dtype)], dim=-1)

        return EncoderOutput(features=append(output.features),
                             lengths=torch.minimum(output.lengths, spectrum.lengths // per_frame),
                             hidden_states=[append(h) for h in output.hidden_states],
                             local_features=output.local_features[:, :frames])

    def set_trainable(self, feature_encoder: bool, context: bool, may_thaw: Collection[str] = ()) -> None:
        """Train the parts named True; ``may_thaw``: the parts (``feature_encoder``, ``context``) that may
        become trainable later (kept registered for gradients, see the class docstring)."""
        self._frozen = {"feature_encoder": not feature_encoder, "context": not context}
        for name, module in self.named_children():
            module.requires_grad_(not self._frozen[part_of(name)] or part_of(name) in may_thaw)
        for name, parameter in self.named_parameters(recurse=False):
            parameter.requires_grad_(not self._frozen["context"] or "context" in may_thaw)
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderUpstream:
        super().train(mode)
        self._encoder.training = mode
        for name, module in self.named_children():
            if self._frozen[part_of(name)]:
                module.eval()
        return self


def part_of(name: str) -> str:
    """The part (``feature_encoder`` or ``context``) a child module or parameter name belongs to: the freezing
    schedule names two parts; the projection between them and the mask embedding go with ``context``."""
    return "feature_encoder" if name.split(".")[0] == "feature_encoder" else "context"


def build_upstream(init: str, cmvn: bool = True, fuse: str | None = None) -> Upstream:
    """``init`` is any checkpoint ``load_encoder`` opens, or ``fbank`` / ``mfcc``; ``cmvn`` applies to the
    front-ends, ``fuse`` to encoders (see ``UpstreamSpec``). Random encoders come from ``random_upstream``."""
    if init in FRONT_ENDS:
        return FrontEndUpstream(init, cmvn)
    if init == "random":
        raise ValueError("a random upstream needs an architecture and a seed: use random_upstream")
    encoder, checkpoint = load_encoder(init)
    return EncoderUpstream(encoder, UpstreamSpec("encoder", str(checkpoint), asdict(encoder.config), fuse=fuse))


def random_upstream(architecture: Any, seed: int, fuse: str | None = None) -> Upstream:
    """A freshly initialised encoder drawn from ``seed``: the reference that shows what pretraining bought.

    ``architecture`` is an ``EncoderConfig`` or any checkpoint whose architecture to copy (its weights are
    not used). Seeding here, not by the caller, makes the same ``seed`` give the same encoder in a
    fine-tuning run and in the bench.
    """
    from audiossl.models.encoder import EncoderConfig, build_encoder

    config = architecture if isinstance(architecture, EncoderConfig) else encoder_config_of(architecture)
    torch.manual_seed(seed)
    return EncoderUpstream(build_encoder(config), UpstreamSpec("encoder", "random", asdict(config), fuse=fuse))


def load_encoder(path: str | Path) -> tuple[Any, Path]:
    """Any checkpoint as our ``Encoder`` (its ``config`` is the architecture) and the file it came from.

    The one door every command uses: an audiossl checkpoint (pretraining or fine-tuning, a file or a run
    directory), an HF directory, a fairseq ``.pt``, our torchaudio file or a fairseq2 checkpoint. A
    ``:branch`` suffix picks a second encoder an objective owns (``runs/pretrain/multiformat_tiny:spectrogram``).
    """
    from audiossl.models.interop import open_checkpoint

    checkpoint = resolve_checkpoint(path)
    return encoder_of(open_checkpoint(checkpoint), split_branch(path)[1]), checkpoint


def split_branch(path: str | Path) -> tuple[Path, str]:
    """``run:spectrogram`` -> ``(run, "spectrogram")``; a plain path names the main ``encoder``.

    Objectives with two encoders (Multi-Format: a waveform and a spectrogram branch) keep the second one's
    weights under ``<branch>_encoder.`` and its ``EncoderConfig`` at ``objective.<branch>_encoder``, so either
    branch loads wherever an upstream is accepted.
    """
    text = str(path)
    base, _, branch = text.rpartition(BRANCH_SEPARATOR)
    if not base or not branch.isidentifier():  # no suffix, or a colon that belongs to the path (C:\, s3://)
        return Path(text), "encoder"
    return Path(base), f"{branch}_encoder"


def encoder_of(opened: Any, branch: str = "encoder") -> Any:
    """``load_encoder`` for a checkpoint already opened (``models.interop.open_checkpoint``), read once."""
    from audiossl.models.interop import load_peer

    if opened.kind == "audiossl":
        return _audiossl_encoder(opened.contents, opened.path, branch)
    if branch != "encoder":
        raise ValueError(f"{opened.path}: a {opened.kind} checkpoint has one encoder, there is no {branch!r}")
    peer = load_peer(opened)
    for note in peer.notes:
        log.warning("%s (%s): %s", opened.path, peer.kind, note)
    return peer.encoder


def _audiossl_encoder(checkpoint: dict[str, Any], path: Path, branch: str = "encoder") -> Any:
    """The encoder of one of our checkpoints: ``config.encoder`` rebuilt, the ``encoder.`` weights loaded
    (for another ``branch``: ``config.objective.<branch>`` and its ``<branch>.`` weights)."""
    from audiossl.config import to_config
    from audiossl.models.encoder import EncoderConfig, build_encoder
    from audiossl.training.checkpoint import encoder_state_dict

    config = checkpoint.get("config") or {}
    key = "encoder" if branch == "encoder" else f"objective.{branch}"
    encoder_node = config.get("encoder") if branch == "encoder" else (config.get("objective") or {}).get(branch)
    if encoder_node is None:
        raise ValueError(f"{path}: no 'config.{key}' in the checkpoint; cannot rebuild the encoder")
    encoder = build_encoder(to_config(EncoderConfig, encoder_node, key))
    weights = encoder_state_dict(checkpoint["model"], f"{branch}.")
    if not weights:
        raise ValueError(f"{path}: the model state has no '{branch}.' entries")
    if "mask_embedding" not in weights:  # saved before the encoder owned it (the objective's masker did)
        legacy = checkpoint["model"].get("masker.temporal_mask_embed")
        weights["mask_embedding"] = legacy if legacy is not None else encoder.mask_embedding.detach().clone()
    encoder.load_state_dict(weights)
    return encoder


def encoder_config_of(path: str | Path) -> Any:
    """The ``EncoderConfig`` a checkpoint describes (``init=random encoder_from=...``).

    Read under a forked RNG: building the encoder draws initial weights, and the random encoder built next
    must get the same weights from its seed whatever was read before it.
    """
    with torch.random.fork_rng(devices=[]):
        return load_encoder(path)[0].config


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a peer checkpoint directory (HF, fairseq2), or a run directory (its ``best.pt``
    when there is one, else its latest step)."""
    from audiossl.models.interop import directory_kind
    from audiossl.training.checkpoint import BEST_NAME, checkpoint_dir, latest_checkpoint

    path = split_branch(path)[0]
    if path.is_file() or directory_kind(path) is not None:
        return path
    if path.is_dir():
        best = checkpoint_dir(path) / BEST_NAME
        found = best if best.is_file() else latest_checkpoint(path)
        if found is not None:
            return found
        raise FileNotFoundError(f"run directory {path} holds no checkpoint under {checkpoint_dir(path)}")
    raise FileNotFoundError(f"{path} is neither a checkpoint file, a run directory, an HF or fairseq2 checkpoint "
                            f"directory nor one of {list(BASELINES)}")


def rebuild_upstream(spec: UpstreamSpec) -> Upstream:
    """The same architecture as at fine-tuning time, weights to be loaded from the fine-tuned checkpoint."""
    if spec.kind != "encoder":
        return FrontEndUpstream(spec.kind, spec.cmvn)
    from audiossl.config import to_config
    from audiossl.models.encoder import EncoderConfig, build_encoder

    return EncoderUpstream(build_encoder(to_config(EncoderConfig, spec.encoder, "upstream.encoder")), spec)
