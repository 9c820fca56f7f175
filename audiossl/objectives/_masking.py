"""Span masking policy of the masked-prediction objectives (wav2vec 2.0, HuBERT): which clips can be masked.

Spans come from ``models.masking.span_mask`` (``share * (frames - 1) / span`` span starts per row, the same
count in every row so masked frames reshape to ``(batch, masked, dim)``); the masked frames are replaced
by the encoder's own learned ``mask_embedding``, which fine-tuning reuses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.models.masking import span_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpanMasking:
    """``share``: fairseq's ``mask_prob``, the share of frames to cover (the papers' p times ``span``);
    ``contiguous``: equalise rows without holes in the spans (``models.masking``)."""

    share: float
    span: int
    min_spans: int
    contiguous: bool = False

    def validate(self) -> SpanMasking:
        check_positive(self.share, "objective.mask_prob")
        if self.share < 0.2 and self.span > 1:
            log.warning("objective.mask_prob=%g is the share of frames to mask (fairseq's mask_prob: 0.65 for "
                        "wav2vec 2.0 BASE, 0.8 for HuBERT); if %g was the paper's p (a frame's chance of starting "
                        "a span), write mask_prob=%g", self.share, self.share, self.share * self.span)
        check_positive(self.min_spans, "objective.min_mask_spans")
        if self.span < 1:
            raise ConfigError(f"invalid config at 'objective.mask_span': must be >= 1, got {self.span}")
        return self

    def maskable(self, frames: Tensor) -> Tensor:
        """Items long enough for ``min_spans`` spans, with ``compute_row_mask``'s own arithmetic."""
        num_spans = (self.share / self.span * (frames - 1)).to(torch.int64)
        return (frames > self.span) & (num_spans >= self.min_spans)

    def keep_maskable(self, batch: AudioBatch, encoder: Encoder, objective: str) -> Tensor:
        """Bool ``(batch,)`` of clips to keep; raises naming the data keys when none is long enough."""
        keep = self.maskable(encoder.feature_encoder.frame_lengths(batch.lengths))
        if not bool(keep.any()):
            frames = math.ceil(self.min_spans * self.span / self.share) + 1
            raise ValueError(f"{objective}: every clip in batch {batch.ids[:3]}... is too short to mask "
                             f"{self.min_spans} spans; clips need about {frames} frames "
                             f"({frames * encoder.downsample} samples): raise data.min_sample_size")
        if not bool(keep.all()):
            log.warning("%s: dropped %d clip(s) too short to mask", objective, int((~keep).sum()))
        return keep

    def draw(self, frames: Tensor, width: int) -> Tensor:
        """``(batch, width)`` bool mask over the valid frames of each row."""
        return span_mask((len(frames), width), self.share, self.span, frames, self.min_spans, self.contiguous)
