"""Small modules that sit on top of an upstream encoder: layer readers, frame heads, utterance classifier.

Kept tiny on purpose (SUPERB's rule): a strong downstream head hides how good the representation is,
so probes are linear and the largest head here is a 2-layer BiLSTM, the one SUPERB uses for ASR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from audiossl.audio.features import frame_mask
from audiossl.models.output import EncoderOutput


class LastLayer(nn.Module):
    """Reads the encoder's final context output: what linear probes (CPC paper) and full fine-tuning use."""

    def forward(self, output: EncoderOutput) -> Tensor:
        return output.features


class WeightedLayerSum(nn.Module):
    """Learned softmax-weighted sum of every hidden state (SUPERB).

    Different layers carry different information (phonetic content peaks in middle Transformer layers of
    wav2vec 2.0), so a frozen-upstream benchmark lets the task choose instead of picking one layer by hand.
    Each layer is layer-normalised first (without parameters) so the weights compare like with like.
    """

    def __init__(self, num_layers: int, normalize: bool = True) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.normalize = normalize

    def forward(self, output: EncoderOutput) -> Tensor:
        layers = output.hidden_states
        if len(layers) != self.logits.numel():
            raise ValueError(f"weighted sum was built for {self.logits.numel()} layers, encoder gave {len(layers)}")
        dims = {layer.shape[-1] for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"weighted layer sum needs one width across layers, got {sorted(dims)}; use mode=probe")
        if self.normalize:
            layers = [F.layer_norm(layer, layer.shape[-1:]) for layer in layers]
        weights = torch.softmax(self.logits, dim=0)
        return torch.einsum("l,lbfd->bfd", weights, torch.stack(layers))

    def layer_weights(self) -> list[float]:
        """The learned weights, for the report: which layers the task found useful."""
        return torch.softmax(self.logits.detach(), dim=0).tolist()


class LinearHead(nn.Module):
    """Frame-wise linear classifier: the probe whose accuracy measures linear separability."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        return self.proj(self.dropout(features))


class BiLSTMHead(nn.Module):
    """SUPERB's ASR head: a few bidirectional LSTM layers then a linear CTC output layer.

    Padded frames are packed away so the backward direction starts at each item's true last frame.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 256, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * hidden, num_classes)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(features, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=features.shape[1])
        return self.proj(self.dropout(hidden))


def masked_mean(features: Tensor, lengths: Tensor) -> Tensor:
    """``(B, F, D) -> (B, D)`` mean over each item's valid frames only (padding would bias short clips)."""
    mask = frame_mask(lengths, features.shape[1])
    total = (features * mask[..., None]).sum(dim=1)
    return total / lengths.clamp(min=1)[:, None].to(features.dtype)


class PooledClassifier(LinearHead):
    """Utterance classifier: mean-pool valid frames, then one linear layer (SUPERB speaker ID, COLA probe)."""

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        return super().forward(masked_mean(features, lengths), lengths)


def build_frame_head(kind: str, dim: int, num_classes: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    """``linear`` or ``bilstm`` frame head; anything else is a config error the caller names."""
    if kind == "linear":
        return LinearHead(dim, num_classes, dropout)
    if kind == "bilstm":
        return BiLSTMHead(dim, num_classes, hidden, layers, dropout)
    raise ValueError(f"unknown head {kind!r}; choose linear or bilstm")


def span_mask(shape: tuple[int, int], prob: float, span: int, generator: torch.Generator | None = None) -> Tensor:
    """``(B, N)`` bool mask: each position starts a span of ``span`` with probability ``prob``.

    The same rule as wav2vec 2.0's mask (``mask_prob`` x ``mask_length``), so ``prob=0.065, span=10``
    covers about half of the positions; overlapping spans merge.
    """
    batch, size = shape
    starts = torch.rand(batch, size, generator=generator) < prob
    if span <= 1 or not starts.any():
        return starts
    kernel = torch.ones(1, 1, span)
    spread = F.conv1d(F.pad(starts.float()[:, None, :], (span - 1, 0)), kernel)[:, 0]
    return spread > 0


class FrameMasker(nn.Module):
    """SpecAugment-style masking of time spans and channel spans, applied only in training.

    wav2vec 2.0 fine-tuning masks both (fairseq ``mask_prob`` x 10 frames, ``mask_channel_prob`` 0.25-0.5 x
    64 channels): with 10 minutes of labels it is the main regulariser against memorising the transcripts.
    ``*_prob`` follows fairseq's convention, the share of positions to mask: spans start with probability
    ``prob / span``, so overlaps make the covered share somewhat smaller. Masked channels are set to zero;
    masked frames take ``mask_embedding`` when one is given (inside a pretrained encoder: the embedding
    pretraining learnt, as fairseq fine-tunes) and zero otherwise.
    """

    def __init__(self, time_prob: float, time_span: int, channel_prob: float, channel_span: int) -> None:
        super().__init__()
        self.time_prob, self.time_span = time_prob, time_span
        self.channel_prob, self.channel_span = channel_prob, channel_span

    def forward(self, features: Tensor, mask_embedding: Tensor | None = None) -> Tensor:
        if not self.training or (self.time_prob <= 0 and self.channel_prob <= 0):
            return features
        batch, frames, dim = features.shape
        if self.time_prob > 0:  # time first, then channels (fairseq's order: channel masks cover the embedding too)
            starts = self.time_prob / self.time_span
            masked = span_mask((batch, frames), starts, self.time_span).to(features.device)[..., None]
            fill = mask_embedding.to(features.dtype) if mask_embedding is not None else features.new_zeros(())
            features = torch.where(masked, fill, features)
        if self.channel_prob > 0:
            starts = self.channel_prob / self.channel_span
            features = features * ~span_mask((batch, dim), starts, self.channel_span).to(features.device)[:, None, :]
        return features
