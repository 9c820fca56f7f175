"""``audiossl-transcribe``, ``audiossl-extract``, ``audiossl-export`` and peer checkpoints in the CLIs,
on a tone corpus of real FLAC files with an HF ``Wav2Vec2ForCTC`` written by transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from _tone_corpus import LETTERS, run_cli, write_tone_corpus

SPLITS = {"train_10min": 6, "dev_clean": 3, "test_clean": 3}
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS]


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(manifest dir, HF model dir)``: a GroupNorm, post-LN wav2vec 2.0 at 320x with random weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    root = tmp_path_factory.mktemp("corpus")
    manifests = write_tone_corpus(root, SPLITS)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 4, conv_kernel=(10, 3, 3, 2), conv_stride=(5, 4, 4, 4),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, vocab_size=len(TOKENS))
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(root / "hf")
    (root / "hf" / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(TOKENS)}))
    Wav2Vec2CTCTokenizer(str(root / "hf" / "vocab.json")).save_pretrained(root / "hf")
    return manifests, root / "hf"


def test_ctc_alignment_places_words_where_their_letters_peak() -> None:
    from audiossl.asr.align import ctc_align, word_timings
    from audiossl.features.frozen import FrameGrid
    from audiossl.asr.vocab import Vocabulary

    vocab = Vocabulary.from_symbols(["|", "A", "B", "H", "L"])
    peaks = {2: "H", 3: "H", 4: "A", 6: "|", 8: "B", 9: "A", 10: "L", 11: "L", 12: "<blank>", 13: "L"}
    log_probs = torch.full((16, len(vocab)), -8.0)
    for frame in range(16):
        log_probs[frame, vocab.symbols.index(peaks.get(frame, "<blank>"))] = -0.01
    assert ctc_align(log_probs.numpy(), [vocab.index(s) for s in "HA"], 0) == [(2, 4), (4, 5)]
    grid = FrameGrid(stride=320, first_centre=200.0, sample_rate=16_000)  # frame t centred at 20 t + 12.5 ms
    words = word_timings("HA BALL", log_probs, vocab, grid)
    assert [w.word for w in words] == ["HA", "BALL"]  # H at 2-3, A at 4; B at 8 ... L at 13
    assert [t for w in words for t in (w.start, w.end)] == pytest.approx([0.0425, 0.1025, 0.1625, 0.2825], abs=1e-3)
    assert word_timings("HA", log_probs[:1], vocab, grid) is None  # two letters cannot fit one frame


def test_transcribe_cli_reads_files_directories_and_manifests_and_names_bad_audio(
        corpus: tuple[Path, Path], tmp_path: Path) -> None:
    manifests, model = corpus
    audio = manifests.parent / "audio"
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"not audio at all")
    result = run_cli("transcribe", f"model={model}", f"out_dir={tmp_path / 'out'}",
                     f"inputs=[{audio / 'test_clean'},{manifests / 'dev_clean.tsv'},{garbage},{tmp_path / 'no.wav'}]")
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads((tmp_path / "out" / "transcripts.json").read_text())
    assert len(document["transcripts"]) == SPLITS["test_clean"] + SPLITS["dev_clean"]
    assert {s["fault"] for s in document["skipped"]} == {"unreadable", "missing"}
    assert f"skipped {garbage}: unreadable" in result.stderr
    assert 0 < document["real_time_factor"] < 1, document["real_time_factor"]  # faster than real time
    for transcript in document["transcripts"]:
        times = [t for word in transcript["words"] or [] for t in (word["start"], word["end"])]
        assert times == sorted(times) and all(0 <= t <= transcript["seconds"] + 0.02 for t in times)
        assert [w["word"] for w in transcript["words"] or []] == transcript["text"].split()
    lines = (tmp_path / "out" / "transcripts.txt").read_text().splitlines()
    assert len(lines) == len(document["transcripts"]) and "real-time factor" in result.stdout


def test_extract_cli_writes_exact_per_layer_features_and_resumes(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """GroupNorm encoders are encoded one utterance at a time, so stored frames equal the utterance alone."""
    from audiossl.audio.io import AudioPolicy, read_audio
    from audiossl.data.pipeline import DataConfig
    from audiossl.features.store import extract_to_disk, open_features
    from audiossl.features.upstream import build_upstream

    manifests, model = corpus
    out = tmp_path / "features"
    overrides = [f"upstream={model}", f"data.manifest_dir={manifests}", "split=dev_clean", "format=memmap",
                 "layers=[0,-1]", f"out_dir={out}"]
    result = run_cli("extract", *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{SPLITS['dev_clean']} utterances written" in result.stdout
    features, index, meta = open_features(out / "dev_clean")
    assert meta["layers"] == [0, 2] and features.shape[1:] == (2, 32) and len(index) == SPLITS["dev_clean"]
    upstream = build_upstream(str(model)).eval()
    utterance, first, frames = index[0]
    wave = read_audio(str(manifests.parent / "audio" / utterance), AudioPolicy()).waveform
    with torch.no_grad():
        expected = upstream(wave[None], torch.tensor([len(wave)])).hidden_states[-1][0]
    assert np.abs(features[first: first + frames, 1].astype(np.float32) - expected.numpy()).max() < 1e-2  # fp16

    # a killed run: the last utterance's rows were written, its index line was not, plus half a row of junk
    lines = (out / "dev_clean" / "index.tsv").read_text().splitlines()
    (out / "dev_clean" / "index.tsv").write_text("\n".join(lines[:-1]) + "\n")
    with open(out / "dev_clean" / "features.bin", "ab") as handle:
        handle.write(b"\0" * 70)
    data = DataConfig(manifest_dir=str(manifests), crop=False, min_sample_size=0)
    summary = extract_to_disk(upstream, data, "dev_clean", out, [0, -1], "memmap")
    assert (summary.written, summary.already_done) == (1, SPLITS["dev_clean"] - 1)
    resumed, index_after, _ = open_features(out / "dev_clean")
    assert np.array_equal(np.asarray(resumed), np.asarray(features)) and index_after == index
    with pytest.raises(ValueError, match="other settings"):
        extract_to_disk(upstream, data, "dev_clean", out, [1], "memmap")

    mfcc = extract_to_disk(build_upstream("mfcc"), data, "dev_clean", tmp_path / "mfcc", None, "npy")
    stored = np.load(tmp_path / "mfcc" / "dev_clean" / Path(index[0][0]).with_suffix(".npy"))
    assert mfcc.written == SPLITS["dev_clean"] and stored.shape[0] == 1 and stored.dtype == np.float16


def test_finetune_evaluate_and_export_from_a_peer_checkpoint(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """``init=<HF dir>`` fine-tunes its encoder; the peer's own CTC head is scored directly by evaluate; the
    fine-tuned run exports back to HF with identical log-probabilities."""
    from transformers import Wav2Vec2ForCTC

    from audiossl.audio.io import AudioPolicy, read_audio
    from audiossl.cli.evaluate import EvaluateConfig, evaluate
    from audiossl.data.batch import AudioBatch
    from audiossl.downstream.peer_ctc import export_model
    from audiossl.downstream.finetuned import load_finetuned

    manifests, model = corpus
    run_dir = tmp_path / "asr"
    result = run_cli("finetune", "task=asr", f"init={model}", f"data.manifest_dir={manifests}", f"run_dir={run_dir}",
                     "trainer.max_steps=3", "trainer.validate_every=3", "trainer.save_every=3",
                     "trainer.progress=false", "data.num_parallel_calls=1")
    assert result.returncode == 0, result.stderr[-2000:]
    task, config, _ = load_finetuned(run_dir)
    assert config["downstream"]["upstream"]["source"] == str(model) and config["encoder"]["name"] == "hf-wav2vec2"

    _, results = evaluate(EvaluateConfig(runs=[str(model), str(run_dir)], names=["hf", "ours"], splits=["test_clean"],
                                         manifest_dir=str(manifests), decoders=["greedy"],
                                         out_dir=str(tmp_path / "report")))
    assert [r.system for r in results] == ["hf", "ours"]
    assert all(len(r.utterances) == SPLITS["test_clean"] for r in results)

    export_model(run_dir, tmp_path / "exported", "hf")
    hf = Wav2Vec2ForCTC.from_pretrained(tmp_path / "exported").eval()
    wave = read_audio(str(next((manifests.parent / "audio" / "test_clean").rglob("*.flac"))), AudioPolicy()).waveform
    with torch.no_grad():
        ours, _ = task.log_probs(AudioBatch(wave[None], torch.tensor([len(wave)]), ["x"]))
        theirs = hf(wave[None]).logits.log_softmax(-1)
    assert float((ours - theirs).abs().max()) < 1e-4
    assert os.path.isfile(tmp_path / "exported" / "vocab.json")


def test_long_files_are_encoded_in_windows_on_the_whole_files_frame_grid() -> None:
    """Windows start on the CTC output grid and drop their context frames, so they add up to the whole file's
    frames; with context covering the file, every window sees all of it and the log-probs are the same."""
    from audiossl.asr.vocab import Vocabulary
    from audiossl.downstream.base import TaskConfig
    from audiossl.downstream.ctc import CTCTask
    from audiossl.downstream.transcribe import Chunking, file_log_probs
    from audiossl.features.upstream import EncoderUpstream, UpstreamSpec
    from audiossl.models.encoder import EncoderConfig, build_encoder

    config = EncoderConfig(name="test_tiny", conv_layers=[[16, 10, 5], [16, 8, 4], [16, 4, 2], [16, 4, 2], [16, 4, 2]],
                           conv_norm="layer_norm", model_dim=32, num_layers=2, num_heads=2, ffn_dim=64,
                           pos_conv_kernel=8, pos_conv_groups=4)
    upstream = EncoderUpstream(build_encoder(config), UpstreamSpec("encoder", "random"))
    task = CTCTask(TaskConfig(name="asr", mode="weighted", head="bilstm", frame_stack=2, utterance_norm=True),
                   upstream, Vocabulary.from_symbols(["|", *LETTERS])).eval()
    waveform = 0.1 * torch.randn(16_000 * 5 + 123)
    whole = file_log_probs(task, waveform, 16_000, Chunking(seconds=0))
    assert whole.shape[0] == (((len(waveform) - 465) // 160 + 1) + 1) // 2  # 10 ms frames, stacked by 2
    seeing_all = file_log_probs(task, waveform, 16_000, Chunking(seconds=1.0, context=6.0))
    torch.testing.assert_close(seeing_all, whole, atol=1e-4, rtol=1e-4)
    windowed = file_log_probs(task, waveform, 16_000, Chunking(seconds=1.0, context=0.25))
    assert windowed.shape == whole.shape and not torch.allclose(windowed, whole)
