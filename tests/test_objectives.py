"""The pretext tasks on small synthetic audio: contracts, wav2vec 2.0 / HuBERT details, and that each learns."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audiossl.config import ConfigError, to_config
from audiossl.data.batch import AudioBatch
from audiossl.models import EncoderConfig, build_encoder
from audiossl.objectives._contrastive import sample_excluding_self
from audiossl.objectives._crops import two_views
from audiossl.objectives.base import objective_names, objective_spec

CONF = Path(__file__).resolve().parents[1] / "conf"
KM_CLUSTERS = 8
SR = 16_000
W2V2_STACK = [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]]
CPC_STACK = [[32, 10, 5], [32, 8, 4], [32, 4, 2], [32, 4, 2], [32, 4, 2]]
TRANSFORMER = dict(conv_layers=W2V2_STACK, conv_norm="layer_norm", model_dim=64, num_layers=2, num_heads=4,
                   ffn_dim=128, layerdrop=0.0, pos_conv_kernel=16, pos_conv_groups=4, dropout=0.0,
                   attention_dropout=0.0, feature_dropout=0.0)
RNN = dict(conv_layers=CPC_STACK, conv_norm="layer_norm", model_dim=64, context="gru", num_layers=2, dropout=0.0,
           feature_dropout=0.0, feature_grad_scale=1.0)
# Small heads so a few dozen steps on one core show learning; the defaults are checked separately.
SMALL = {
    "cpc": (RNN | dict(num_layers=1), dict(prediction_steps=4, num_negatives=32)),
    "apc": (RNN, dict(n_mels=40)),
    "cola": (RNN, dict(crop_seconds=0.5, embedding_dim=64)),
    "wav2vec2": (TRANSFORMER, dict(num_codebooks=2, codebook_entries=32, codevector_dim=32, final_dim=32,
                                   num_negatives=20, target_dropout=0.0, diversity_weight=1.0)),
    "hubert": (TRANSFORMER, dict(num_clusters=KM_CLUSTERS, final_dim=32, mask_span=2, mask_prob=0.3,
                                 feature_penalty_weight=0.0)),
    "pase": (RNN | dict(num_layers=1), dict(worker_hidden=64)),
    "multiformat": (RNN | dict(num_layers=1), dict(
        crop_seconds=0.5, projection_dim=32,
        spectrogram_encoder=RNN | dict(num_layers=1, feature_encoder="logmel", n_mels=40))),
}


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def sweeps(count: int, seconds: float, tmp_path: Path, seed: int = 0, narrow: bool = False) -> AudioBatch:
    """Harmonic sweeps (up or down across 100-500 Hz) with a slow tremolo and a little noise, written to
    16-bit FLAC and read back. Each frame differs from the others of its clip and follows from its
    neighbours (what CPC, APC and wav2vec 2.0 need); each clip has its own harmonic weights and tremolo
    rate, a "voice" that any crop of it shares (what COLA needs). ``narrow`` gives clip ``i`` its own
    register instead (100 * 1.25**i Hz, sweeping 15%), so clips are told apart by pitch too."""
    generator = torch.Generator().manual_seed(seed)
    samples = int(seconds * SR)
    t = torch.arange(samples) / SR
    waves = []
    for index in range(count):
        low, high = 100 + 50 * torch.rand((), generator=generator), 400 + 100 * torch.rand((), generator=generator)
        if narrow:
            low, high = 100 * 1.25**index, 115 * 1.25**index
        start, end = (low, high) if index % 2 == 0 else (high, low)
        phase = 2 * math.pi * torch.cumsum(start + (end - start) * t / seconds, 0) / SR
        tremolo = 0.6 + 0.4 * torch.sin(2 * math.pi * (3 + 3 * torch.rand((), generator=generator)) * t
                                         + 2 * math.pi * torch.rand((), generator=generator))
        weights = torch.rand(5, generator=generator) ** 2 + 0.05
        wave = 0.2 * tremolo * sum(w * torch.sin(h * phase) for h, w in enumerate(weights.tolist(), start=1))
        wave = wave + 0.01 * torch.randn(samples, generator=generator)
        path = tmp_path / f"sweep{seed}_{index}.flac"
        sf.write(path, wave.numpy(), SR, subtype="PCM_16")
        waves.append(torch.from_numpy(sf.read(path, dtype="float32")[0]))
    speakers = [f"spk{index % 2}" for index in range(count)]
    return AudioBatch(torch.stack(waves), torch.full((count,), samples), [f"sweep{i}" for i in range(count)],
                      {"spk": speakers, "km": km_labels(torch.stack(waves), samples)})


def km_labels(waves: torch.Tensor, samples: int) -> list[str]:
    """HuBERT-style targets: per 20 ms frame, the strongest of ``KM_CLUSTERS`` fixed random projections of
    the 10 ms MFCC (every second frame: frame t covers samples [320 t, 320 t + 400), like the conv stack)."""
    from audiossl.audio.features import MFCC

    mfcc, _ = MFCC(cmvn=True)(waves, torch.full((len(waves),), samples))
    projection = torch.randn(mfcc.shape[-1], KM_CLUSTERS, generator=torch.Generator().manual_seed(5))
    ids = (mfcc[:, ::2] @ projection).argmax(-1)
    return [" ".join(map(str, row.tolist())) for row in ids]


def build(name: str, **objective_overrides):
    encoder_kw, objective_kw = SMALL[name]
    spec = objective_spec(name)
    config = to_config(spec.config_cls, {"name": name, **objective_kw, **objective_overrides}, "objective")
    return spec.build(config, build_encoder(EncoderConfig(**encoder_kw)))


def train(objective, batch: AudioBatch, steps: int, lr: float) -> list[dict[str, float]]:
    optimizer = torch.optim.AdamW(objective.parameters(), lr=lr)
    history = []
    for step in range(1, steps + 1):
        output = objective(batch)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        objective.on_update(step)
        history.append({name: float(value) for name, value in output.metrics.items()})
    return history


def last_mean(history: list[dict[str, float]], key: str, n: int = 5) -> float:
    return sum(m[key] for m in history[-n:]) / n


def test_registry_and_yaml_build_every_objective():
    names = {"cpc", "wav2vec2", "apc", "cola", "hubert", "pase", "multiformat"}
    assert names == set(objective_names())
    encoder_cfg = OmegaConf.load(CONF / "encoder" / "apc_gru_tiny.yaml")
    for name in sorted(names - {"multiformat"}):  # its YAML composes another encoder: see the Hydra test below
        node = OmegaConf.load(CONF / "objective" / f"{name}.yaml")
        assert node.name == name
        spec = objective_spec(node.name)
        objective = spec.build(to_config(spec.config_cls, node, "objective"),
                               build_encoder(to_config(EncoderConfig, encoder_cfg, "encoder")))
        assert objective.encoder is not None


EXPECTED_METRICS = {
    "cpc": {"loss", "acc", "acc_k1", "acc_k4"},
    "apc": {"loss", "copy_l1"},
    "cola": {"loss", "acc", "contrastive", "variance", "emb_std"},
    "wav2vec2": {"loss", "contrastive", "diversity", "penalty", "code_ppl", "prob_ppl", "temp", "acc", "mask_frac",
                 "logit_spread", "same_code"},
    "hubert": {"loss", "loss_m", "acc_m", "acc_u", "mask_frac"},
    "pase": {"loss", "waveform", "lps", "fbank", "mfcc", "lps_long", "fbank_long", "mfcc_long", "prosody", "lim",
             "gim", "acc_lim", "acc_gim"},
    "multiformat": {"loss", "cross", "within", "acc", "acc_wave", "acc_spec", "std_wave", "std_spec"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_METRICS))
def test_forward_contract_gradients_and_determinism(name, tmp_path):
    batch = sweeps(4, 1.0, tmp_path)
    objective = build(name)
    torch.manual_seed(7)
    output = objective(batch)
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    assert EXPECTED_METRICS[name] <= set(output.metrics)
    # tensors stay on the device (the trainer reads them back per log line); each is one finite number
    tensors = [v for v in output.metrics.values() if isinstance(v, torch.Tensor)]
    assert all(v.dim() == 0 and not v.requires_grad for v in tensors)
    assert all(math.isfinite(float(v)) for v in output.metrics.values())
    output.loss.backward()
    first_conv = objective.encoder.feature_encoder.layers[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    torch.manual_seed(7)
    assert objective(batch).loss.item() == output.loss.item()  # same RNG state -> same crops/masks/negatives


def test_cpc_learns(tmp_path):
    history = train(build("cpc"), sweeps(8, 1.0, tmp_path), steps=30, lr=2e-3)
    chance = 1 / 33
    assert history[0]["acc"] < 3 * chance
    assert last_mean(history, "acc") > 5 * chance
    assert history[-1]["acc_k1"] >= history[-1]["acc_k4"]  # the near future is easier


def test_cola_learns(tmp_path):
    history = train(build("cola"), sweeps(8, 1.0, tmp_path, narrow=True), steps=30, lr=3e-3)
    assert last_mean(history, "acc") > 3 / 8
    assert last_mean(history, "loss") < math.log(8) - 0.5


def test_apc_beats_copying_the_last_frame(tmp_path):
    history = train(build("apc"), sweeps(6, 1.0, tmp_path), steps=40, lr=3e-3)
    assert history[0]["loss"] > history[0]["copy_l1"]  # an untrained model is worse than copying
    assert last_mean(history, "loss") < 0.9 * history[-1]["copy_l1"]


def test_wav2vec2_learns(tmp_path):
    # Short spans and no feature penalty: the default p=0.065 x 10 recipe needs ~100+ steps to leave chance.
    objective = build("wav2vec2", mask_span=2, mask_prob=0.3, feature_penalty_weight=0.0)
    history = train(objective, sweeps(6, 1.0, tmp_path), steps=80, lr=5e-3)
    chance_loss = math.log(21)
    assert history[0]["contrastive"] > 0.95 * chance_loss
    assert last_mean(history, "contrastive") < 0.8 * chance_loss
    assert last_mean(history, "acc") > 0.25
    assert history[-1]["code_ppl"] > 8  # not a collapse (one code = every distractor excluded = acc 1)


# The 10 ms conv stack built the wav2vec 2.0 way (GELU, no bias) and built CPC_audio's way (ReLU, bias).
CPC_STACK_W2V2_STYLE = TRANSFORMER | dict(conv_layers=CPC_STACK, conv_activation="gelu", conv_bias=False)
CPC_STACK_CPC_STYLE = TRANSFORMER | dict(conv_layers=CPC_STACK, conv_activation="relu", conv_bias=True)


def build_wav2vec2(encoder_kw: dict, **objective_overrides):
    spec = objective_spec("wav2vec2")
    config = to_config(spec.config_cls, {"name": "wav2vec2", **SMALL["wav2vec2"][1], **objective_overrides},
                       "objective")
    return spec.build(config, build_encoder(EncoderConfig(**encoder_kw)))


OVERFIT = dict(mask_span=3, mask_prob=0.3, feature_penalty_weight=0.0, gumbel_temp_decay=0.99,
               collapse_check_after=0)


def test_wav2vec2_overfits_16_clips(tmp_path):
    """Far below chance on 16 clips with the preset's 10 ms stack: masking, distractors, quantiser and loss can
    learn at all (an objective stuck at log(K+1) fails here), with the codebook in use, and the collapse
    warning stays quiet. About 20 s on one core."""
    objective = build_wav2vec2(CPC_STACK_W2V2_STYLE, **OVERFIT)
    history = train(objective, sweeps(16, 1.0, tmp_path), steps=250, lr=3e-3)
    chance = math.log(21)
    assert last_mean(history, "contrastive") < 0.45 * chance, [round(m["contrastive"], 2) for m in history[::10]]
    assert last_mean(history, "acc") > 0.6
    assert last_mean(history, "code_ppl") > 8 and last_mean(history, "same_code") < 0.2
    assert objective.warnings(history[-1]) == []


def test_collapse_warning_fires_on_a_run_stuck_at_chance(tmp_path):
    """CPC_audio's conv blocks (bias + ReLU) under wav2vec 2.0: every frame's features share one large part,
    the targets look alike and the loss sits at log(K+1). The warning must say so; the same run with the
    wav2vec 2.0 conv blocks (the test above) learns and stays quiet."""
    objective = build_wav2vec2(CPC_STACK_CPC_STYLE, **OVERFIT)
    history = train(objective, sweeps(16, 1.0, tmp_path), steps=60, lr=3e-3)
    assert last_mean(history, "contrastive") > 0.9 * math.log(21)
    (advice,) = objective.warnings(history[-1])
    assert "near chance" in advice and "learning rate" in advice


def test_wav2vec2_continuous_targets(tmp_path):
    """fairseq's ``quantize_targets=False``: no quantiser; the targets are the layer-normed conv features."""
    objective = build("wav2vec2", quantize_targets=False)
    assert objective.quantizer is None
    output = objective(sweeps(4, 1.0, tmp_path))
    assert torch.isfinite(output.loss) and "code_ppl" not in output.metrics and "diversity" not in output.metrics
    output.loss.backward()
    assert objective.encoder.feature_encoder.layers[0].conv.weight.grad.abs().sum() > 0


def test_wav2vec2_spectral_targets_with_an_unmasked_term_learn(tmp_path):
    """``target_features=mfcc``: the quantiser reads the MFCC frames of the waveform (fixed, no gradient) at
    the 10 ms stack's frames, and ``unmasked_weight`` adds the contrastive task on unmasked frames; both fall
    well below chance."""
    objective = build_wav2vec2(CPC_STACK_W2V2_STYLE, target_features="mfcc", unmasked_weight=1.0,
                               **OVERFIT)
    assert objective.quantizer.entry_proj.in_features == 39
    history = train(objective, sweeps(8, 1.0, tmp_path), steps=80, lr=3e-3)
    chance = math.log(21)
    assert history[0]["contrastive"] > 0.9 * chance and history[0]["contrastive_u"] > 0.9 * chance
    assert last_mean(history, "contrastive") < 0.7 * chance, [round(m["contrastive"], 2) for m in history[::10]]
    assert last_mean(history, "contrastive_u") < 0.7 * chance
    assert last_mean(history, "code_ppl") > 8


def test_wav2vec2_target_options_are_checked():
    with pytest.raises(ConfigError, match="objective.target_features"):
        build("wav2vec2", target_features="spectrogram")
    with pytest.raises(ConfigError, match="objective.unmasked_weight"):
        build("wav2vec2", unmasked_weight=0.5)  # conv targets: an unmasked frame would see its own target
    with pytest.raises(ConfigError, match="objective.target_features.*line up"):
        build("wav2vec2", target_features="logmel")  # the 20 ms stack: frames every 320 samples, not 160


def test_wav2vec2_mask_fraction_matches_expectation():
    objective = build("wav2vec2", mask_prob=0.65, mask_span=10)
    frames = 1000
    spans, starts = int(0.065 * (frames - 1)), frames - 10 + 1
    # P(frame covered) when `spans` span starts are drawn uniformly (with replacement) from `starts` positions.
    covered = sum(1 - (1 - min(i + 1, 10, frames - i, starts) / starts) ** spans for i in range(frames)) / frames
    single_rows = [objective.masking.draw(torch.tensor([frames]), frames) for _ in range(30)]
    fraction = torch.cat(single_rows).float().mean().item()
    assert abs(fraction - covered) < 0.015 and 0.45 < fraction < 0.5  # the paper's "about 49%"
    # In a batch every row masks the same number of frames (the least-masked row's count).
    mask = objective.masking.draw(torch.full((8,), frames), frames)
    assert len(set(mask.sum(1).tolist())) == 1 and 0.38 < mask.float().mean().item() <= fraction + 0.03


def masked_runs(row: torch.Tensor) -> torch.Tensor:
    """Lengths of the runs of consecutive masked positions of one row."""
    edges = torch.diff(torch.cat([torch.zeros(1), row.float(), torch.zeros(1)]))
    return (edges == -1).nonzero().flatten() - (edges == 1).nonzero().flatten()


def test_contiguous_masks_equalise_rows_without_holes(one_thread_seeded):
    """The tiny presets' batches: 4 rows of 199 frames (2 s crops at 10 ms), 12 spans of 10. fairseq2's
    equalisation unmasks random frames of the fuller rows, which leaves many runs of 1-4 frames (each
    predictable from its neighbours); the contiguous one keeps the same masked share and count per row,
    with at most two spans per row cut short."""
    fragments = {}
    for contiguous in (False, True):
        objective = build("wav2vec2", mask_prob=0.65, mask_span=10, mask_contiguous=contiguous)
        masks = [objective.masking.draw(torch.full((4,), 199), 199) for _ in range(200)]
        assert all(len(set(mask.sum(1).tolist())) == 1 for mask in masks)
        share = torch.stack(masks).float().mean().item()
        fragments[contiguous] = sum(int((masked_runs(row) < 5).sum()) for mask in masks for row in mask) / 800
        assert 0.38 < share < 0.44, share
        if contiguous:  # only the one unmasked run of each row can cut spans: at most 2 short runs per row
            assert all(int((masked_runs(row) < 10).sum()) <= 2 for mask in masks for row in mask)
    assert fragments[False] > 5 and fragments[True] < 0.7, fragments


def test_masked_frames_take_the_encoders_mask_embedding():
    objective = build("hubert")
    encoder = objective.encoder
    x = torch.randn(2, 50, 64)
    mask = objective.masking.draw(torch.tensor([50, 40]), 50)
    masked = encoder.mask(x, mask)
    assert torch.equal(masked[mask], encoder.mask_embedding.expand(int(mask.sum()), -1))
    assert torch.equal(masked[~mask], x[~mask])
    assert not mask[1, 40:].any()  # padding is never masked


def test_distractors_exclude_the_positive():
    index = sample_excluding_self(3, 7, 500, torch.device("cpu"))
    own = torch.arange(7)[None, :, None]
    assert not (index == own).any() and index.min() >= 0 and index.max() <= 6
    assert len(index[0, 0].unique()) == 6  # all other positions are reachable
    objective = build("wav2vec2")
    predictions, targets = torch.randn(2, 12, 32), torch.randn(2, 12, 32)
    codes = torch.zeros(2, 12, 2, dtype=torch.long)
    codes[:, :6, 0] = 1  # two groups of identical targets
    logits = objective._logits(predictions, targets, codes)
    assert logits.shape == (2, 12, 1 + 20)
    excluded = torch.isinf(logits[..., 1:])
    assert excluded.any() and not torch.isinf(logits[..., 0]).any()
    same_group_share = excluded.float().mean().item()
    assert 0.35 < same_group_share < 0.55  # 5 of the 11 others share the code


def test_too_short_clips_are_dropped_or_rejected(tmp_path, caplog):
    objective = build("wav2vec2")  # p=0.065, span 10: needs 32 frames (~0.64 s)
    batch = sweeps(2, 1.0, tmp_path)
    batch.lengths[1] = 8_000
    with caplog.at_level(logging.WARNING):
        assert torch.isfinite(objective(batch).loss)
    assert "too short" in caplog.text
    batch.lengths[0] = 8_000
    with pytest.raises(ValueError, match="too short to mask"):
        objective(batch)


def test_gumbel_temperature_schedule():
    objective = build("wav2vec2")
    assert objective.on_update(0)["temp"] == 2.0
    assert objective.on_update(100_000)["temp"] == pytest.approx(2 * 0.999995**100_000)
    assert objective.on_update(1_000_000)["temp"] == 0.5
    state = objective.state_dict()
    fresh = build("wav2vec2")
    fresh.load_state_dict(state)
    assert fresh.temperature == 0.5  # the schedule position travels with checkpoints


def test_collapse_warning():
    objective = build("wav2vec2")
    healthy = {"contrastive": 2.1, "acc": 0.45, "code_ppl": 40.0}
    at_chance = {"contrastive": 0.98 * math.log(21), "acc": 0.05, "code_ppl": 40.0}
    one_code = {"contrastive": 0.0, "acc": 1.0, "code_ppl": 2.0}
    assert objective.warnings(at_chance) == []  # too early to judge
    objective.on_update(1_000)
    assert objective.warnings(healthy) == []
    for metrics in (at_chance, one_code):
        (advice,) = objective.warnings(metrics)
        assert "learning rate" in advice and "diversity_weight" in advice and "warmup" in advice


def test_cpc_negative_pools(tmp_path, caplog):
    batch = sweeps(4, 0.5, tmp_path)
    objective = build("cpc", negatives="speaker")
    valid = torch.ones(4, 10, dtype=torch.bool)
    allowed = objective._allowed_pairs(batch, 4, torch.device("cpu"))
    drawn_from = objective._negative_indices(allowed, valid) // 10
    assert (drawn_from % 2 == torch.arange(4)[:, None] % 2).all()  # spk0 = clips 0, 2; spk1 = clips 1, 3
    objective = build("cpc", negatives="utterance")
    valid[2, 4:] = False
    drawn = objective._negative_indices(objective._allowed_pairs(batch, 4, torch.device("cpu")), valid)
    assert (drawn // 10 == torch.arange(4)[:, None]).all() and (drawn[2] % 10 < 4).all()
    objective = build("cpc", negatives="speaker")
    batch.labels.clear()
    with caplog.at_level(logging.WARNING):
        assert torch.isfinite(objective(batch).loss)
        objective(batch)
    assert caplog.text.count("no 'spk' labels") == 1


def test_future_predictors_need_a_causal_encoder():
    for name in ("cpc", "apc"):
        spec = objective_spec(name)
        with pytest.raises(ConfigError, match="causal"):
            spec.build(spec.config_cls(), build_encoder(EncoderConfig(**TRANSFORMER)))


def test_bad_objective_config_names_the_key():
    with pytest.raises(ConfigError, match="objective.negatives"):
        build("cpc", negatives="everything")
    with pytest.raises(ConfigError, match="objective.num_negatives"):
        to_config(objective_spec("wav2vec2").config_cls, {"num_negatives": "many"}, "objective")


@pytest.mark.parametrize("name", sorted(EXPECTED_METRICS))
def test_mixed_precision_keeps_loss_and_gradients_float32(name, tmp_path):
    objective = build(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = objective(sweeps(4, 1.0, tmp_path))
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    output.loss.backward()
    grad = objective.encoder.feature_encoder.layers[0].conv.weight.grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_hubert_learns(tmp_path):
    history = train(build("hubert"), sweeps(6, 1.0, tmp_path), steps=60, lr=5e-3)
    chance = 1 / KM_CLUSTERS
    assert history[0]["acc_m"] < 2.5 * chance
    assert last_mean(history, "acc_m") > 4 * chance
    assert last_mean(history, "loss_m") < 0.7 * history[0]["loss_m"]


def test_hubert_denoising_hears_a_corrupted_batch_in_training_only(tmp_path):
    """WavLM: the training forward sees mixed/noisy audio against the clean targets; evaluation sees clean audio."""
    batch = sweeps(4, 1.0, tmp_path)
    objective = build("hubert", denoising={"mix_prob": 1.0, "noise_prob": 1.0})
    heard = []
    objective.encoder.extract = lambda waves, lengths, extract=objective.encoder.extract: (
        heard.append(waves.clone()), extract(waves, lengths))[1]
    assert torch.isfinite(objective(batch).loss)
    objective.eval()
    with torch.no_grad():
        objective(batch)
    assert not torch.equal(heard[0], batch.waveforms) and torch.equal(heard[1], batch.waveforms)
    history = train(objective.train(), batch, steps=40, lr=5e-3)
    assert last_mean(history, "acc_m") > 1.8 / KM_CLUSTERS  # above chance: it learns clean targets through the noise


def test_hubert_reads_each_crops_own_frames_of_the_label_line(tmp_path):
    objective = build("hubert")
    stride = objective.encoder.downsample
    batch = sweeps(2, 1.0, tmp_path)
    line = " ".join(str(i % KM_CLUSTERS) for i in range(60))
    batch.labels["km"] = [line, line]
    batch.offsets = torch.tensor([3 * stride, 0])
    targets = objective._frame_targets(batch, 49)
    assert targets[0].tolist() == [(i + 3) % KM_CLUSTERS for i in range(49)]
    assert targets[1].tolist() == [i % KM_CLUSTERS for i in range(49)]
    short = objective._frame_targets(batch, 59)  # the line ends 3 frames into the first crop's last ones
    assert short[0, 57:].tolist() == [-100, -100] and short[1, 58] == 58 % KM_CLUSTERS
    batch.offsets = torch.tensor([stride + 7, 0])
    with pytest.raises(ValueError, match="data.crop_step=320"):
        objective._frame_targets(batch, 49)
    batch.offsets = torch.zeros(2, dtype=torch.long)
    batch.labels["km"] = [" ".join(["1"] * 25)] * 2  # 40 ms labels for a 20 ms encoder: half the frames
    with pytest.raises(ValueError, match="another frame grid"):
        objective._frame_targets(batch, 49)


def test_hubert_names_missing_or_bad_labels(tmp_path):
    batch = sweeps(2, 1.0, tmp_path)
    del batch.labels["km"]
    with pytest.raises(ValueError, match="audiossl-kmeans"):
        build("hubert")(batch)
    batch.labels["km"] = ["3 9 1", "0 1 2"]
    with pytest.raises(ValueError, match="sweep0.*objective.num_clusters=8"):
        build("hubert")(batch)


def test_cola_views_of_a_clip_always_differ(tmp_path):
    objective = build("cola", crop_seconds=0.5)
    batch = sweeps(4, 1.0, tmp_path)
    batch.lengths = torch.tensor([16_000, 8_000, 4_000, 1_000])  # shorter than the crop: 80 % crops of them
    for seed in range(20):
        torch.manual_seed(seed)
        views, lengths = two_views(batch, objective.config.crop_seconds, objective.config.max_crop_share)
        first, second = views.chunk(2)
        assert lengths.tolist() == [8_000, 6_400, 3_200, 800] * 2
        assert all(not torch.equal(a[:n], b[:n]) for a, b, n in zip(first, second, lengths[:4].tolist()))
        assert (first[1, 6_400:] == 0).all()  # past a crop's length: zeros


def test_cola_collapse_is_reported_and_guarded(tmp_path):
    objective = build("cola")
    collapsed = {"loss": 2.08, "acc": 0.125, "emb_std": 0.001}
    assert objective.warnings(collapsed) == []  # too early to judge
    objective.on_update(1_000)
    (advice,) = objective.warnings(collapsed)
    assert "variance_weight" in advice and "collapsed" in advice
    assert objective.warnings({"loss": 1.0, "acc": 0.6, "emb_std": 0.3}) == []
    # The guard: identical embeddings cost variance_weight * variance_target; spread ones cost nothing.
    output = build("cola", variance_weight=2.0)(sweeps(4, 1.0, tmp_path))
    metrics = {name: float(value) for name, value in output.metrics.items()}
    assert metrics["loss"] == pytest.approx(metrics["contrastive"] + 2.0 * metrics["variance"])



def test_pase_workers_learn_their_targets(tmp_path):
    """The spectral workers get below predicting the mean (MSE 1 on unit-variance targets), prosody much
    below, and the InfoMax discriminators leave chance; the sweeps are voiced, so voicing is ~1 everywhere."""
    objective = build("pase")
    batch = sweeps(6, 1.0, tmp_path, narrow=True)
    targets, _ = objective.targets(batch.waveforms, batch.lengths, ["prosody", "lps"])
    voiced = targets["prosody"][..., -1]
    assert voiced.mean() > 0.9  # harmonic sweeps are voiced almost everywhere
    history = train(objective, batch, steps=60, lr=3e-3)
    for worker in ("fbank", "mfcc", "lps_long", "fbank_long", "mfcc_long"):
        assert last_mean(history, worker) < 0.9 * history[0][worker], worker
    assert last_mean(history, "prosody") < 0.3 * history[0]["prosody"]
    assert last_mean(history, "acc_lim") > 0.7 and last_mean(history, "acc_gim") > 0.7  # chance 0.5


def test_pase_warns_when_stalled():
    objective = build("pase", stalled_check_after=10)
    stalled = {"lps": 0.99, "fbank": 0.98, "mfcc": 0.97}
    assert objective.warnings(stalled) == []  # too early
    objective.on_update(10)
    (advice,) = objective.warnings(stalled)
    assert "stalled" in advice and "optim.lr" in advice
    assert objective.warnings({"lps": 0.4, "fbank": 0.3, "mfcc": 0.5}) == []


def test_pase_rejects_an_unknown_worker():
    with pytest.raises(ConfigError, match="objective.workers"):
        build("pase", workers=["lps", "gammatone"])


def test_multiformat_learns_to_match_formats(tmp_path):
    objective = build("multiformat")
    history = train(objective, sweeps(8, 1.0, tmp_path, narrow=True), steps=40, lr=3e-3)
    assert last_mean(history, "acc") > 3 / 8  # chance 1/8
    assert last_mean(history, "cross") < math.log(8) - 0.5


def test_multiformat_branches_load_as_upstreams(tmp_path):
    """The run's encoder is the waveform branch; ``:spectrogram`` loads the log-mel branch with its weights."""
    from audiossl.features.upstream import build_upstream

    objective = build("multiformat")
    checkpoint = tmp_path / "mf.pt"
    config = {"encoder": vars(objective.encoder.config) | {},
              "objective": {"spectrogram_encoder": vars(objective.spectrogram_encoder.config)}}
    torch.save({"model": objective.state_dict(), "config": config}, checkpoint)
    waveform = build_upstream(str(checkpoint))
    spectrogram = build_upstream(f"{checkpoint}:spectrogram")
    assert type(spectrogram.feature_encoder).__name__ == "SpectrogramFeatureEncoder"
    batch = sweeps(2, 0.5, tmp_path)
    objective.eval()
    with torch.no_grad():
        expected = objective.spectrogram_encoder(batch.waveforms, batch.lengths).features
        assert torch.equal(spectrogram(batch.waveforms, batch.lengths).features, expected)
        assert torch.equal(waveform(batch.waveforms, batch.lengths).features,
                           objective.encoder(batch.waveforms, batch.lengths).features)
    with pytest.raises(ValueError, match="no 'config.objective.other_encoder'"):
        build_upstream(f"{checkpoint}:other")


def test_multiformat_preset_composes_both_encoders():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("pretrain", overrides=["+experiment=multiformat_tiny"])
    spec = objective_spec("multiformat")
    config = to_config(spec.config_cls, cfg.objective, "objective")
    assert config.spectrogram_encoder.feature_encoder == "logmel"
    assert config.spectrogram_encoder.model_dim == cfg.encoder.model_dim  # same context network as the waveform's
    with pytest.raises(ConfigError, match="spectrogram_encoder.feature_encoder"):
        to_config(spec.config_cls, {**OmegaConf.to_container(cfg.objective),
                                    "spectrogram_encoder": {"feature_encoder": "conv"}}, "objective")


def test_a_mask_prob_written_as_the_papers_p_gets_a_warning(caplog):
    """``mask_prob`` is fairseq's share (0.65 at BASE); 0.065 (the paper's p) would mask a tenth as much."""
    with caplog.at_level("WARNING"):
        build("wav2vec2", mask_prob=0.065, mask_span=10)
    assert "mask_prob=0.65" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        build("wav2vec2", mask_prob=0.65, mask_span=10)
    assert "mask_prob" not in caplog.text
