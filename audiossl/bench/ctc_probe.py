"""CTC heads trained on stored frozen features: SUPERB's phoneme recognition and few-label ASR protocols.

The upstream is frozen, so its frames are computed once (``frozen.extract``) and every epoch of the head
only reads them: a learned softmax-weighted sum of the (standardised) layers, then a linear layer or a
BiLSTM, then CTC. Training stops when the dev error has not improved for ``patience`` epochs, and the
best-dev weights are kept, so the reported number is the plateau and the curve shows it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from audiossl.features.frozen import FrozenSplit
from audiossl.downstream.ctc import ctc_loss
from audiossl.downstream.heads import LayerMix, build_frame_head


@dataclass
class CTCProbeConfig:
    """Head and schedule. ``batch_frames`` bounds the frames per batch; epochs stop early on ``patience``."""

    head: str = "linear"  # linear | bilstm
    hidden: int = 256
    layers: int = 2
    lr: float = 2e-3
    max_epochs: int = 60
    patience: int = 8
    batch_frames: int = 20_000
    seed: int = 1


@dataclass
class CTCCurve:
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    dev_error: list[float] = field(default_factory=list)


@dataclass
class PaddedBatch:
    """Utterances ``rows`` of a split, every layer padded once: ``(layers, B, T, dim)`` float16."""

    rows: list[int]
    layers: Tensor
    lengths: Tensor


def padded_batches(split: FrozenSplit, max_frames: int) -> list[PaddedBatch]:
    """The split in length-sorted batches of at most ``max_frames`` padded frames, built once per probe."""
    batches = []
    for rows in length_batches(split, max_frames):
        layers = torch.stack([pad_sequence([split.utterance(layer, r) for r in rows], batch_first=True)
                              for layer in range(split.num_layers)])
        batches.append(PaddedBatch(rows, layers, split.frame_counts()[rows]))
    return batches


class CTCProbe(nn.Module):
    """Standardise each layer -> learned layer mix -> head -> log-probabilities over the CTC vocabulary."""

    def __init__(self, train: FrozenSplit, vocab_size: int, cfg: CTCProbeConfig) -> None:
        super().__init__()
        frames = torch.stack([layer.float() for layer in train.layers])  # (L, N, D)
        self.register_buffer("mean", frames.mean(1, keepdim=True).unsqueeze(1))  # (L, 1, 1, D)
        self.register_buffer("inv_std", torch.rsqrt(frames.var(1, unbiased=False, keepdim=True) + 1e-5).unsqueeze(1))
        self.mix = LayerMix(train.num_layers)
        self.head = build_frame_head(cfg.head, frames.shape[-1], vocab_size, cfg.hidden, cfg.layers, dropout=0.1)

    def forward(self, batch: PaddedBatch) -> tuple[Tensor, Tensor]:
        """``(B, T, V)`` log-probabilities and ``(B,)`` frame counts."""
        standard = (batch.layers.float() - self.mean) * self.inv_std
        mixed = self.mix(standard)
        return self.head(mixed, batch.lengths).log_softmax(-1), batch.lengths


def length_batches(split: FrozenSplit, max_frames: int) -> list[list[int]]:
    """Utterance indices grouped by similar length so that each batch holds at most ``max_frames`` (padded)."""
    counts = split.frame_counts().tolist()
    order = sorted(range(len(counts)), key=counts.__getitem__)
    batches, current = [], []
    for row in order:
        if current and (len(current) + 1) * counts[row] > max_frames:
            batches.append(current)
            current = []
        current.append(row)
    return batches + ([current] if current else [])


def flat_targets(targets: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Token ids of several utterances concatenated, and each one's length: CTC's packed target form."""
    flat = torch.tensor([t for target in targets for t in target], dtype=torch.long)
    return flat, torch.tensor([len(t) for t in targets], dtype=torch.long)


@torch.no_grad()
def predict_batches(probe: CTCProbe, batches: list[PaddedBatch], count: int,
                    decode: Callable[[Tensor, Tensor], list[str]]) -> list[str]:
    """Decoded text for every utterance of the split ``batches`` cover (``count`` of them), in split order."""
    probe.eval()
    texts: list[str] = [""] * count
    for batch in batches:
        for row, text in zip(batch.rows, decode(*probe(batch))):
            texts[row] = text
    return texts


def predict_split(probe: CTCProbe, split: FrozenSplit, decode: Callable[[Tensor, Tensor], list[str]],
                  max_frames: int) -> list[str]:
    return predict_batches(probe, padded_batches(split, max_frames), len(split.ids), decode)


@dataclass
class FittedCTCProbe:
    probe: CTCProbe
    curve: CTCCurve
    best_epoch: int
    best_dev_error: float


def fit_ctc_probe(train: FrozenSplit, train_targets: list[list[int]], dev: FrozenSplit,
                  dev_error: Callable[[list[str]], float], decode: Callable[[Tensor, Tensor], list[str]],
                  vocab_size: int, cfg: CTCProbeConfig) -> FittedCTCProbe:
    """Adam on the CTC loss until the dev error (``dev_error`` of greedy texts) stops improving."""
    torch.manual_seed(cfg.seed)
    probe = CTCProbe(train, vocab_size, cfg)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches, dev_batches = padded_batches(train, cfg.batch_frames), padded_batches(dev, cfg.batch_frames)
    curve, best_state, best_error, best_epoch = CTCCurve(), None, math.inf, 0
    for epoch in range(1, cfg.max_epochs + 1):
        probe.train()
        losses = []
        for index in torch.randperm(len(batches), generator=generator).tolist():
            batch = batches[index]
            log_probs, lengths = probe(batch)
            loss = ctc_loss(log_probs, lengths, *flat_targets([train_targets[r] for r in batch.rows]))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(probe.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        error = dev_error(predict_batches(probe, dev_batches, len(dev.ids), decode))
        curve.epochs.append(epoch)
        curve.train_loss.append(sum(losses) / len(losses))
        curve.dev_error.append(error)
        if error < best_error:
            best_error, best_epoch, best_state = error, epoch, copy.deepcopy(probe.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        probe.load_state_dict(best_state)
    return FittedCTCProbe(probe.eval(), curve, best_epoch, best_error)
