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
    ``labels`` maps a label kind (``"ltr"``, ``"wrd"``, ``"phn"``, ``"spk"``, ``"align"``, ``"km"``) to one
    string per item, exactly the line of that manifest's label file.
    ``offsets``: ``(batch,)`` sample where each item starts in its file (non-zero after a pretraining
    crop); frame-level labels of the whole file (HuBERT's cluster ids) are sliced with it.
    """

    waveforms: Tensor
    lengths: Tensor
    ids: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)
    sample_rate: int = 16_000
    offsets: Tensor | None = None

    def __post_init__(self) -> None:
        if self.waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (batch, samples), got shape {tuple(self.waveforms.shape)}")
        if self.lengths.shape != (self.waveforms.shape[0],):
            raise ValueError("lengths must hold one entry per waveform")
        if self.offsets is None:
            self.offsets = torch.zeros_like(self.lengths)

    @property
    def size(self) -> int:
        return self.waveforms.shape[0]

    @property
    def seconds(self) -> float:
        """Seconds of real (unpadded) audio in the batch: the unit of every throughput figure."""
        return float(self.lengths.sum().item()) / self.sample_rate

    def select(self, keep: Tensor) -> AudioBatch:
        """The items where the bool ``keep`` is True, with their labels."""
        rows = keep.nonzero().flatten().tolist()
        return replace(self, waveforms=self.waveforms[keep], lengths=self.lengths[keep],
                       ids=[self.ids[r] for r in rows], offsets=self.offsets[keep],
                       labels={kind: [lines[r] for r in rows] for kind, lines in self.labels.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AudioBatch:
        return replace(
            self,
            waveforms=self.waveforms.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )
