"""Downstream heads and tasks on small real waveforms with a tiny real encoder (seconds, CPU)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile
import torch

from audiossl.audio.features import frame_mask
from audiossl.config import ConfigError
from audiossl.data.batch import AudioBatch
from audiossl.downstream.heads import FrameMasker, WeightedLayerSum, mean_pool
from audiossl.models.masking import random_span_mask
from audiossl.data.manifest import parse_alignment
from audiossl.downstream.base import IGNORE, MaskingConfig, TaskConfig
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.finetuned import TaskOutputs, build_task
from audiossl.downstream.frame_phones import FramePhoneTask, align_targets
from audiossl.downstream.predict import predict_all, score
from audiossl.downstream.speaker import SpeakerTask, speaker_holdout
from audiossl.features.frozen import FrameGrid
from audiossl.features.upstream import EncoderUpstream, UpstreamSpec
from audiossl.asr.vocab import Vocabulary
from audiossl.models.encoder import EncoderConfig, build_encoder

LETTERS = ["|", "A", "B", "E", "H", "L", "O"]


def tiny_encoder_config() -> EncoderConfig:
    """wav2vec 2.0 geometry (320x, 20 ms frames) at toy width: a real encoder that runs in milliseconds."""
    return EncoderConfig(
        name="test_tiny", conv_layers=[[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 2, 2],
                                       [16, 2, 2]],
        conv_norm="layer_norm", model_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=8,
        pos_conv_groups=4, layerdrop=0.0, dropout=0.1)


def tiny_upstream(seed: int = 0) -> EncoderUpstream:
    torch.manual_seed(seed)
    config = tiny_encoder_config()
    return EncoderUpstream(build_encoder(config), UpstreamSpec("encoder", "random"))


@pytest.fixture(scope="module")
def audio_batch(tmp_path_factory: pytest.TempPathFactory) -> AudioBatch:
    """Two short FLAC clips (a chirp and a vowel-like tone mix) written and read back with soundfile."""
    directory = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    clips = []
    for index, seconds in enumerate((0.8, 0.6)):
        t = np.arange(int(16_000 * seconds)) / 16_000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * index + 400 * t) * t) + 0.02 * rng.standard_normal(t.size)
        path = directory / f"{index}.flac"
        soundfile.write(path, wave.astype(np.float32), 16_000)
        clips.append(torch.from_numpy(soundfile.read(path, dtype="float32")[0]))
    lengths = torch.tensor([clip.numel() for clip in clips])
    waveforms = torch.zeros(2, int(lengths.max()))
    for row, clip in enumerate(clips):
        waveforms[row, : clip.numel()] = clip
    labels = {
        "ltr": ["H E L L O | A B E |", "A B L E |"],
        "wrd": ["HELLO ABE", "ABLE"],
        "phn": ["HH AH L OW", "EY B AH L"],
        "spk": ["11", "22"],
        "align": ["HH:0.00:0.10 AH:0.10:0.30 L:0.30:0.50 OW:0.50:0.80", "EY:0.00:0.20 B:0.20:0.30 AH:0.30:0.45 L:0.45:0.60"],
    }
    return AudioBatch(waveforms, lengths, ["11-1-0000", "22-1-0001"], labels)


def context_grads(task) -> list:
    return [p.grad for name, p in task.encoder.named_parameters() if not name.startswith("feature_encoder.")]


def feature_encoder_grads(task) -> list:
    return [p.grad for p in task.encoder.feature_encoder.parameters()]


def test_asr_ctc_forward_backward_trains_head_not_feature_encoder(audio_batch: AudioBatch) -> None:
    task = CTCTask(TaskConfig(name="asr", mode="finetune", masking=MaskingConfig(0.1, 2, 0.2, 4)),
                   tiny_upstream(), Vocabulary.from_symbols(LETTERS))
    task.train()
    output = task(audio_batch)
    assert torch.isfinite(output.loss) and output.loss.item() > 0
    output.loss.backward()
    assert task.head.proj.weight.grad is not None and task.head.proj.weight.grad.abs().sum() > 0
    assert all(grad is None for grad in feature_encoder_grads(task))
    assert any(grad is not None and grad.abs().sum() > 0 for grad in context_grads(task))


def test_context_frozen_until_n_updates_then_trained(audio_batch: AudioBatch) -> None:
    task = CTCTask(TaskConfig(name="asr", mode="finetune", freeze_context_updates=2), tiny_upstream(),
                   Vocabulary.from_symbols(LETTERS))
    task.train()
    for step in (1, 2):
        task.zero_grad(set_to_none=True)
        task(audio_batch).loss.backward()
        assert all(grad is None for grad in context_grads(task)), f"context trained before update {step}"
        assert not task.encoder.context.training, "a frozen context must not run dropout"
        logged = task.on_update(step)
    assert logged == {"context_trainable": 1.0}
    assert task.encoder.context.training
    task.zero_grad(set_to_none=True)
    task(audio_batch).loss.backward()
    assert any(grad is not None and grad.abs().sum() > 0 for grad in context_grads(task))
    assert all(grad is None for grad in feature_encoder_grads(task))
    assert task.on_update(3) == {}


def test_parameter_groups_never_hold_the_feature_encoder(audio_batch: AudioBatch) -> None:
    finetune = CTCTask(TaskConfig(name="asr", mode="finetune", freeze_context_updates=5), tiny_upstream(),
                       Vocabulary.from_symbols(LETTERS))
    grouped = {id(p) for group in finetune.parameter_groups(1e-3, 0.1, 0.01) for p in group["params"]}
    assert not grouped & {id(p) for p in finetune.encoder.feature_encoder.parameters()}
    assert {id(p) for p in finetune.encoder.context.parameters()} <= grouped
    probe = CTCTask(TaskConfig(name="asr", mode="probe"), tiny_upstream(), Vocabulary.from_symbols(LETTERS))
    grouped = {id(p) for group in probe.parameter_groups(1e-3, 0.1, 0.01) for p in group["params"]}
    assert grouped == {id(p) for p in probe.head.parameters()}


def test_train_feature_encoder_trains_the_whole_encoder_end_to_end(audio_batch: AudioBatch) -> None:
    """The supervised ceiling's setting: a random encoder trained on frame phones, conv stack included."""
    phones = ["AH", "B", "EY", "HH", "L", "OW"]
    task = FramePhoneTask(TaskConfig(name="phone_frames", mode="finetune", train_feature_encoder=True,
                                     freeze_context_updates=1), tiny_upstream(), phones)
    grouped = {id(p) for group in task.parameter_groups(1e-3, 1.0, 0.01) for p in group["params"]}
    assert {id(p) for p in task.parameters()} == grouped
    assert all(p.requires_grad for p in task.encoder.parameters()), "what thaws later must be registered now (DDP)"
    task.train()
    task(audio_batch).loss.backward()
    assert all(grad is None for grad in feature_encoder_grads(task) + context_grads(task)), "frozen for 1 update"
    task.on_update(1)
    task.zero_grad(set_to_none=True)
    task(audio_batch).loss.backward()
    assert all(grad is not None and grad.abs().sum() > 0 for grad in feature_encoder_grads(task))
    assert any(grad is not None and grad.abs().sum() > 0 for grad in context_grads(task))
    with pytest.raises(ConfigError, match="task.train_feature_encoder"):
        TaskConfig(name="phone_frames", mode="weighted", train_feature_encoder=True).validate()


