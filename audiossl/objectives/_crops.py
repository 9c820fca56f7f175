"""Random crops of whole clips and pooling over their frames, shared by the clip-level contrastive objectives
(COLA, Multi-Format): two views of one clip must never be the same audio, and padding must never win a pool."""

from __future__ import annotations

import torch
from torch import Tensor

from audiossl.audio.features import frame_mask
from audiossl.data.batch import AudioBatch


def crop_lengths(lengths: Tensor, crop: int, max_share: float) -> Tensor:
    """Samples per crop: ``crop``, or ``max_share`` of a clip too short to hold two different crops."""
    return torch.minimum(torch.full_like(lengths, crop), (lengths.float() * max_share).long()).clamp(min=1)


def two_starts(lengths: Tensor, sizes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two different uniform crop starts per clip (the second skips the first's position)."""
    room = (lengths - sizes + 1).clamp(min=1)
    first = (torch.rand(len(lengths), generator=generator) * room).long()
    second = (torch.rand(len(lengths), generator=generator) * (room - 1).clamp(min=1)).long()
    second = torch.where(room > 1, second + (second >= first).long(), first)
    return first, second


def gather_crops(waveforms: Tensor, starts: Tensor, sizes: Tensor, width: int) -> Tensor:
    """``(B, width)`` crops ``waveforms[i, starts[i]: starts[i] + sizes[i]]``, zero past each size."""
    index = (starts[:, None] + torch.arange(width, device=waveforms.device)).clamp(max=waveforms.shape[1] - 1)
    return waveforms.gather(1, index) * frame_mask(sizes, width).to(waveforms.dtype)


def max_pool(features: Tensor, lengths: Tensor) -> Tensor:
    """Max over valid frames (padding never wins); items without frames pool to zeros."""
    valid = frame_mask(lengths, features.shape[1]).unsqueeze(-1)
    pooled = features.masked_fill(~valid, float("-inf")).amax(1)
    return torch.where(lengths[:, None] > 0, pooled, torch.zeros_like(pooled))


def two_views(batch: AudioBatch, crop_seconds: float, max_share: float) -> tuple[Tensor, Tensor]:
    """``(2B, width)`` crops (first views, then second views) and their lengths in samples.

    Starts come from a ``torch.Generator`` seeded from the global torch RNG, so a resumed run (which restores
    that RNG) draws the same crops.
    """
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
    crop = round(crop_seconds * batch.sample_rate)
    lengths = batch.lengths.cpu()
    sizes = crop_lengths(lengths, crop, max_share)
    first, second = two_starts(lengths, sizes, generator)
    width = int(sizes.max())
    device = batch.waveforms.device
    sizes, starts = sizes.to(device), torch.cat([first, second]).to(device)
    waveforms = batch.waveforms.repeat(2, 1)
    return gather_crops(waveforms, starts, sizes.repeat(2), width), sizes.repeat(2)
