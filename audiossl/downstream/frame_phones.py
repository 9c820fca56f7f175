"""Frame-level phone classification, the CPC paper's probe task: one phone label per upstream frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from audiossl.data.batch import AudioBatch
from audiossl.data.manifest import parse_alignment
from audiossl.downstream.base import IGNORE, DownstreamTask, TaskConfig
from audiossl.downstream.heads import build_frame_head
from audiossl.features.frozen import FrameGrid
from audiossl.features.upstream import Upstream
from audiossl.objectives.base import ObjectiveOutput


class FramePhoneTask(DownstreamTask):
    """Frame-level phone classification (CPC paper's linear probe): one phone label per encoder frame.

    Labels come from ``.align`` lines (``PHONE:START:END`` in seconds) mapped onto the upstream's frame
    grid; frames that no segment covers are ignored in the loss and in accuracy.
    """

    def __init__(self, cfg: TaskConfig, upstream: Upstream, phones: list[str]) -> None:
        super().__init__(cfg, upstream)
        self.phones = phones
        self.index = {phone: i for i, phone in enumerate(phones)}
        self.head = build_frame_head(cfg.head, upstream.dim, len(phones), cfg.head_hidden, cfg.head_layers,
                                     cfg.dropout)

    def frame_logits(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        """``(B, F, C)`` logits and ``(B, F)`` targets (``IGNORE`` on padding and unaligned frames)."""
        features, lengths = self.represent(batch)
        targets = align_targets(batch.labels["align"], batch.ids, lengths,
                                FrameGrid.of(self.encoder, batch.sample_rate), self.index).to(features.device)
        return self.head(features, lengths), targets

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        logits, targets = self.frame_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        scored = targets != IGNORE
        correct = (logits.argmax(dim=-1) == targets) & scored
        return ObjectiveOutput(loss, {"acc": correct.sum() / scored.sum().clamp(min=1)})


def align_targets(lines: list[str], ids: list[str], frames: Tensor, grid: FrameGrid,
                  index: dict[str, int]) -> Tensor:
    """``(B, max frames)`` phone index per frame: the segment that contains the frame's receptive-field centre."""
    targets = torch.full((len(lines), int(frames.max()) if len(frames) else 0), IGNORE, dtype=torch.long)
    for row, (line, utt) in enumerate(zip(lines, ids)):
        centres = grid.centres(int(frames[row]))
        targets[row, : int(frames[row])] = frame_phones(parse_alignment(line, utt), utt, centres, index)
    return targets


def frame_phones(segments: list[tuple[str, float, float]], utt: str, centres: Tensor, index: dict[str, int]) -> Tensor:
    """Phone index at each centre time (seconds) from one utterance's parsed alignment (``parse_alignment``);
    ``IGNORE`` where no segment is."""
    targets = torch.full((len(centres),), IGNORE, dtype=torch.long)
    for phone, start, end in segments:
        if phone not in index:
            raise ValueError(f"{utt}: phone {phone!r} of the alignment is not in the phone inventory")
        targets[(centres >= start) & (centres < end)] = index[phone]
    return targets