def test_weighted_sum_weights_are_learned_and_upstream_stays_frozen(audio_batch: AudioBatch) -> None:
    task = CTCTask(TaskConfig(name="phoneme", mode="weighted", head="bilstm", head_hidden=16),
                   tiny_upstream(), Vocabulary.from_symbols(["AH", "B", "EY", "HH", "L", "OW"]))
    assert isinstance(task.reader, WeightedLayerSum) and task.reader.logits.numel() == 3
    optimizer = torch.optim.SGD([p for group in task.parameter_groups(1.0, 1.0, 0.0) for p in group["params"]], lr=1.0)
    task.train()
    task(audio_batch).loss.backward()
    assert task.reader.logits.grad is not None and task.reader.logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in task.encoder.parameters())
    before = task.reader.layer_weights()
    optimizer.step()
    assert task.reader.layer_weights() != before
    assert sum(task.reader.layer_weights()) == pytest.approx(1.0)


def test_speaker_task_pools_and_classifies(audio_batch: AudioBatch) -> None:
    task = SpeakerTask(TaskConfig(name="speaker", mode="probe"), tiny_upstream(), ["11", "22"])
    task.train()
    output = task(audio_batch)
    output.loss.backward()
    assert 0.0 <= output.metrics["acc"] <= 1.0
    assert task.head.proj.weight.grad.abs().sum() > 0
    predictions = predict_all(task, [audio_batch])["argmax"]
    assert [p.reference for p in predictions] == ["11", "22"]
    assert score("speaker", predictions)["total"] == 2


