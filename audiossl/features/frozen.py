"""Frozen features: run an upstream once over a split and keep every layer's frames for the probes.

A frozen-upstream benchmark trains many small heads (one per layer, per task, per seed) on the same
features. Encoding the audio once and fitting heads on the stored frames makes each probe cost a few
matrix products instead of a pass through the encoder per update, which is what lets probes run to
convergence on a CPU.

Frames of all utterances are concatenated per layer (``offsets`` marks where each utterance starts) and
stored as float16: a 1-hour split at 10 ms is 360k frames, 92 MB per 128-wide layer.

Frame ``t`` of an upstream covers samples ``[t * stride, t * stride + receptive_field)``, so its time is
the centre of that window, ``(t * stride + receptive_field / 2) / sample_rate``: labels are read there, not
at ``(t + 0.5) * stride`` (which sits 1.45 frames early for the CPC conv stack).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from audiossl.data.batch import AudioBatch
from audiossl.progress import progress_bar
from audiossl.features.upstream import Upstream


@dataclass(frozen=True)
class FrameGrid:
    """Where an upstream's frames sit in time: ``stride`` samples apart, frame 0 centred at ``first_centre``."""

    stride: int
    first_centre: float
    sample_rate: int

    @classmethod
    def of(cls, upstream: Upstream, sample_rate: int) -> FrameGrid:
        return cls(upstream.frame_stride, upstream.receptive_field / 2, sample_rate)

    def centres(self, num_frames: int) -> Tensor:
        """``(num_frames,)`` centre time of each frame in seconds."""
        return (torch.arange(num_frames, dtype=torch.float64) * self.stride + self.first_centre) / self.sample_rate


@dataclass
class FrozenSplit:
    """Every hidden state of an upstream over one manifest split, utterance frames concatenated.

    ``layers[l]`` is ``(total_frames, dim)`` float16; utterance ``i`` owns rows
    ``offsets[i]:offsets[i + 1]``. ``labels`` are the split's label lines, in ``ids`` order.
    """

    ids: list[str]
    offsets: Tensor
    layers: list[Tensor]
    labels: dict[str, list[str]]
    grid: FrameGrid
    seconds: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def frame_counts(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def utterance(self, layer: int, index: int) -> Tensor:
        return self.layers[layer][self.offsets[index]: self.offsets[index + 1]]

    def select(self, rows: list[int]) -> FrozenSplit:
        """A new split holding only utterances ``rows`` (in that order), sharing nothing mutable."""
        counts = self.frame_counts()[rows]
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        pieces = [torch.arange(int(self.offsets[r]), int(self.offsets[r + 1])) for r in rows]
        index = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)
        labels = {kind: [lines[r] for r in rows] for kind, lines in self.labels.items()}
        return FrozenSplit([self.ids[r] for r in rows], offsets, [layer[index] for layer in self.layers], labels,
                           self.grid, self.seconds)


@torch.no_grad()
def encode_batches(upstream: Upstream, batches: Iterable[AudioBatch], per_utterance: bool = False
                   ) -> Iterator[tuple[AudioBatch, list[list[Tensor]]]]:
    """Each batch with, per utterance, its valid frames of every hidden state; eval mode while it runs.

    ``per_utterance`` encodes every utterance alone: exact features for upstreams whose output depends on
    the padding around an utterance (``Upstream.padding_invariant`` is False), at some cost in speed.
    """
    was_training = upstream.training
    upstream.eval()
    try:
        for batch in batches:
            yield batch, (_encode_alone(upstream, batch) if per_utterance else _encode_together(upstream, batch))
    finally:
        upstream.train(was_training)


def _encode_together(upstream: Upstream, batch: AudioBatch) -> list[list[Tensor]]:
    output = upstream(batch.waveforms, batch.lengths)
    return [[hidden[row, :frames] for hidden in output.hidden_states]
            for row, frames in enumerate(output.lengths.tolist())]


def _encode_alone(upstream: Upstream, batch: AudioBatch) -> list[list[Tensor]]:
    utterances = []
    for row, length in enumerate(batch.lengths.tolist()):
        output = upstream(batch.waveforms[row: row + 1, :length], batch.lengths[row: row + 1])
        utterances.append([hidden[0, : int(output.lengths[0])] for hidden in output.hidden_states])
    return utterances


def extract(upstream: Upstream, batches: Iterable[AudioBatch], *, total: int | None = None,
            desc: str = "extract", progress: bool = True) -> FrozenSplit:
    """Encode every batch with ``upstream`` in eval mode and keep each utterance's valid frames per layer.

    Utterances come out in the order the batches bring them (``ids`` records it); labels ride along.
    """
    ids: list[str] = []
    counts: list[int] = []
    per_layer: list[list[Tensor]] = []
    labels: dict[str, list[str]] = {}
    seconds, sample_rate = 0.0, None
    shown = progress_bar(batches, total=total, desc=desc, unit="batch", leave=False, disable=not progress)
    for batch, utterances in encode_batches(upstream, shown):
        for layers in utterances:
            if not per_layer:
                per_layer = [[] for _ in layers]
            for chunks, hidden in zip(per_layer, layers):
                chunks.append(hidden.to(torch.float16))
            counts.append(len(layers[0]))
        ids += batch.ids
        for kind, lines in batch.labels.items():
            labels.setdefault(kind, []).extend(lines)
        seconds += batch.seconds
        sample_rate = batch.sample_rate
    if not ids:
        raise ValueError(f"{desc}: no utterance could be encoded (every file was skipped?)")
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.tensor(counts).cumsum(0)])
    layers = [torch.cat(chunks) for chunks in per_layer]
    return FrozenSplit(ids, offsets, layers, labels, FrameGrid.of(upstream, int(sample_rate)), seconds)
