"""Span masks: the one sampler behind pretraining's masked prediction and fine-tuning's SpecAugment-style masking.

Every masking probability in audiossl's configs (``objective.mask_prob``, ``task.masking.time_prob`` and
``channel_prob``) follows fairseq and fairseq2: it is the *share* of positions to cover, so a row of
``n`` positions gets ``share * (n - 1) / span`` spans (the wav2vec 2.0 paper's p, the probability that a
frame starts a span, is ``share / span``: BASE's p = 0.065 with 10-frame spans is ``mask_prob: 0.65``).
Spans may overlap, so the covered share is somewhat smaller. Both samplers draw from torch's global RNG (a
resumed run draws the same masks):

- ``span_mask`` (pretraining): fairseq2's ``compute_row_mask``, the same whole number of spans in every row
  of equal length, so masked frames reshape to ``(batch, masked, dim)``;
- ``random_span_mask`` (fine-tuning): every position starts a span with probability ``share / span``, so a
  small share still masks something on short rows and narrow channel axes, where a whole number of spans
  per row would round down to none (0.05 of 128 channels in 16-channel spans).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def span_mask(shape: tuple[int, int], share: float, span: int, lengths: Tensor | None = None,
              min_spans: int = 0) -> Tensor:
    """``(rows, width)`` bool mask, spans of ``span`` inside each row's first ``lengths`` positions.

    Rows no longer than ``span`` (and a whole batch narrower than it) stay unmasked.
    """
    from fairseq2.nn.utils.mask import compute_row_mask

    rows, width = shape
    lengths = torch.full((rows,), width, dtype=torch.int64) if lengths is None else lengths.to(torch.int64)
    empty = torch.zeros(rows, width, dtype=torch.bool, device=lengths.device)
    long_enough = lengths > span
    if share <= 0 or not bool(long_enough.any()):
        return empty
    if not bool(long_enough.all()):
        empty[long_enough] = span_mask((int(long_enough.sum()), width), share, span, lengths[long_enough], min_spans)
        return empty
    mask = compute_row_mask(shape, span, share, row_lens=lengths, min_num_spans=min_spans, device=lengths.device)
    return mask if mask is not None and mask.numel() else empty


def random_span_mask(shape: tuple[int, int], share: float, span: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """``(rows, width)`` bool mask: each position starts a span of ``span`` with probability ``share / span``;
    overlapping spans merge."""
    rows, width = shape
    starts = torch.rand(rows, width, generator=generator) < share / span
    if span <= 1 or not starts.any():
        return starts
    kernel = torch.ones(1, 1, span)
    spread = F.conv1d(F.pad(starts.float()[:, None, :], (span - 1, 0)), kernel)[:, 0]
    return spread > 0