def test_frame_phone_probe_uses_alignment_at_encoder_rate(audio_batch: AudioBatch) -> None:
    phones = ["AH", "B", "EY", "HH", "L", "OW"]
    task = FramePhoneTask(TaskConfig(name="phone_frames", mode="probe"), tiny_upstream(), phones)
    assert task.encoder.frame_stride == 320
    task.train()
    output = task(audio_batch)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    logits, targets = task.frame_logits(audio_batch)
    # 0.8 s at 20 ms frames with a 400-sample receptive field: floor((12800 - 400) / 320) + 1 = 39 frames.
    assert (targets[0] != IGNORE).sum() == 39
    assert targets[0, 0] == phones.index("HH") and targets[0, 4] == phones.index("HH")
    assert targets[0, 5] == phones.index("AH")
    accuracy = score("phone_frames", predict_all(task, [audio_batch])["argmax"])
    assert accuracy["total"] == int((targets != IGNORE).sum())


def test_align_targets_read_each_frames_receptive_field_centre() -> None:
    line = "SIL:0.00:0.10 B:0.10:0.30"
    index = {"SIL": 0, "B": 1}
    # wav2vec 2.0 stack: frame t covers [320 t, 320 t + 400) samples, centre (320 t + 200) / 16 kHz.
    at_20ms = align_targets([line], ["u"], torch.tensor([20]), FrameGrid(320, 200, 16_000), index)[0]
    assert at_20ms[:5].tolist() == [0] * 5 and at_20ms[5:15].tolist() == [1] * 10
    assert at_20ms[15:].tolist() == [IGNORE] * 5  # past the last segment: not scored
    # CPC stack: centre (160 t + 232.5) / 16 kHz = 1.45 frames later than (t + 0.5) * 10 ms would put it.
    at_10ms = align_targets([line], ["u"], torch.tensor([30]), FrameGrid(160, 232.5, 16_000), index)[0]
    assert at_10ms[:9].tolist() == [0] * 9 and at_10ms[9:29].tolist() == [1] * 20
    assert at_10ms[29:].tolist() == [IGNORE]


def test_upstreams_know_their_frame_grid() -> None:
    from audiossl.features.upstream import FrontEndUpstream

    assert FrameGrid.of(tiny_upstream(), 16_000) == FrameGrid(320, 200.0, 16_000)
    assert FrameGrid.of(FrontEndUpstream("mfcc"), 16_000) == FrameGrid(160, 200.0, 16_000)  # 25 ms windows


def test_finetuning_time_masks_use_the_pretrained_mask_embedding() -> None:
    upstream = tiny_upstream()
    with torch.no_grad():
        upstream.mask_embedding.fill_(7.0)
    masker = FrameMasker(time_prob=0.5, time_span=2, channel_prob=0.0, channel_span=4).train()
    features = torch.randn(2, 40, 32)
    masked = masker(features, upstream.mask_embedding)
    hidden = (masked != features).any(-1)
    assert hidden.any() and (masked[hidden] == 7.0).all()
    zeroed = masker(features)  # a front-end has no embedding: masked frames become zeros
    assert ((zeroed == 0).all(-1) | (zeroed == features).all(-1)).all()


