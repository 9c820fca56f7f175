"""HuBERT (Hsu et al. 2021): predict the k-means cluster id of masked frames from their context.

Per batch: conv latents ``z`` -> projection -> span masking (the encoder's mask embedding) -> context
network -> ``final_projection``; logits are the cosine similarity between that projection and one learned
embedding per cluster, divided by ``logit_temperature``; cross-entropy on masked frames (weight 1) and on
unmasked frames (``unmasked_weight``, 0 at BASE). Targets never move, so nothing here can collapse.
With ``denoising`` on (WavLM) the encoder hears a corrupted copy of the batch while the targets stay those of
the clean audio, so it has to see through a second talker or background noise to predict them.

Targets come from the manifest's label file ``{split}.{label}`` (``audiossl-kmeans`` writes it): one line
of cluster ids per row on the encoder's frame grid for the *whole* file. A pretraining crop starts at
``batch.offsets``; with ``data.crop_step`` equal to the encoder stride the crop's frame ``t`` is the file's
frame ``offset / stride + t``. Label lines may be one frame longer or shorter than the encoder's count
(frame arithmetic of different tools); frames without a label are left out of the loss, and a line much
shorter than the crop needs (labels written for another frame grid) is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.audio.augment import DenoisingConfig, corrupt_batch
from audiossl.audio.features import frame_mask
from audiossl.config import check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives._masking import SpanMasking
from audiossl.objectives.base import Objective, ObjectiveOutput, register_objective

IGNORE = -100
MAX_MISSING_FRAMES = 2
"""Label lines may end this many frames before the encoder's last frame (tools round frame counts differently)."""


@dataclass
class HuBERTConfig:
    """Defaults are HuBERT BASE (fairseq ``hubert_base_librispeech``), first iteration (k = 100 on MFCC)."""

    name: str = "hubert"
    label: str = "km"  # label file kind: {split}.km
    num_clusters: int = 100
    mask_prob: float = 0.8  # share of frames masked, fairseq's mask_prob (the paper's p = 0.08 x 10-frame spans)
    mask_span: int = 10
    min_mask_spans: int = 2
    mask_contiguous: bool = False  # True: rows equalised without holes in the spans (fairseq/fairseq2: holes)
    final_dim: int = 256
    logit_temperature: float = 0.1
    masked_weight: float = 1.0
    unmasked_weight: float = 0.0
    feature_penalty_weight: float = 10.0
    denoising: DenoisingConfig = field(default_factory=DenoisingConfig)
    """WavLM's denoising masked prediction: the encoder hears a corrupted batch, the targets stay the clean audio's."""

    def validate(self) -> HuBERTConfig:
        self.denoising.validate()
        SpanMasking(self.mask_prob, self.mask_span, self.min_mask_spans, self.mask_contiguous).validate()
        for key in ("num_clusters", "final_dim", "logit_temperature"):
            check_positive(getattr(self, key), f"objective.{key}")
        for key in ("masked_weight", "unmasked_weight", "feature_penalty_weight"):
            check_positive(getattr(self, key), f"objective.{key}", allow_zero=True)
        return self


