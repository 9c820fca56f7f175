"""Context networks: the part of an encoder that sees many frames (the "c" of CPC, wav2vec 2.0's Transformer).

Every context network maps ``(batch, frames, dim)`` plus valid frame lengths to one ``(batch, frames, dim)``
tensor per layer, so downstream heads can weigh all layers (SUPERB style). ``is_causal`` tells objectives
that predict the future (CPC, APC) whether frame ``t`` may have seen frames after ``t``.

fairseq2 is imported lazily inside ``TransformerContext``: it costs seconds, and RNN encoders never need it.
"""

from __future__ import annotations

from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def zero_padding(x: Tensor, lengths: Tensor) -> Tensor:
    """Set frames past each item's length to zero (so convolutions and pooling see silence there)."""
    positions = torch.arange(x.shape[1], device=x.device)
    return x * (positions[None, :] < lengths[:, None]).unsqueeze(-1).to(x.dtype)


@final
class RNNContext(nn.Module):
    """Stacked unidirectional GRU/LSTM, one ``nn.GRU``/``nn.LSTM`` per layer so every layer's output is kept.

    Sequences are not packed: a forward RNN's output at frame ``t`` never depends on later (padded) frames, so
    padding is harmless for valid frames and packing would only cost time. ``residual`` adds each layer's
    input to its output from the second layer on (APC's deep GRU uses this).
    """

    is_causal = True

    def __init__(self, kind: str, dim: int, num_layers: int, *, dropout: float = 0.0,
                 residual: bool = False) -> None:
        super().__init__()
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.layers = nn.ModuleList(rnn_class(dim, dim, batch_first=True) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual

    def forward(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        outputs = []
        for index, layer in enumerate(self.layers):
            y, _ = layer(x)
            if self.residual and index > 0:
                y = y + x
            outputs.append(y)
            x = self.dropout(y)
        return outputs


@final
class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's relative positional embedding: ``x + GELU(grouped_conv(x))`` with a wide kernel.

    The symmetric version sees ``kernel // 2`` frames either side; ``causal`` pads on the left only so a
    causal Transformer does not leak the future through its positional embedding. Padded frames are zeroed
    first so a padded utterance gets the same embedding as alone (the conv pads with zeros at the edges too).
    """

    def __init__(self, dim: int, kernel: int, groups: int, *, causal: bool) -> None:
        super().__init__()
        from fairseq2.models.wav2vec2.position_encoder import Wav2Vec2PositionalConv1d

        # fairseq2's conv brings wav2vec 2.0's init and weight normalisation; we pad ourselves.
        self.conv = Wav2Vec2PositionalConv1d(dim, dim, kernel, padding=0, groups=groups)
        left = kernel - 1 if causal else kernel // 2
        self.padding = (left, kernel - 1 - left)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = zero_padding(x, lengths)
        encoded = self.conv(F.pad(x.transpose(1, 2), self.padding))
        return x + F.gelu(encoded).transpose(1, 2)


def _transformer_layer(dim: int, heads: int, ffn_dim: int, *, dropout: float, attention_dropout: float,
                       activation_dropout: float, norm_first: bool, causal: bool) -> nn.Module:
    """One fairseq2 ``StandardTransformerEncoderLayer`` with BERT init, as in fairseq2's wav2vec 2.0 factory.

    Its projections get single-process gangs (no tensor parallelism: DDP replicates the whole encoder);
    left to find them, fairseq2 initialises its whole library first, 4-5 s of imports in every process.
    """
    from fairseq2.gang import create_fake_gangs
    from fairseq2.models.transformer import (
        CausalAttentionBias, IdentityBias, StandardFeedForwardNetwork, StandardMultiheadAttention,
        StandardTransformerEncoderLayer, TransformerNormOrder, create_default_sdpa)
    from fairseq2.nn import StandardLayerNorm, init_bert_projection

    bias = CausalAttentionBias() if causal else IdentityBias()
    cpu = torch.device("cpu")
    gangs = create_fake_gangs(cpu)
    attention = StandardMultiheadAttention(
        dim, heads, create_default_sdpa(bias, dropout_p=attention_dropout), gangs=gangs, device=cpu,
        qkv_proj_init_fn=init_bert_projection, output_proj_init_fn=init_bert_projection)
    ffn = StandardFeedForwardNetwork(dim, ffn_dim, bias=True, inner_activation=nn.GELU(), gangs=gangs, device=cpu,
                                     inner_dropout_p=activation_dropout, proj_init_fn=init_bert_projection)
    order = TransformerNormOrder.PRE if norm_first else TransformerNormOrder.POST
    return StandardTransformerEncoderLayer(attention, StandardLayerNorm(dim, bias=True), ffn,
                                           StandardLayerNorm(dim, bias=True), norm_order=order,
                                           dropout_p=dropout)


@final
class TransformerContext(nn.Module):
    """wav2vec 2.0's context network: conv positional embedding, then fairseq2 Transformer encoder layers.

    Post-LN (wav2vec 2.0 BASE): LayerNorm right after the positional embedding. Pre-LN: a final LayerNorm on
    the last layer instead (applied to the last hidden state too, which the ``EncoderOutput`` contract says
    equals ``features``). We loop over the layers ourselves rather than calling
    ``StandardTransformerEncoder`` because we need every layer's output and want LayerDrop to *skip* a
    dropped layer's compute (fairseq2 computes then discards it, which keeps DDP happy but costs time;
    with LayerDrop > 0 under DDP use ``find_unused_parameters=True``).
    """

    def __init__(self, dim: int, num_layers: int, heads: int, ffn_dim: int, *, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0, layerdrop: float = 0.0,
                 norm_first: bool = False, causal: bool = False, pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16) -> None:
        super().__init__()
        self.is_causal = causal
        self.positional = ConvPositionalEmbedding(dim, pos_conv_kernel, pos_conv_groups, causal=causal)
        self.norm_first = norm_first
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layerdrop = layerdrop
        self.layers = nn.ModuleList(
            _transformer_layer(dim, heads, ffn_dim, dropout=dropout, attention_dropout=attention_dropout,
                               activation_dropout=activation_dropout, norm_first=norm_first, causal=causal)
            for _ in range(num_layers))

    def _layout(self, x: Tensor, lengths: Tensor) -> Any:
        """A fairseq2 ``BatchLayout``; unpadded batches get none so causal attention takes SDPA's fast path.

        Lengths are clamped to >= 1 because ``BatchLayout`` rejects empty rows (their frames are all padding
        and every objective masks them out).
        """
        from fairseq2.nn import BatchLayout

        seq_lens = lengths.clamp(min=1).tolist()
        padded = min(seq_lens) < x.shape[1]
        return BatchLayout.of(x, seq_lens if padded else None)

    def _dropped_layers(self) -> list[bool]:
        if not (self.training and self.layerdrop > 0):
            return [False] * len(self.layers)
        return (torch.rand(len(self.layers)) < self.layerdrop).tolist()

    def forward(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        from fairseq2.models.transformer import AttentionBiasCache

        x = self.positional(x, lengths)
        if not self.norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        layout, cache = self._layout(x, lengths), AttentionBiasCache()
        outputs = []
        for layer, dropped in zip(self.layers, self._dropped_layers()):
            if not dropped:
                x = layer(x, layout, cache)
            outputs.append(x)
        if self.norm_first:
            outputs[-1] = self.layer_norm(outputs[-1])
        return outputs
