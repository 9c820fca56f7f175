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
        # In the weight's dtype whatever autocast made of the output: the weight (and its gradient) stay float32.
        flat_grad = grad.reshape(-1, grad.shape[-1]).to(ctx.weight_dtype)
        weight_grad = (windows.reshape(-1, windows.shape[-1]).to(ctx.weight_dtype).T @ flat_grad).T
        bias_grad = flat_grad.sum(0).to(ctx.weight_dtype) if ctx.has_bias else None
        return None, weight_grad.to(ctx.weight_dtype), bias_grad


class _BlockConvolution(torch.autograd.Function):
    """A strided 1-D convolution on frames-first input whose kernel spans whole strides (``kernel = taps *
    stride``, every layer of the CPC stack), as one GEMM.

    Regrouped into non-overlapping blocks of ``stride`` frames (a view of ``(batch, frames, channels)``), each
    output frame reads ``taps`` consecutive blocks, so ``blocks @ weight_per_tap.T`` gives every tap's share in
    one product and the output is the sum of ``taps`` shifted column groups: no im2col copy, no transposes
    around the per-frame LayerNorm. The backward is written out so that the weight gradient runs in MKL's fast
    orientation (see ``_WindowProjection``) and the input gradient is one GEMM, without the zero-filled slice
    gradients autograd would build. CPC tiny stack, 4 x 2 s, 2 threads: forward + backward 47-50 ms against 58-64
    for ``Conv1d`` with transposed LayerNorms (profiled, 2026-12-08).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        batch, length, channels = x.shape
        out_channels, _, kernel = weight.shape
        taps, blocks_count = kernel // stride, length // stride
        frames = blocks_count - taps + 1
        blocks = x[:, : blocks_count * stride].reshape(batch, blocks_count, stride * channels)
        # (out, in, taps, stride) -> (taps * out, stride * in), matching a block's (frame, channel) order
        per_tap = weight.view(out_channels, channels, taps, stride).permute(2, 0, 3, 1)
        per_tap = per_tap.reshape(taps * out_channels, stride * channels)
        shares = torch.matmul(blocks, per_tap.T)
        output = shares[:, :frames, :out_channels]
        for tap in range(1, taps):
            output = output + shares[:, tap:tap + frames, tap * out_channels:(tap + 1) * out_channels]
        if bias is not None:
            output = output + bias
        ctx.save_for_backward(blocks, per_tap)
        ctx.geometry = (length, kernel, stride, taps, frames, bias is not None, x.dtype, weight.dtype)
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None, None]:
        blocks, per_tap = ctx.saved_tensors
        length, kernel, stride, taps, frames, has_bias, x_dtype, weight_dtype = ctx.geometry
        batch, blocks_count, block_width = blocks.shape
        out_channels, channels = grad.shape[-1], block_width // stride
        grad = grad.to(weight_dtype)  # whatever autocast made of the output, as in _WindowProjection
        grad_shares = grad.new_empty(batch, blocks_count, taps * out_channels)
        for tap in range(taps):
            columns = slice(tap * out_channels, (tap + 1) * out_channels)
            grad_shares[:, tap:tap + frames, columns] = grad
            grad_shares[:, :tap, columns] = 0
            grad_shares[:, tap + frames:, columns] = 0
        flat_shares = grad_shares.reshape(-1, taps * out_channels)
        grad_per_tap = (blocks.reshape(-1, block_width).to(weight_dtype).T @ flat_shares).T
        grad_weight = grad_per_tap.reshape(taps, out_channels, stride, channels).permute(1, 3, 0, 2)
        grad_weight = grad_weight.reshape(out_channels, channels, kernel)
        grad_bias = grad.sum((0, 1)) if has_bias else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_shares @ per_tap.to(weight_dtype)).reshape(batch, blocks_count * stride, channels)
            if length > blocks_count * stride:  # the frames no block read (a cat: F.pad would zero-fill it all)
                grad_x = torch.cat([grad_x, grad_x.new_zeros(batch, length - blocks_count * stride, channels)], 1)
            grad_x = grad_x.to(x_dtype)
        return grad_x, grad_weight, grad_bias, None


@final
class ConvLayer(nn.Module):
    """conv -> (dropout) -> (norm) -> activation, as in wav2vec 2.0's feature extractor.

    ``frames_first`` layers take and return ``(batch, frames, channels)``: the per-frame LayerNorm then
    normalises a contiguous last dimension, and the convolution runs as a GEMM (``_frames_convolution``). On
    CPU that beats ``Conv1d`` with LayerNorms between transposes (the activation's backward on a transposed
    tensor alone cost more than the convolutions, profiled). Channels-first layers (``(batch, channels,
    frames)``) are the stacks with a GroupNorm over time (wav2vec 2.0 BASE), where the plain convolution is
    faster. Both keep ``Conv1d``'s state-dict layout.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int, *, bias: bool,
                 norm: str, activation: str, dropout: float, frames_first: bool) -> None:
        super().__init__()
        if frames_first and norm == "group_norm":
            raise ValueError("a GroupNorm over time needs a channels-first conv layer")
        self.conv = nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.frames_first = frames_first
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if norm == "layer_norm":
            if not frames_first:
                raise ValueError("a per-frame LayerNorm needs a frames-first conv layer")
            self.norm: nn.Module = nn.LayerNorm(channels)
        elif norm == "group_norm":
            # One group per channel, normalised over time: wav2vec 2.0 BASE's choice; needs equal-length crops.
            self.norm = nn.GroupNorm(channels, channels)
        else:
            self.norm = nn.Identity()
        self.activation = nn.GELU() if activation == "gelu" else nn.ReLU()

    def _frames_convolution(self, x: Tensor) -> Tensor:
        """``(batch, frames, in) -> (batch, frames', out)``, as the ``Conv1d`` would compute it.

        A waveform that needs no gradient (the first layer in training) is unfolded into windows and projected
        (``_WindowProjection``: its windows are tiny); kernels spanning whole strides run as
        ``_BlockConvolution``; any other kernel goes through the ``Conv1d`` between transposes.
        """
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        if x.shape[-1] == 1 and not x.requires_grad:
            windows = x[..., 0].unfold(-1, kernel, stride).contiguous()  # (batch, frames, kernel)
            return _WindowProjection.apply(windows, self.conv.weight.view(-1, kernel), self.conv.bias)
        if kernel % stride == 0:
            return _BlockConvolution.apply(x, self.conv.weight, self.conv.bias, stride)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self._frames_convolution(x) if self.frames_first else self.conv(x)
        return self.activation(self.norm(self.dropout(x)))


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
        # Per-frame norms (or none) run frames-first end to end (``ConvLayer``); a GroupNorm over time does not.
        self.frames_first = norm != "group_norm_first"
        modules, in_channels = [], 1
        for index, (channels, kernel, stride) in enumerate(self.layer_specs):
            modules.append(ConvLayer(in_channels, channels, kernel, stride, bias=bias,
                                     norm=_layer_norm_kind(norm, index),
                                     activation=activation, dropout=dropout, frames_first=self.frames_first))
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
        if self.frames_first:
            features = self.layers(waveforms.unsqueeze(-1))
        else:
            features = self.layers(waveforms.unsqueeze(1)).transpose(1, 2)
        if self.training:
            features = scale_grad(features, self.grad_scale)
        # Clamp: lengths past the batch width (a caller bug, or a crop) cannot make frames appear.
        return features, self.frame_lengths(lengths).clamp(max=features.shape[1])


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
