"""``audiossl-finetune`` then ``audiossl-evaluate`` end to end on a tiny tone corpus (real FLAC files).

Each letter is a tone, each word a run of tones, so labels and alignments are exact. The test checks the
contract users rely on: a checkpoint comes out, the report's WER numbers are what an independent
recomputation (greedy decoding of the saved model, jiwer on the raw strings) gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile
import torch

from audiossl.data.manifest import ManifestRow, count_symbols, write_dict, write_manifest
from audiossl.downstream.vocab import words_to_letters

SAMPLE_RATE = 16_000
LETTERS = "ABEHLO"
WORDS = ["HA", "BE", "HOLE", "ABLE", "BALL", "HELLO", "LOBE", "OBOE"]
LETTER_SECONDS, GAP_SECONDS = 0.08, 0.06
SPLITS = {"train_10min": 12, "dev_clean": 4, "test_clean": 4, "test_other": 3}
TINY_ENCODER = [
    "encoder.conv_layers=[[16,10,5],[16,3,2],[16,3,2],[16,3,2],[16,3,2],[16,2,2],[16,2,2]]",
    "encoder.model_dim=32", "encoder.num_layers=2", "encoder.num_heads=2", "encoder.ffn_dim=64",
    "encoder.pos_conv_kernel=8", "encoder.pos_conv_groups=4",
]


def tone_utterance(words: list[str], pitch: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Waveform and ``.align`` line: each letter a tone (its own frequency), silence between words."""
    pieces, segments, time = [], [], 0.0
    for word in words:
        for letter in word:
            t = np.arange(int(LETTER_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
            pieces.append(0.4 * np.sin(2 * np.pi * pitch * (300 + 170 * LETTERS.index(letter)) * t))
            segments.append(f"{letter}:{time:.3f}:{time + LETTER_SECONDS:.3f}")
            time += LETTER_SECONDS
        pieces.append(np.zeros(int(GAP_SECONDS * SAMPLE_RATE)))
        segments.append(f"SIL:{time:.3f}:{time + GAP_SECONDS:.3f}")
        time += GAP_SECONDS
    wave = np.concatenate(pieces) + 0.01 * rng.standard_normal(sum(p.size for p in pieces))
    return wave.astype(np.float32), " ".join(segments)


def write_tone_corpus(root: Path) -> Path:
    """LibriSpeech-named FLACs and fairseq manifests with every label kind; returns the manifest dir."""
    rng = np.random.default_rng(0)
    manifests = root / "manifests"
    for split, count in SPLITS.items():
        rows, labels = [], {kind: [] for kind in ("wrd", "ltr", "phn", "spk", "align")}
        for index in range(count):
            speaker = ("100", "200")[index % 2]
            words = [WORDS[i] for i in rng.choice(len(WORDS), size=2 + index % 2)]
            wave, alignment = tone_utterance(words, 1.0 if speaker == "100" else 1.1, rng)
            relpath = f"{split}/{speaker}/1/{speaker}-1-{index:04d}.flac"
            (root / "audio" / relpath).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / "audio" / relpath, wave, SAMPLE_RATE)
            rows.append(ManifestRow(relpath, wave.size))
            text = " ".join(words)
            for kind, line in (("wrd", text), ("ltr", words_to_letters(text)), ("phn", " ".join(text.replace(" ", ""))),
                               ("spk", speaker), ("align", alignment)):
                labels[kind].append(line)
        write_manifest(manifests, split, root / "audio", rows, labels)
        if split == "train_10min":
            write_dict(manifests / "dict.ltr.txt", count_symbols(labels["ltr"]), extra_symbols=[*LETTERS, "|"])
            write_dict(manifests / "dict.phn.txt", count_symbols(labels["phn"]), extra_symbols=LETTERS)
    return manifests


def run_cli(name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", f"from audiossl.cli.{name} import main; main()", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="module")
def finetuned(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "asr"
    done = run_cli("finetune", "task=asr", "init=random", f"run_dir={run_dir}", f"data.manifest_dir={corpus}",
                   "trainer.max_steps=12", "trainer.validate_every=6", "trainer.save_every=6", "trainer.log_every=3",
                   "trainer.progress=false", "task.freeze_context_updates=6", "optim.lr=5e-3",
                   "data.max_batch_samples=64000", "data.max_sample_size=64000", *TINY_ENCODER)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_finetune_writes_checkpoints_config_and_dev_wer(finetuned: Path) -> None:
    assert (finetuned / "checkpoints" / "best.pt").is_file()
    checkpoint = torch.load(finetuned / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["config"]["downstream"]["upstream"]["kind"] == "encoder"
    assert checkpoint["config"]["encoder"]["model_dim"] == 32  # load_pretrained_encoder can start from it
    records = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in valid] == [6, 12] and all("wer" in r["metrics"] for r in valid)
    # The context network thawed at update 6: the schedule is logged and saved in the model state.
    assert int(checkpoint["model"]["updates"]) in (6, 12)


def test_evaluate_report_numbers_match_a_recomputation(finetuned: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli("evaluate", f"runs=[{finetuned},{finetuned}]", "names=[first,second]", "decoders=[greedy,lm]",
                   f"out_dir={out}", "lm.text_split=train_10min", "lm.order=2", "lm.beam_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file() and "report:" in done.stdout
    report = json.loads((out / "report.json").read_text())
    cells = {(r["system"], r["split"], r["decoder"]): r for r in report["results"]}
    assert set(cells) == {(s, split, d) for s in ("first", "second") for split in ("test_clean", "test_other")
                          for d in ("greedy", "lm")}
    results = json.loads((out / "results.json").read_text())
    greedy_clean = next(r for r in results if (r["system"], r["split"], r["decoder"]) == ("first", "test_clean", "greedy"))
    refs = [u["reference"] for u in greedy_clean["utterances"]]
    hyps = [u["hypothesis"] for u in greedy_clean["utterances"]]
    assert cells["first", "test_clean", "greedy"]["metrics"]["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    by_id = {u["id"]: u["hypothesis"] for u in greedy_clean["utterances"]}  # the pipeline batches by length
    assert by_id == greedy_hypotheses(finetuned, corpus, "test_clean")
    assert cells["first", "test_clean", "greedy"]["metrics"] == cells["second", "test_clean", "greedy"]["metrics"]
    assert any(p.endswith(".png") for p in report["plots"]["per_speaker"].values() if p)


def greedy_hypotheses(run_dir: Path, manifests: Path, split: str) -> dict[str, str]:
    """Decode ``split`` again, independently of the CLI: load the model, read each file, argmax, collapse."""
    from audiossl.downstream.tasks import load_finetuned

    task, _, _ = load_finetuned(run_dir)
    lines = (manifests / f"{split}.tsv").read_text().splitlines()
    hypotheses = {}
    for line in lines[1:]:
        wave, _ = soundfile.read(Path(lines[0]) / line.split("\t")[0], dtype="float32")
        with torch.no_grad():
            output = task.encoder(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
            best = task.head(output.features, output.lengths).argmax(-1)[0].tolist()
        collapsed = [b for i, b in enumerate(best) if b != 0 and (i == 0 or best[i - 1] != b)]
        text = "".join(" " if task.vocab.symbols[b] == "|" else task.vocab.symbols[b] for b in collapsed)
        hypotheses[line.split("\t")[0]] = " ".join(text.split())
    return hypotheses


def test_bad_init_names_the_key(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    from audiossl.cli.finetune import main

    monkeypatch.setattr(sys, "argv", ["audiossl-finetune", "init=does/not/exist.pt", f"run_dir={tmp_path / 'x'}",
                                      f"data.manifest_dir={corpus}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "'init'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing was started
