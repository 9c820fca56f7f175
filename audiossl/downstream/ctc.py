"""CTC over a letter (ASR, ``|`` word boundaries) or phone vocabulary: the few-label ASR and phoneme tasks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from audiossl.asr.vocab import Vocabulary
from audiossl.data.batch import AudioBatch
from audiossl.downstream.base import LABEL_KIND, DownstreamTask, TaskConfig
from audiossl.downstream.heads import build_frame_head, stack_frames
from audiossl.features.frozen import FrameGrid
from audiossl.features.upstream import Upstream
from audiossl.objectives.base import ObjectiveOutput


def ctc_loss(log_probs: Tensor, frames: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Mean over utterances of CTC loss per target token, blank 0.

    Dividing by the target length keeps long utterances from dominating a batch (fairseq's
    ``sentence_avg=false`` does the same per token); impossible alignments (fewer frames than tokens) are
    zeroed rather than sent to infinity.
    """
    losses = F.ctc_loss(log_probs.transpose(0, 1), targets, frames, target_lengths, blank=0,
                        reduction="none", zero_infinity=True)
    return (losses / target_lengths.clamp(min=1)).mean()


class CTCTask(DownstreamTask):
    """CTC over a letter (ASR, ``|`` word boundaries) or phone vocabulary; blank is index 0."""

    def __init__(self, cfg: TaskConfig, upstream: Upstream, vocab: Vocabulary) -> None:
        super().__init__(cfg, upstream)
        self.vocab = vocab
        self.label_kind = LABEL_KIND[cfg.name]
        self.head = build_frame_head(cfg.head, upstream.dim * cfg.frame_stack, len(vocab), cfg.head_hidden,
                                     cfg.head_layers, cfg.dropout)

    def log_probs(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        """``(B, F, V)`` log-probabilities and frame counts: the input of every CTC decoder."""
        features, lengths = stack_frames(*self.represent(batch), self.cfg.frame_stack)
        return self.head(features, lengths).log_softmax(dim=-1), lengths

    def output_grid(self, sample_rate: int) -> FrameGrid:
        """Where the CTC output frames sit in time: the upstream's grid, coarsened by ``frame_stack``."""
        grid = FrameGrid.of(self.encoder, sample_rate)
        k = self.cfg.frame_stack
        return FrameGrid(grid.stride * k, grid.first_centre + grid.stride * (k - 1) / 2, sample_rate)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        log_probs, frames = self.log_probs(batch)
        targets, target_lengths = self.vocab.encode_batch(batch.labels[self.label_kind], batch.ids)
        targets, target_lengths = targets.to(log_probs.device), target_lengths.to(log_probs.device)
        loss = ctc_loss(log_probs, frames, targets, target_lengths)
        return ObjectiveOutput(loss, {"too_short": (frames < target_lengths).float().mean()})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        if metrics.get("too_short", 0.0) > 0:
            return ["some utterances have fewer encoder frames than label tokens: CTC cannot emit them "
                    "(their loss is zeroed); check the frame rate against the label kind"]
        return []

    def reference(self, batch: AudioBatch, index: int) -> str:
        """Scoring reference: words for ASR (from ``.wrd`` when present), tokens otherwise."""
        if self.vocab.is_letters and "wrd" in batch.labels:
            return batch.labels["wrd"][index]
        return self.vocab.to_text(batch.labels[self.label_kind][index].split())


