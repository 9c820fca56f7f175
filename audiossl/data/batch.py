"""The one batch type that flows from the data pipeline into every model, objective and head."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class AudioBatch:
    """A batch of mono waveforms with their true lengths and aligned labels.

    ``waveforms`` is ``(batch, samples)`` float32 in [-1, 1], zero-padded (fine-tuning) or cropped to
    the shortest clip (pretraining, then every length equals ``waveforms.shape[1]``).
    ``labels`` maps a label kind (``"ltr"``, ``"wrd"``, ``"phn"``, ``"spk"``, ``"align"``) to one
    string per item, exactly the line of that manifest's label file.
    """

    waveforms: Tensor
    lengths: Tensor
    ids: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)
    sample_rate: int = 16_000

    def __post_init__(self) -> None:
        if self.waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (batch, samples), got shape {tuple(self.waveforms.shape)}")
        if self.lengths.shape != (self.waveforms.shape[0],):
            raise ValueError("lengths must hold one entry per waveform")

    @property
    def size(self) -> int:
        return self.waveforms.shape[0]

    @property
    def seconds(self) -> float:
        """Seconds of real (unpadded) audio in the batch: the unit of every throughput figure."""
        return float(self.lengths.sum().item()) / self.sample_rate

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AudioBatch:
        return replace(
            self,
            waveforms=self.waveforms.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )
