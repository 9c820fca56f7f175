"""Encoders on small synthetic audio: frame arithmetic, padding invariance, causality, hidden states, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audiossl.audio.features import MFCC, Fbank, LogMel
from audiossl.config import ConfigError, to_config
from audiossl.models import Encoder, EncoderConfig, build_encoder
from audiossl.models.feature_encoder import CPC_CONV_LAYERS, WAV2VEC2_CONV_LAYERS, ConvFeatureEncoder

CONF = Path(__file__).resolve().parents[1] / "conf" / "encoder"
SR = 16_000


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def harmonic_chirps(lengths: list[int], tmp_path: Path) -> torch.Tensor:
    """Zero-padded batch of harmonic chirps with noise, round-tripped through 16-bit FLAC like real data."""
    generator = torch.Generator().manual_seed(1)
    batch = torch.zeros(len(lengths), max(lengths))
    for index, length in enumerate(lengths):
        t = torch.arange(length) / SR
        sweep = 120 + 300 * t / max(t[-1].item(), 1e-3) if length else t
        phase = 2 * math.pi * torch.cumsum(sweep, 0) / SR
        wave = sum(torch.sin(h * phase) / h for h in range(1, 5)) * 0.2 + 0.01 * torch.randn(length, generator=generator)
        path = tmp_path / f"chirp{index}.flac"
        sf.write(path, wave.numpy(), SR, subtype="PCM_16")
        batch[index, :length] = torch.from_numpy(sf.read(path, dtype="float32")[0])
    return batch


def tiny_config(**overrides) -> EncoderConfig:
    """A 16-channel wav2vec2-shaped encoder: the arithmetic is the real stack's, the cost is not."""
    base = dict(conv_layers=[[16, k, s] for _, k, s in WAV2VEC2_CONV_LAYERS], conv_norm="layer_norm", model_dim=32,
                num_layers=2, num_heads=4, ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4, layerdrop=0.0,
                feature_grad_scale=1.0)
    base.update(overrides)
    return EncoderConfig(**base)


@pytest.mark.parametrize("stack, downsample, receptive", [(WAV2VEC2_CONV_LAYERS, 320, 400), (CPC_CONV_LAYERS, 160, 465)])
def test_frame_lengths_match_conv_output(stack, downsample, receptive):
    encoder = ConvFeatureEncoder([[8, k, s] for _, k, s in stack], norm="layer_norm")
    assert (encoder.downsample, encoder.receptive_field) == (downsample, receptive)
    lengths = [0, 1, receptive - 1, receptive, receptive + 1, receptive + downsample - 1,
               receptive + downsample, 1000, 1234, 4321, 16_000] + torch.randint(1, 9000, (12,)).tolist()
    for length in lengths:
        features, frames = encoder(torch.randn(1, max(length, 1)), torch.tensor([length]))
        expected = features.shape[1] if length >= receptive else 0
        assert frames.item() == expected, f"length {length}"
        assert expected == max(0, (length - receptive) // downsample + 1)


def test_layer_norm_feature_encoder_is_padding_invariant_and_group_norm_is_not(tmp_path):
    waves = harmonic_chirps([12_000, 20_000], tmp_path)
    lengths = torch.tensor([12_000, 20_000])
    for norm, invariant in [("layer_norm", True), ("group_norm_first", False)]:
        encoder = ConvFeatureEncoder([[16, k, s] for _, k, s in WAV2VEC2_CONV_LAYERS], norm=norm).eval()
        padded, frames = encoder(waves, lengths)
        alone, _ = encoder(waves[:1, :12_000], lengths[:1])
        diff = (padded[0, : frames[0]] - alone[0]).abs().max().item()
        assert (diff < 1e-5) == invariant, f"{norm}: max diff {diff}"


@pytest.mark.parametrize("overrides", [
    dict(context="gru", num_layers=2),
    dict(context="lstm", num_layers=2, rnn_residual=True),
    dict(context="transformer", causal=True),
    dict(context="transformer", causal=False),
    dict(context="transformer", norm_first=True),
    dict(context="gru", feature_encoder="logmel", n_mels=40),  # Multi-Format's spectrogram branch
])
def test_encoder_is_padding_invariant(tmp_path, overrides):
    encoder = build_encoder(tiny_config(**overrides)).eval()
    waves = harmonic_chirps([9_000, 16_000, 12_345], tmp_path)
    lengths = torch.tensor([9_000, 16_000, 12_345])
    batch = encoder(waves, lengths)
    for index in range(3):
        alone = encoder(waves[index: index + 1, : lengths[index]], lengths[index: index + 1])
        frames = batch.lengths[index]
        assert frames == alone.features.shape[1]
        for padded_layer, alone_layer in zip(batch.hidden_states, alone.hidden_states):
            assert torch.allclose(padded_layer[index, :frames], alone_layer[0], atol=2e-5)


@pytest.mark.parametrize("overrides, causal", [(dict(context="gru"), True), (dict(causal=True), True),
                                               (dict(causal=False), False)])
def test_causal_encoders_ignore_the_future(tmp_path, overrides, causal):
    encoder = build_encoder(tiny_config(**overrides)).eval()
    assert encoder.is_causal == causal
    waves = harmonic_chirps([16_000], tmp_path)
    changed = waves.clone()
    changed[0, 8_000:] = torch.randn(8_000) * 0.3
    lengths = torch.tensor([16_000])
    before, after = encoder(waves, lengths).features, encoder(changed, lengths).features
    # Frames whose receptive field ends before sample 8000 cannot see the change in a causal encoder.
    last_clean = (8_000 - encoder.feature_encoder.receptive_field) // encoder.downsample
    same = torch.allclose(before[0, : last_clean + 1], after[0, : last_clean + 1], atol=1e-5)
    assert same == causal
    assert not torch.allclose(before[0, -1], after[0, -1], atol=1e-3)


@pytest.mark.parametrize("overrides", [dict(), dict(norm_first=True), dict(context="gru", num_layers=3)])
def test_hidden_states_shapes(tmp_path, overrides):
    encoder = build_encoder(tiny_config(**overrides))
    waves = harmonic_chirps([8_000, 6_000], tmp_path)
    output = encoder(waves, torch.tensor([8_000, 6_000]))
    frames = (8_000 - 400) // 320 + 1
    assert len(output.hidden_states) == encoder.num_hidden_states == encoder.config.num_layers + 1
    assert all(h.shape == (2, frames, encoder.output_dim) for h in output.hidden_states)
    assert output.hidden_states[-1] is output.features
    assert output.local_features.shape == (2, frames, 16)
    assert output.lengths.tolist() == [frames, (6_000 - 400) // 320 + 1]
    assert output.frame_mask().sum().item() == sum(output.lengths.tolist())


def test_gradient_scale_into_feature_encoder(tmp_path):
    waves = harmonic_chirps([6_000], tmp_path)
    grads = []
    for scale in (1.0, 0.1):
        torch.manual_seed(3)
        encoder = build_encoder(tiny_config(feature_grad_scale=scale, dropout=0.0, feature_dropout=0.0,
                                            attention_dropout=0.0))
        encoder(waves, torch.tensor([6_000])).features.pow(2).sum().backward()
        grads.append(encoder.feature_encoder.layers[0].conv.weight.grad.clone())
    assert torch.allclose(grads[1], 0.1 * grads[0], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_presets_load_and_tiny_ones_run(preset):
    config = to_config(EncoderConfig, OmegaConf.load(CONF / f"{preset}.yaml"), "encoder")
    assert config.name == preset
    if preset.endswith("base"):
        assert config.model_dim in (256, 768)
        return
    encoder = build_encoder(config)
    assert isinstance(encoder, Encoder)
    assert sum(p.numel() for p in encoder.parameters()) < 2_000_000
    output = encoder(torch.randn(2, 8_000) * 0.1, torch.tensor([8_000, 5_000]))
    assert torch.isfinite(output.features).all()


def test_w2v2_base_has_the_published_size():
    encoder = build_encoder(to_config(EncoderConfig, OmegaConf.load(CONF / "w2v2_base.yaml"), "encoder"))
    millions = sum(p.numel() for p in encoder.parameters()) / 1e6
    assert 93 < millions < 96  # 95M with quantiser and heads (wav2vec 2.0 paper)
    assert encoder.downsample == 320 and encoder.num_hidden_states == 13


@pytest.mark.parametrize("key, value", [("conv_norm", "batch_norm"), ("context", "mamba"), ("num_heads", 5),
                                        ("feature_grad_scale", 0.0), ("feature_encoder", "sincnet"), ("n_mels", 0)])
def test_bad_encoder_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"encoder.{key}"):
        build_encoder(tiny_config(**{key: value}))


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="encoder"):
        to_config(EncoderConfig, {"conv_layer": [[1, 2, 3]]}, "encoder")


def test_spectral_front_ends(tmp_path):
    waves = harmonic_chirps([16_000, 9_000], tmp_path)
    lengths = torch.tensor([16_000, 9_000])
    for frontend, dim in [(LogMel(hop_length=320), 80), (Fbank(), 80), (MFCC(), 39)]:
        features, frames = frontend(waves, lengths)
        hop, win = frontend.downsample, frontend.win_length
        assert frames.tolist() == [(16_000 - win) // hop + 1, (9_000 - win) // hop + 1]
        assert features.shape == (2, frames[0], dim) and frontend.output_dim == dim
        assert torch.isfinite(features).all()
    fbank, _ = Fbank(cmvn=False)(waves, lengths)
    import torchaudio

    reference = torchaudio.compliance.kaldi.fbank(waves[1:2, :9_000] * 32768, num_mel_bins=80, dither=0.0,
                                                  energy_floor=0.0)
    assert torch.allclose(fbank[1, : reference.shape[0]], reference, atol=1e-4)
    # A chirp's energy moves up the mel axis over time: the centroid of the last frame is higher.
    logmel, _ = LogMel(hop_length=160)(waves[:1], lengths[:1])
    weights = logmel[0].softmax(-1)
    centroid = (weights * torch.arange(80)).sum(-1)
    assert centroid[-1] > centroid[0] + 2


def channels_first_reference(encoder: ConvFeatureEncoder, waves: torch.Tensor) -> torch.Tensor:
    """The stack as plain ``F.conv1d`` layers with LayerNorms between transposes: what the frames-first GEMMs
    must reproduce."""
    x = waves.unsqueeze(1)
    for layer in encoder.layers:
        x = torch.nn.functional.conv1d(x, layer.conv.weight, layer.conv.bias, stride=layer.conv.stride)
        if isinstance(layer.norm, torch.nn.LayerNorm):
            x = layer.norm(x.transpose(1, 2)).transpose(1, 2)
        x = layer.activation(x)
    return x.transpose(1, 2)


@pytest.mark.parametrize("layers", [[[8, 10, 5], [8, 8, 4], [8, 4, 2]], [[8, 10, 5], [8, 3, 2], [8, 2, 2]]],
                         ids=["kernels_span_strides", "wav2vec2_kernels"])
def test_frames_first_stack_equals_the_convolutions(layers):
    """Frames-first layers run as GEMMs (windows for the mono first layer, blocks of strides where the kernel
    spans whole strides, ``Conv1d`` otherwise): outputs, weight and input gradients must equal the plain
    convolutions', for lengths the strides do not divide, with and without bias and input gradients."""
    for bias in (False, True):
        encoder = ConvFeatureEncoder(layers, norm="layer_norm", bias=bias, activation="relu")
        assert encoder.frames_first
        waves, lengths = torch.randn(3, 4_003, dtype=torch.float64), torch.full((3,), 4_003)
        encoder = encoder.double()
        results = []
        for run in (lambda w: encoder(w, lengths)[0], lambda w: channels_first_reference(encoder, w)):
            for needs_grad in (False, True):
                encoder.zero_grad()
                inputs = waves.clone().requires_grad_(needs_grad)
                features = run(inputs)
                (features.pow(2) * torch.linspace(0, 1, features.shape[1])[:, None]).sum().backward()
                grads = [p.grad.clone() for p in encoder.parameters()]
                results.append((features.detach(), grads, inputs.grad if needs_grad else None))
        for ours, reference in zip(results[:2], results[2:]):
            assert ours[0].shape == reference[0].shape
            assert torch.allclose(ours[0], reference[0], atol=1e-10)
            assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(ours[1], reference[1]))
        assert torch.allclose(results[1][2], results[3][2], atol=1e-9)


def test_layerdrop_skips_layers_only_in_training(tmp_path):
    encoder = build_encoder(tiny_config(layerdrop=1.0, dropout=0.0, attention_dropout=0.0, feature_dropout=0.0))
    waves, lengths = harmonic_chirps([6_000], tmp_path), torch.tensor([6_000])
    trained = encoder.train()(waves, lengths).hidden_states
    assert all(torch.equal(trained[1], layer) for layer in trained[2:])  # every layer dropped: no change
    evaluated = encoder.eval()(waves, lengths).hidden_states
    assert not torch.allclose(evaluated[1], evaluated[2])


def test_logmel_feature_encoder_frames_match_the_cpc_stack_grid(tmp_path):
    """A spectrogram branch frame ``t`` covers samples [160 t, 160 t + 400): the 10 ms grid of the CPC conv stack,
    so the two branches of Multi-Format see the same number of frames per crop (up to the window edge)."""
    spectrogram = build_encoder(tiny_config(context="gru", feature_encoder="logmel", n_mels=40)).eval()
    waves = harmonic_chirps([16_000, 8_000], tmp_path)
    output = spectrogram(waves, torch.tensor([16_000, 8_000]))
    assert output.lengths.tolist() == [(16_000 - 400) // 160 + 1, (8_000 - 400) // 160 + 1]
    assert spectrogram.downsample == 160 and spectrogram.feature_encoder.receptive_field == 400
    assert not list(spectrogram.feature_encoder.parameters())  # nothing to train in front of the projection
