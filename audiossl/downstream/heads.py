"""Small modules that sit on top of an upstream encoder: layer readers, frame heads, utterance classifier.

Kept tiny on purpose (SUPERB's rule): a strong downstream head hides how good the representation is,
so probes are linear and the largest head here is a 2-layer BiLSTM, the one SUPERB uses for ASR.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiossl.audio.features import frame_mask
from audiossl.models.masking import random_span_mask
from audiossl.models.output import EncoderOutput


class LastLayer(nn.Module):
    """Reads the encoder's final context output: what linear probes (CPC paper) and full fine-tuning use."""

    def forward(self, output: EncoderOutput) -> Tensor:
        return output.features


class LayerMix(nn.Module):
    """Learned softmax weights over ``L`` layers: ``(L, ..., D) -> (..., D)``, SUPERB's weighted sum.

    The one place the weighted layer sum lives: the fine-tuning reader below and the bench's stored-feature
    probes (``bench/probe.py``, ``bench/ctc_probe.py``) all mix layers through it.
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: Tensor) -> Tensor:
        return torch.einsum("l,l...->...", torch.softmax(self.logits, dim=0), layers)

    def layer_weights(self) -> list[float]:
        """The learned weights, for the report: which layers the task found useful."""
        return torch.softmax(self.logits.detach(), dim=0).tolist()


class WeightedLayerSum(LayerMix):
    """Reads every hidden state of an ``EncoderOutput`` through a ``LayerMix``.

    Different layers carry different information (phonetic content peaks in middle Transformer layers of
    wav2vec 2.0), so a frozen-upstream benchmark lets the task choose instead of picking one layer by hand.
    Each layer is layer-normalised first (without parameters) so the weights compare like with like.
    """

    def __init__(self, num_layers: int, normalize: bool = True) -> None:
        super().__init__(num_layers)
        self.normalize = normalize

    def forward(self, output: EncoderOutput) -> Tensor:  # type: ignore[override]
        layers = output.hidden_states
        if len(layers) != self.logits.numel():
            raise ValueError(f"weighted sum was built for {self.logits.numel()} layers, encoder gave {len(layers)}")
        dims = {layer.shape[-1] for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"weighted layer sum needs one width across layers, got {sorted(dims)}; use mode=probe")
        if self.normalize:
            layers = [F.layer_norm(layer, layer.shape[-1:]) for layer in layers]
        return super().forward(torch.stack(layers))


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

    Each direction of each layer is its own one-layer LSTM run on the padded batch, the backward one on every
    item reversed within its own length: the same result as packing, where the backward direction starts at
    each item's true last frame, but on the fused dense LSTM kernel. A packed sequence falls back to a
    per-step loop on CPU that is about four times slower (``benchmarks/bench_bilstm.py``: 1.79 vs 0.41 s for
    6 x 350 frames, forward and backward, 2 threads).
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 256, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        sizes = [dim] + [2 * hidden] * (layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * hidden, num_classes)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        order = reversal_index(lengths, features.shape[1])
        hidden = features
        for depth, (ahead, behind) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if depth:
                hidden = self.dropout(hidden)
            forward_states = ahead(hidden)[0]
            backward_states = behind(hidden.gather(1, order.expand(-1, -1, hidden.shape[-1])))[0]
            backward_states = backward_states.gather(1, order.expand(-1, -1, backward_states.shape[-1]))
            hidden = torch.cat([forward_states, backward_states], dim=-1)
        return self.proj(self.dropout(hidden))

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args, **kwargs) -> None:
        """Read heads saved as one ``nn.LSTM(bidirectional=True)`` (``lstm.weight_ih_l1_reverse``, ...)."""
        pattern = re.compile(rf"^{re.escape(prefix)}lstm\.(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
        for key in [k for k in state_dict if pattern.match(k)]:
            kind, gate, layer, reverse = pattern.match(key).groups()
            side = "backward_layers" if reverse else "forward_layers"
            state_dict[f"{prefix}{side}.{layer}.{kind}_{gate}_l0"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def reversal_index(lengths: Tensor, frames: int) -> Tensor:
    """``(B, F, 1)`` gather index that reverses each item's first ``length`` frames and leaves padding in place.

    It is its own inverse, so the same index turns the backward direction's output back into time order.
    """
    steps = torch.arange(frames, device=lengths.device)[None, :]
    lengths = lengths.to(steps.device)[:, None]
    return torch.where(steps < lengths, lengths - 1 - steps, steps)[..., None]


def stack_frames(features: Tensor, lengths: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """``(B, F, D) -> (B, ceil(F / k), k * D)``: each output frame is ``k`` consecutive frames side by side.

    Letters need far fewer frames than a 10 ms upstream gives (wav2vec 2.0 emits 50 a second), and a
    BiLSTM's time grows with its number of steps, so stacking halves the head's cost at ``k = 2`` while
    keeping every input value (averaging would not). Frames past an item's length are zeroed first, so a
    partial last group never mixes in another item's padding.
    """
    if factor == 1:
        return features, lengths
    batch, frames, dim = features.shape
    features = features * frame_mask(lengths, frames)[..., None].to(features.dtype)
    features = F.pad(features, (0, 0, 0, (-frames) % factor))
    return features.reshape(batch, -1, factor * dim), (lengths + factor - 1) // factor


def mean_pool(features: Tensor, lengths: Tensor) -> Tensor:
    """``(B, F, D) -> (B, D)`` mean over each item's valid frames only (padding would bias short clips)."""
    mask = frame_mask(lengths, features.shape[1])
    total = (features * mask[..., None]).sum(dim=1)
    return total / lengths.clamp(min=1)[:, None].to(features.dtype)


class PooledClassifier(LinearHead):
    """Utterance classifier: mean-pool valid frames, then one linear layer (SUPERB speaker ID, COLA probe)."""

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        return super().forward(mean_pool(features, lengths), lengths)


def build_frame_head(kind: str, dim: int, num_classes: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    """``linear`` or ``bilstm`` frame head; anything else is a config error the caller names."""
    if kind == "linear":
        return LinearHead(dim, num_classes, dropout)
    if kind == "bilstm":
        return BiLSTMHead(dim, num_classes, hidden, layers, dropout)
    raise ValueError(f"unknown head {kind!r}; choose linear or bilstm")


class FrameMasker(nn.Module):
    """SpecAugment-style masking of time spans and channel spans, applied only in training.

    wav2vec 2.0 fine-tuning masks both (fairseq ``mask_prob`` x 10 frames, ``mask_channel_prob`` 0.25-0.5 x
    64 channels): with 10 minutes of labels it is the main regulariser against memorising the transcripts.
    ``*_prob`` follows fairseq's convention, the share of positions to mask: spans start with probability
    ``prob / span`` (``models.masking.random_span_mask``), so overlaps make the covered share somewhat
    smaller. Masked channels are set to zero; masked frames take ``mask_embedding`` when one is given
    (inside a pretrained encoder: the embedding pretraining learnt, as fairseq fine-tunes) and zero otherwise.
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
            masked = random_span_mask((batch, frames), self.time_prob, self.time_span).to(features.device)[..., None]
            fill = mask_embedding.to(features.dtype) if mask_embedding is not None else features.new_zeros(())
            features = torch.where(masked, fill, features)
        if self.channel_prob > 0:
            masked = random_span_mask((batch, dim), self.channel_prob, self.channel_span).to(features.device)
            features = features * ~masked[:, None, :]
        return features
