"""Speaker ID over held-out utterances of the training speakers (SUPERB SID)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from audiossl.data.batch import AudioBatch
from audiossl.downstream.base import DownstreamTask, TaskConfig
from audiossl.downstream.heads import PooledClassifier
from audiossl.features.upstream import Upstream
from audiossl.objectives.base import ObjectiveOutput


class SpeakerTask(DownstreamTask):
    """Speaker ID: mean-pooled frames, linear classifier over the training speakers."""

    def __init__(self, cfg: TaskConfig, upstream: Upstream, speakers: list[str]) -> None:
        super().__init__(cfg, upstream)
        self.speakers = speakers
        self.index = {speaker: i for i, speaker in enumerate(speakers)}
        self.head = PooledClassifier(upstream.dim, len(speakers), cfg.dropout)

    def logits(self, batch: AudioBatch) -> Tensor:
        features, lengths = self.represent(batch)
        return self.head(features, lengths)

    def targets(self, batch: AudioBatch) -> Tensor:
        missing = [s for s in batch.labels["spk"] if s not in self.index]
        if missing:
            raise ValueError(f"speaker {missing[0]!r} was not among the training speakers")
        return torch.tensor([self.index[s] for s in batch.labels["spk"]], device=batch.waveforms.device)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        logits, targets = self.logits(batch), self.targets(batch)
        loss = F.cross_entropy(logits, targets)
        return ObjectiveOutput(loss, {"acc": (logits.argmax(-1) == targets).float().mean()})


def speaker_holdout(ids: list[str], speakers: list[str], fraction: float) -> tuple[list[int], list[int], list[int]]:
    """Split row indices of one manifest into train / dev / test, per speaker, deterministically.

    Speaker ID needs test utterances from the *training* speakers, so each speaker's utterances are sorted
    by id and, with ``k = round(1 / fraction)``, the k-th of every k goes to test and the (k-1)-th to dev.
    Sorting makes the split independent of manifest order, and every speaker with at least k utterances
    appears in all three parts.
    """
    by_speaker: dict[str, list[int]] = {}
    for row, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(row)
    k = max(3, round(1 / fraction))
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for rows in by_speaker.values():
        for position, row in enumerate(sorted(rows, key=lambda r: ids[r])):
            part = {k - 1: 2, k - 2: 1}.get(position % k, 0)
            parts[part].append(row)
    return sorted(parts[0]), sorted(parts[1]), sorted(parts[2])