@register_objective("hubert", HuBERTConfig)
@final
class HuBERT(Objective):
    """Masked prediction of fixed frame cluster ids; see the module docstring."""

    def __init__(self, config: HuBERTConfig, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.masking = SpanMasking(config.mask_prob, config.mask_span, config.min_mask_spans,
                                   config.mask_contiguous)
        self.final_projection = nn.Linear(encoder.output_dim, config.final_dim)
        self.cluster_embeddings = nn.Parameter(torch.empty(config.num_clusters, config.final_dim).uniform_())
        self._parsed: dict[str, Tensor] = {}

    def _frame_targets(self, batch: AudioBatch, frames: int) -> Tensor:
        """``(B, frames)`` cluster ids of each crop's frames; ``IGNORE`` where the label line has none."""
        lines = batch.labels.get(self.config.label)
        if lines is None:
            raise ValueError(f"hubert: batches carry no {self.config.label!r} labels; run audiossl-kmeans for the "
                             f"manifest and add '{self.config.label}' to data.labels")
        stride = self.encoder.downsample
        assert batch.offsets is not None
        if bool((batch.offsets % stride).any()):
            raise ValueError(f"hubert: crop offsets {batch.offsets.tolist()} are not multiples of the encoder "
                             f"stride {stride}; set data.crop_step={stride}")
        targets = torch.full((batch.size, frames), IGNORE, dtype=torch.long)
        for row, (utt, line, offset, length) in enumerate(zip(batch.ids, lines, batch.offsets.tolist(),
                                                              self.encoder.feature_encoder.frame_lengths(batch.lengths).tolist())):
            labels = self._parse(utt, line)
            if len(labels) < offset // stride + length - MAX_MISSING_FRAMES:
                raise ValueError(f"hubert: {utt} has {len(labels)} {self.config.label} labels but its crop needs "
                                 f"{offset // stride + length}: the labels were written for another frame grid "
                                 f"(audiossl-kmeans frame_stride / receptive_field must match this encoder's stride "
                                 f"{stride} and receptive field {self.encoder.feature_encoder.receptive_field})")
            ids = labels[offset // stride:][:frames]
            targets[row, : len(ids)] = ids
        return targets.to(batch.waveforms.device)

    def _parse(self, utt: str, line: str) -> Tensor:
        if line not in self._parsed:  # each label line is parsed once per run
            ids = torch.tensor([int(token) for token in line.split()], dtype=torch.long)
            if len(ids) and (int(ids.max()) >= self.config.num_clusters or int(ids.min()) < 0):
                raise ValueError(f"hubert: {utt} has cluster id {int(ids.max())} outside "
                                 f"[0, objective.num_clusters={self.config.num_clusters})")
            self._parsed[line] = ids
        return self._parsed[line]

    def logits(self, features: Tensor) -> Tensor:
        """``(..., num_clusters)`` cosine(projection, cluster embedding) / temperature."""
        projected = F.normalize(self.final_projection(features).float(), dim=-1)
        return projected @ F.normalize(self.cluster_embeddings.float(), dim=-1).T / self.config.logit_temperature

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        batch = batch.select(self.masking.keep_maskable(batch, self.encoder, "hubert"))
        encoder, config = self.encoder, self.config
        waveforms = batch.waveforms
        if config.denoising.active and self.training:
            waveforms = corrupt_batch(waveforms, batch.lengths, config.denoising)
        z, frames = encoder.extract(waveforms, batch.lengths)
        valid = frame_mask(frames, z.shape[1])
        targets = self._frame_targets(batch, z.shape[1])
        scored = valid & (targets != IGNORE)
        mask = self.masking.draw(frames, z.shape[1])
        output = encoder.contextualize(encoder.mask(encoder.project(z), mask), frames, z)
        metrics: dict[str, Tensor] = {}
        loss = z.new_zeros((), dtype=torch.float32)
        # Unmasked frames are scored for acc_u even at weight 0: it shows whether the model copies its input.
        for name, where, weight in (("masked", mask & scored, config.masked_weight),
                                    ("unmasked", ~mask & scored, config.unmasked_weight)):
            logits = self.logits(output.features[where])
            if len(logits):
                part = F.cross_entropy(logits, targets[where])
                metrics[f"loss_{name[0]}"] = part.detach()
                metrics[f"acc_{name[0]}"] = (logits.argmax(-1) == targets[where]).float().mean()
                if weight:
                    loss = loss + weight * part
        if config.feature_penalty_weight:
            penalty = z.float().pow(2).mean(-1)[valid].mean()
            loss = loss + config.feature_penalty_weight * penalty
            metrics["penalty"] = penalty.detach()
        metrics["mask_frac"] = (mask & valid).sum() / valid.sum().clamp(min=1)
        return ObjectiveOutput(loss, {"loss": loss.detach()} | {k: v.detach() for k, v in metrics.items()})
