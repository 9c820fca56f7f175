"""The output contract shared by every encoder: downstream code reads only this."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """What an encoder returns for a batch of waveforms.

    ``features``: ``(batch, frames, dim)`` output of the last context layer.
    ``lengths``: ``(batch,)`` number of valid frames per item (frames past it are padding).
    ``hidden_states``: every layer's output, first the (projected) feature-encoder output and then one
    entry per context layer, each ``(batch, frames, dim_l)``; the last equals ``features``. Downstream
    heads take a learned weighted sum over them (SUPERB-style), so all entries share one ``dim`` when the
    context network allows it.
    ``local_features``: ``(batch, frames, channels)`` raw feature-encoder output before any projection
    (the "z" of CPC / wav2vec 2.0).
    """

    features: Tensor
    lengths: Tensor
    hidden_states: list[Tensor]
    local_features: Tensor

    def frame_mask(self) -> Tensor:
        """``(batch, frames)`` bool, True on valid frames."""
        positions = torch.arange(self.features.shape[1], device=self.features.device)
        return positions[None, :] < self.lengths[:, None]
