"""Convolutional feature encoder over the raw waveform (the "z" network of CPC and wav2vec 2.0).

A stack of strided 1-D convolutions without padding, each followed by an optional normalisation and a
non-linearity. Because nothing is padded, output frame ``t`` depends only on samples
``[t * downsample, t * downsample + receptive_field)``: frame counts follow from the conv arithmetic
(``frame_lengths``), and with per-frame normalisation (``layer_norm``) a padded utterance yields exactly the
frames it yields alone.
"""

from __future__ import annotations

import math
from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiossl.audio.features import LogMel, window_frame_lengths

CONV_NORMS = ("group_norm_first", "layer_norm", "none")
CONV_ACTIVATIONS = ("gelu", "relu")

# (channels, kernel, stride) per layer: the wav2vec 2.0 stack (320x, 20 ms) and the CPC stack (160x, 10 ms).
WAV2VEC2_CONV_LAYERS: list[list[int]] = [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2
CPC_CONV_LAYERS: list[list[int]] = [[512, 10, 5], [512, 8, 4], [512, 4, 2], [512, 4, 2], [512, 4, 2]]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, ``grad * scale`` backward: wav2vec 2.0 trains the conv stack 10x slower (0.1)
    because its gradients are large and destabilise early training."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    return x if scale == 1.0 else _ScaleGrad.apply(x, scale)


class _WindowProjection(torch.autograd.Function):
    """``windows @ weight.T + bias`` for input that needs no gradient, with a faster weight gradient.

    Autograd would compute ``grad.T @ windows`` ((C x N) @ (N x k)); MKL runs that shape ~10x slower than
    the equal ``(windows.T @ grad).T`` ((k x N) @ (N x C)) we use (80 vs 7 ms for N = 100k frames, profiled).
    """

    @staticmethod
    def forward(ctx: Any, windows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(windows)
        ctx.has_bias, ctx.weight_dtype = bias is not None, weight.dtype
        return F.linear(windows, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, Tensor | None]:
        (windows,) = ctx.saved_tensors
        # float32 whatever autocast made of the output: the weight (and its gradient) stay float32.
        flat_grad = grad.reshape(-1, grad.shape[-1]).float()
        weight_grad = (windows.reshape(-1, windows.shape[-1]).float().T @ flat_grad).T
        bias_grad = flat_grad.sum(0).to(ctx.weight_dtype) if ctx.has_bias else None
        return None, weight_grad.to(ctx.weight_dtype), bias_grad


@final
class ConvLayer(nn.Module):
    """conv -> (dropout) -> (norm) -> activation, as in wav2vec 2.0's feature extractor.

    ``norm="layer_norm"`` normalises each frame over channels (padding-invariant, unlike GroupNorm over time).
    It runs frames-first and its output is made contiguous before the activation: on CPU the activation's
    backward on a transposed, non-contiguous tensor cost more than the convolutions (profiled), and a
    per-channel norm written along dim 1 was slower still.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int, *, bias: bool,
                 norm: str, activation: str, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.frame_norm = norm == "layer_norm"
        if self.frame_norm:
            self.norm: nn.Module = nn.LayerNorm(channels)
        elif norm == "group_norm":
            # One group per channel, normalised over time: wav2vec 2.0 BASE's choice; needs equal-length crops.
            self.norm = nn.GroupNorm(channels, channels)
        else:
            self.norm = nn.Identity()
        self.activation = nn.GELU() if activation == "gelu" else nn.ReLU()

    def _convolve(self, x: Tensor) -> Tensor:
        """The convolution; a mono input under a per-frame LayerNorm is convolved as one GEMM over unfolded
        windows instead.

        That gives the biggest activation of the stack (first layer, ``samples / 5`` frames) frames-first for
        free, so its LayerNorm needs no transposed copy: forward + backward 0.21 vs 0.34 s for 2 x 4 s at 512
        channels on 2 threads. Under GroupNorm (BASE) the frames-first result would need that copy instead, and
        the plain conv is faster (0.18 vs 0.23 s; inference on 10 s, 0.10 vs 0.14 s). Same weights and maths as
        the ``Conv1d`` (which keeps the state-dict layout).
        """
        if x.shape[1] != 1 or x.requires_grad or not self.frame_norm:
            return self.conv(x)
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        windows = x[:, 0].unfold(-1, kernel, stride).contiguous()  # (B, frames, kernel)
        weight = self.conv.weight.view(self.conv.out_channels, kernel)
        return _WindowProjection.apply(windows, weight, self.conv.bias).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(self._convolve(x))
        if self.frame_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2).contiguous()
        else:
            x = self.norm(x)
        return self.activation(x)


def _layer_norm_kind(kind: str, index: int) -> str:
    """Per-layer norm for a stack-level choice: GroupNorm only on the first layer for ``group_norm_first``."""
    if kind == "group_norm_first":
        return "group_norm" if index == 0 else "none"
    return kind


@final
class ConvFeatureEncoder(nn.Module):
    """Raw waveform ``(batch, samples)`` -> features ``(batch, frames, channels)``.

    ``layers`` lists ``[channels, kernel, stride]`` per convolution; ``norm`` is one of ``CONV_NORMS``;
    ``grad_scale`` multiplies gradients flowing back into the stack (training only).
    """

    def __init__(self, layers: list[list[int]], *, norm: str = "group_norm_first", bias: bool = False,
                 activation: str = "gelu", dropout: float = 0.0, grad_scale: float = 1.0) -> None:
        super().__init__()
        if not layers or any(len(spec) != 3 for spec in layers):
            raise ValueError(f"conv layers must be a non-empty list of [channels, kernel, stride], got {layers}")
        self.layer_specs = [list(map(int, spec)) for spec in layers]
        self.grad_scale = grad_scale
        # GroupNorm over time in the first layer (wav2vec 2.0 BASE) makes a frame depend on the whole row,
        # padding included; per-frame norms do not.
        self.padding_invariant = norm != "group_norm_first"
        modules, in_channels = [], 1
        for index, (channels, kernel, stride) in enumerate(self.layer_specs):
            modules.append(ConvLayer(in_channels, channels, kernel, stride, bias=bias,
                                     norm=_layer_norm_kind(norm, index),
                                     activation=activation, dropout=dropout))
            in_channels = channels
        self.layers = nn.Sequential(*modules)
        self.output_dim = in_channels

    @property
    def downsample(self) -> int:
        """Samples per output frame (product of strides)."""
        return math.prod(stride for _, _, stride in self.layer_specs)

    @property
    def receptive_field(self) -> int:
        """Samples that one output frame sees."""
        field, jump = 1, 1
        for _, kernel, stride in self.layer_specs:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames for ``lengths`` valid samples: ``floor((L - k) / s) + 1`` per layer, >= 0."""
        frames = lengths.to(torch.int64)
        for _, kernel, stride in self.layer_specs:
            frames = torch.clamp(torch.div(frames - kernel, stride, rounding_mode="floor") + 1, min=0)
        return frames

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if waveforms.shape[1] < self.receptive_field:
            # Too short for one frame: pad so the convs run; the frame lengths still say 0 valid frames.
            waveforms = F.pad(waveforms, (0, self.receptive_field - waveforms.shape[1]))
        features = self.layers(waveforms.unsqueeze(1))
        if self.training:
            features = scale_grad(features, self.grad_scale)
        # Clamp: lengths past the batch width (a caller bug, or a crop) cannot make frames appear.
        return features.transpose(1, 2), self.frame_lengths(lengths).clamp(max=features.shape[-1])


@final
class SpectrogramFeatureEncoder(nn.Module):
    """Log-mel spectrogram frames in place of the conv stack: the spectrogram "format" of Multi-Format
    contrastive learning, whose two branches differ only in what the context network reads.

    25 ms windows every 10 ms, not centred, so frame ``t`` covers the same samples as a CPC-stack frame and the
    rest of ``Encoder`` (LayerNorm, projection, context) works unchanged. Nothing here is trained.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16_000) -> None:
        super().__init__()
        window, hop = sample_rate * 25 // 1000, sample_rate * 10 // 1000
        self.logmel = LogMel(sample_rate, n_mels, window, hop)
        self.output_dim, self.downsample, self.receptive_field = n_mels, hop, window
        self.padding_invariant = True  # each frame is its own window's spectrum

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return window_frame_lengths(lengths, self.receptive_field, self.downsample)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if waveforms.shape[1] < self.receptive_field:
            waveforms = F.pad(waveforms, (0, self.receptive_field - waveforms.shape[1]))
        return self.logmel(waveforms.float(), lengths)