def test_trainer_seed_decides_the_head_and_the_random_encoder(tmp_path) -> None:
    from audiossl.downstream.finetune import FinetuneConfig, make_upstream
    from audiossl.training.checkpoint import seed_everything
    from audiossl.training.loop import TrainerConfig

    def initial(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = FinetuneConfig(init="random", encoder=tiny_encoder_config(), trainer=TrainerConfig(seed=seed))
        seed_everything(seed)  # what audiossl-finetune does with trainer.seed before building
        upstream = make_upstream(cfg)
        task = build_task(TaskConfig(name="speaker", mode="probe"), upstream, TaskOutputs(["a", "b"]))
        return task.head.proj.weight.detach().clone(), upstream.feature_projection.weight.detach().clone()

    first, again, other = initial(1), initial(1), initial(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(not torch.equal(a, b) for a, b in zip(first, other))


def test_alignment_errors_name_the_utterance() -> None:
    with pytest.raises(ValueError, match="utt-7"):
        parse_alignment("AH:0.1", "utt-7")
    with pytest.raises(ValueError, match="utt-8.*ZZ"):
        align_targets(["ZZ:0.0:0.1"], ["utt-8"], torch.tensor([5]), FrameGrid(320, 200, 16_000), {"AH": 0})


def test_speaker_holdout_is_deterministic_disjoint_and_covers_speakers() -> None:
    ids = [f"{spk}-1-{n:04d}" for spk in (1, 2, 3) for n in range(12)]
    speakers = [utt.split("-")[0] for utt in ids]
    train, dev, test = speaker_holdout(ids, speakers, 0.1)
    assert not (set(train) & set(dev)) and not (set(train) & set(test)) and not (set(dev) & set(test))
    assert sorted(train + dev + test) == list(range(len(ids)))
    assert {speakers[i] for i in test} == {"1", "2", "3"} == {speakers[i] for i in train}
    order = list(range(len(ids)))
    random.Random(3).shuffle(order)
    shuffled = speaker_holdout([ids[i] for i in order], [speakers[i] for i in order], 0.1)
    assert sorted(ids[order[i]] for i in shuffled[2]) == sorted(ids[i] for i in test)


def test_masker_masks_in_training_only() -> None:
    features = torch.ones(4, 50, 32)
    masker = FrameMasker(time_prob=0.1, time_span=5, channel_prob=0.1, channel_span=4)
    masker.train()
    torch.manual_seed(0)
    masked = masker(features)
    assert 0.1 < (masked == 0).float().mean() < 0.9
    masker.eval()
    assert torch.equal(masker(features), features)
    spans = random_span_mask((1, 100), 0.5, 10, torch.Generator().manual_seed(1))
    assert spans.sum() >= 10  # a started span covers its full length


def test_masked_mean_ignores_padding() -> None:
    features = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(features, torch.tensor([2])).item() == pytest.approx(2.0)


def test_build_task_and_greedy_predictions_score_wer(audio_batch: AudioBatch) -> None:
    task = build_task(TaskConfig(name="asr", mode="probe"), tiny_upstream(), TaskOutputs(LETTERS))
    predictions = predict_all(task, [audio_batch])["greedy"]
    assert [p.reference for p in predictions] == ["HELLO ABE", "ABLE"]
    result = score("asr", predictions)
    assert result["ref_words"] == 3 and result["wer"] >= 0


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="task.mode"):
        TaskConfig(mode="frozen").validate()
    with pytest.raises(ConfigError, match="task.head"):
        TaskConfig(mode="probe", head="bilstm").validate()


def test_task_checkpoint_keys_are_the_pretraining_encoder_keys() -> None:
    """A fine-tuned task's ``encoder.*`` entries load into a bare Encoder: fine-tuned models can seed new runs."""
    from audiossl.training.checkpoint import encoder_state_dict

    task = CTCTask(TaskConfig(name="asr"), tiny_upstream(), Vocabulary.from_symbols(LETTERS))
    encoder = build_encoder(tiny_encoder_config())
    encoder.load_state_dict(encoder_state_dict(task.state_dict()))  # strict: same keys, same shapes
    assert torch.equal(encoder.feature_projection.weight, task.encoder.feature_projection.weight)


@pytest.mark.parametrize("kind, dim", [("fbank", 80), ("mfcc", 39)])
def test_front_end_baselines_stand_in_for_an_encoder(audio_batch: AudioBatch, kind: str, dim: int) -> None:
    from audiossl.features.upstream import build_upstream, rebuild_upstream

    upstream = build_upstream(kind, cmvn=False)
    output = upstream(audio_batch.waveforms, audio_batch.lengths)
    assert upstream.frame_stride == 160 and upstream.dim == dim and upstream.num_layers == 1
    # 25 ms windows every 10 ms over 0.8 s and 0.6 s: 78 and 58 frames.
    assert output.lengths.tolist() == [78, 58] and output.features.shape[-1] == dim
    rebuilt = rebuild_upstream(upstream.spec)
    assert torch.allclose(rebuilt(audio_batch.waveforms, audio_batch.lengths).features, output.features)
    task = SpeakerTask(TaskConfig(name="speaker", mode="probe"), upstream, ["11", "22"])
    task(audio_batch).loss.backward()
    assert task.head.proj.weight.grad.abs().sum() > 0


def test_fused_spectrum_is_appended_to_every_layer_and_survives_a_rebuild(audio_batch: AudioBatch) -> None:
    """``fuse=fbank``: each hidden state carries the encoder's features and, after them, the CMVN'd fbank
    frames of the same time (two 10 ms frames side by side for this 20 ms encoder); the weighted CTC head
    trains on the wider input and the saved spec rebuilds it."""
    from audiossl.data.pipeline import DataConfig
    from audiossl.downstream.finetune import FinetuneConfig
    from audiossl.features.upstream import FrontEndUpstream, random_upstream, rebuild_upstream

    plain, fused = random_upstream(tiny_encoder_config(), 0), random_upstream(tiny_encoder_config(), 0, "fbank")
    assert fused.dim == plain.dim + 2 * 80 and fused.num_layers == plain.num_layers
    plain.eval(), fused.eval()
    with torch.no_grad():
        base, out = plain(audio_batch.waveforms, audio_batch.lengths), fused(audio_batch.waveforms, audio_batch.lengths)
        fbank = FrontEndUpstream("fbank")(audio_batch.waveforms, audio_batch.lengths)
    frames = out.features.shape[1]
    assert frames == min(base.features.shape[1], fbank.features.shape[1] // 2)
    assert out.lengths.tolist() == torch.minimum(base.lengths, fbank.lengths // 2).tolist()
    for layer, base_layer in zip(out.hidden_states, base.hidden_states):
        assert torch.equal(layer[..., :plain.dim], base_layer[:, :frames])
        assert torch.equal(layer[:, 3, plain.dim:], fbank.features[:, 6:8].flatten(1))  # frame 3 = 60-80 ms
    task = CTCTask(TaskConfig(name="asr", mode="weighted"), fused, Vocabulary.from_symbols(LETTERS))
    task(audio_batch).loss.backward()
    assert task.reader.logits.grad is not None and task.reader.logits.grad.abs().sum() > 0
    rebuilt = rebuild_upstream(fused.spec)
    rebuilt.load_state_dict(fused.state_dict())
    rebuilt.eval(), fused.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(audio_batch.waveforms, audio_batch.lengths).features, out.features)
    with pytest.raises(ConfigError, match="'fuse'"):
        FinetuneConfig(init="fbank", fuse="fbank", task=TaskConfig(mode="weighted"), data=DataConfig(crop=False)).validate()
    with pytest.raises(ConfigError, match="'fuse'"):
        FinetuneConfig(init="random", fuse="spectrogram", data=DataConfig(crop=False)).validate()


def test_unknown_init_is_a_clear_error() -> None:
    from audiossl.features.upstream import build_upstream

    with pytest.raises(FileNotFoundError, match="no/such.pt"):
        build_upstream("no/such.pt")


def test_freezing_state_comes_back_with_a_checkpoint(audio_batch: AudioBatch) -> None:
    """A run resumed past ``freeze_context_updates`` trains the context network from its first batch."""
    cfg = TaskConfig(name="asr", mode="finetune", freeze_context_updates=2)
    trained = CTCTask(cfg, tiny_upstream(), Vocabulary.from_symbols(LETTERS))
    trained.on_update(3)
    resumed = CTCTask(cfg, tiny_upstream(seed=1), Vocabulary.from_symbols(LETTERS))
    resumed.load_state_dict(trained.state_dict())
    resumed.train()
    resumed(audio_batch).loss.backward()
    assert any(grad is not None for grad in context_grads(resumed))


def test_stack_frames_puts_neighbours_side_by_side_and_zeroes_padding() -> None:
    from audiossl.downstream.heads import stack_frames

    features = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3) + 1
    stacked, lengths = stack_frames(features, torch.tensor([5, 2]), 2)
    assert stacked.shape == (2, 3, 6) and lengths.tolist() == [3, 1]
    assert torch.equal(stacked[0, 1], torch.cat([features[0, 2], features[0, 3]]))
    assert torch.equal(stacked[0, 2, 3:], torch.zeros(3))  # the odd last frame is paired with zeros
    assert torch.equal(stacked[1, 0], torch.cat([features[1, 0], features[1, 1]]))
    assert not stacked[1, 1:].any()  # the second item's padding frames were zeroed, not stacked in


def test_frame_stack_halves_ctc_frames_and_moves_the_output_grid(audio_batch: AudioBatch) -> None:
    vocab = Vocabulary.from_symbols(LETTERS)
    plain = CTCTask(TaskConfig(name="asr", mode="weighted", head="bilstm", head_hidden=8), tiny_upstream(), vocab)
    stacked = CTCTask(TaskConfig(name="asr", mode="weighted", head="bilstm", head_hidden=8, frame_stack=2),
                      tiny_upstream(), vocab)
    _, frames = plain.eval().log_probs(audio_batch)
    log_probs, half = stacked.eval().log_probs(audio_batch)
    assert half.tolist() == ((frames + 1) // 2).tolist() and log_probs.shape[1] == int(half.max())
    assert stacked.head.forward_layers[0].input_size == 2 * plain.head.forward_layers[0].input_size
    fine, coarse = plain.output_grid(16_000), stacked.output_grid(16_000)
    assert coarse.stride == 2 * fine.stride
    assert coarse.centres(2)[0] == pytest.approx(fine.centres(2).mean().item())  # between the two frames it holds
    stacked.train()(audio_batch).loss.backward()  # and it trains
    with pytest.raises(Exception, match="task.frame_stack"):
        TaskConfig(name="speaker", frame_stack=2).validate()


def test_bilstm_head_matches_a_packed_bidirectional_lstm_and_reads_its_weights() -> None:
    """The head runs each direction dense (the backward one on items reversed within their lengths); a packed
    ``nn.LSTM(bidirectional=True)`` with the same weights gives the same frames, padding included as zeros
    before the output layer, and heads saved in that older layout load unchanged."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from audiossl.downstream.heads import BiLSTMHead

    torch.manual_seed(0)
    old = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True)
    proj = torch.nn.Linear(10, 4)
    state = {f"lstm.{k}": v for k, v in old.state_dict().items()} | {f"proj.{k}": v for k, v in proj.state_dict().items()}
    head = BiLSTMHead(6, 4, hidden=5, layers=2, dropout=0.0)
    head.load_state_dict(state)
    features, lengths = torch.randn(3, 7, 6), torch.tensor([7, 4, 1])
    packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(old(packed)[0], batch_first=True, total_length=7)
    got = head(features, lengths)
    valid = frame_mask(lengths, 7)
    assert torch.allclose(got[valid], proj(expected)[valid], atol=1e-5)


def test_cached_features_give_the_same_outputs_and_skip_the_upstream(audio_batch: AudioBatch) -> None:
    """Training batches read the cache after an utterance's first pass; evaluation always runs the upstream."""
    vocab = Vocabulary.from_symbols(LETTERS)
    upstream = tiny_upstream()
    cfg = TaskConfig(name="asr", mode="weighted", head="bilstm", head_hidden=8, frame_stack=2, dropout=0.0)
    plain = CTCTask(cfg, upstream, vocab).train()
    cached = CTCTask(TaskConfig(**{**cfg.__dict__, "cache_features": True}), upstream, vocab).train()
    cached.load_state_dict(plain.state_dict())
    calls = []
    upstream.register_forward_hook(lambda *_: calls.append(1))
    expected, lengths = plain.log_probs(audio_batch)
    for _ in range(2):
        got, got_lengths = cached.log_probs(audio_batch)
        valid = frame_mask(got_lengths, got.shape[1])
        assert torch.equal(got_lengths, lengths) and torch.allclose(got[valid], expected[valid], atol=1e-5)
    assert len(calls) == 2  # the plain task once, the cached one only on its first pass
    cached(audio_batch).loss.backward()  # the head learns from cached features
    assert cached.head.proj.weight.grad is not None
    cached.eval().log_probs(audio_batch)
    assert len(calls) == 3  # evaluation ran the upstream
    with pytest.raises(Exception, match="task.cache_features"):
        TaskConfig(name="asr", mode="finetune", cache_features=True).validate()


def test_utterance_norm_gives_each_utterance_zero_mean_unit_variance(audio_batch: AudioBatch) -> None:
    cfg = TaskConfig(name="asr", mode="weighted", utterance_norm=True)
    task = CTCTask(cfg, tiny_upstream(), Vocabulary.from_symbols(LETTERS)).eval()
    features, lengths = task.represent(audio_batch)
    for row, length in enumerate(lengths.tolist()):
        valid = features[row, :length]
        assert torch.allclose(valid.mean(0), torch.zeros(valid.shape[1]), atol=1e-4)
        assert torch.allclose(valid.var(0, unbiased=False), torch.ones(valid.shape[1]), atol=1e-2)
        assert not features[row, length:].any()
