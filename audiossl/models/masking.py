"""Span masks: the one sampler behind pretraining's masked prediction and fine-tuning's SpecAugment-style masking.

Every masking probability in audiossl's configs (``objective.mask_prob``, ``task.masking.time_prob`` and
``channel_prob``) follows fairseq and fairseq2: it is the *share* of positions to cover, so a row of
``n`` positions gets ``share * (n - 1) / span`` spans (the wav2vec 2.0 paper's p, the probability that a
frame starts a span, is ``share / span``: BASE's p = 0.065 with 10-frame spans is ``mask_prob: 0.65``).
Spans may overlap, so the covered share is somewhat smaller. Both samplers draw from torch's global RNG (a
resumed run draws the same masks):

- ``span_mask`` (pretraining): the same whole number of spans in every row, then the same number of masked
  frames, so masked frames reshape to ``(batch, masked, dim)``. Overlap leaves rows with different counts;
  fairseq and fairseq2 (``compute_row_mask``, the default here) unmask random frames of the fuller rows down
  to the emptiest row's count. On short rows that punches holes in most spans: with 2 s crops at 10 ms
  (199 frames, 12 spans of 10, 4 rows) half of a row's masked runs are shorter than 5 frames, each
  predictable by copying a neighbour. ``contiguous=True`` unmasks instead one run of the row's masked frames
  in time order (from a random place in that order), so at most two spans are cut short and no holes appear;
- ``random_span_mask`` (fine-tuning): every position starts a span with probability ``share / span``, so a
  small share still masks something on short rows and narrow channel axes, where a whole number of spans
  per row would round down to none (0.05 of 128 channels in 16-channel spans).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def span_mask(shape: tuple[int, int], share: float, span: int, lengths: Tensor | None = None,
              min_spans: int = 0, contiguous: bool = False) -> Tensor:
    """``(rows, width)`` bool mask, spans of ``span`` inside each row's first ``lengths`` positions, the same
    number of masked positions in every row (``contiguous``: see the module docstring).

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
        empty[long_enough] = span_mask((int(long_enough.sum()), width), share, span, lengths[long_enough], min_spans,
                                       contiguous)
        return empty
    if contiguous:
        return _contiguous_span_mask(width, share, span, lengths, min_spans)
    mask = compute_row_mask(shape, span, share, row_lens=lengths, min_num_spans=min_spans, device=lengths.device)
    return mask if mask is not None and mask.numel() else empty


def _contiguous_span_mask(width: int, share: float, span: int, lengths: Tensor, min_spans: int) -> Tensor:
    """``compute_row_mask``'s spans (as many per row, starts drawn with replacement), equalised by unmasking
    one run of each row's masked positions taken in time order, cyclically from a random rank."""
    num_spans = int((share / span * (lengths - 1)).to(torch.int64).min())
    if num_spans < max(min_spans, 1):
        raise ValueError(f"min_spans is {min_spans}, but rows of {int(lengths.min())} positions fit only "
                         f"{num_spans} span(s) of {span} at share {share}")
    rows, device = len(lengths), lengths.device
    starts = (torch.rand(rows, num_spans, device=device) * (lengths - span + 1)[:, None]).to(torch.int64)
    positions = (starts[..., None] + torch.arange(span, device=device)).flatten(1)
    mask = torch.zeros(rows, width, dtype=torch.bool, device=device).scatter_(1, positions, True)
    counts = mask.sum(1)
    rank = mask.cumsum(1) - 1  # each masked position's place in its row's time order
    offset = (torch.rand(rows, device=device) * counts).to(torch.int64)
    return mask & ((rank - offset[:, None]) % counts[:, None] < int(counts.min()))


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
