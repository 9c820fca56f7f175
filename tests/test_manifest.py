"""Manifests from a tiny LibriSpeech-layout tree built on the fly: fixed formats byte for byte, rejects,
errors naming file and line, few-label subsets, valid hold-out, and reading fairseq-written manifests."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.config import ConfigError
from audiossl.data.lexicon import ARPABET_39
from audiossl.data.librispeech import (
    ManifestConfig,
    Split,
    Utterance,
    build_manifests,
    few_label_splits,
    hold_out_valid,
    speaker_round_robin,
)
from audiossl.data.manifest import AudioInfo, Manifest, ManifestError, ManifestRow, write_dict, write_manifest

RATE = 16_000
# subset -> speaker -> chapter -> [(utterance number, words, seconds)]
CORPUS = {
    "train-clean": {
        "19": {"198": [(0, "HELLO WORLD", 1.0), (1, "THE CAT", 0.5), (2, "DON'T GO", 0.75)]},
        "26": {"495": [(0, "HELLO THERE", 1.25), (1, "A CAT", 0.5)]},
        "32": {"21631": [(0, "WORLD", 0.5), (1, "GO HOME", 1.0), (2, "THE WORLD", 0.5)]},
    },
    "dev-clean": {
        "84": {"121": [(0, "ZOO", 0.5), (1, "HELLO", 0.25)]},
    },
}


def write_audio(path: Path, seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> None:
    """A sine plus a little noise: real, decodable FLAC of an exact length."""
    frames = int(round(seconds * rate))
    time = np.arange(frames) / rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * time) + 0.01 * np.random.default_rng(seed).standard_normal(frames)
    data = np.repeat(signal[:, None], channels, axis=1) if channels > 1 else signal
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data.astype(np.float32), rate, subtype="PCM_16")


def make_corpus(root: Path, corpus: dict = CORPUS) -> Path:
    for subset, speakers in corpus.items():
        for speaker, chapters in speakers.items():
            for chapter, utterances in chapters.items():
                chapter_dir = root / subset / speaker / chapter
                lines = []
                for number, words, seconds in utterances:
                    utt_id = f"{speaker}-{chapter}-{number:04d}"
                    write_audio(chapter_dir / f"{utt_id}.flac", seconds, seed=number)
                    lines.append(f"{utt_id} {words}")
                (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "LibriSpeech")


def build(corpus: Path, out_dir: Path, **overrides) -> list:
    options = {"few_label": [], "few_label_from": None, **overrides}
    return build_manifests(ManifestConfig(corpus_dir=str(corpus), out_dir=str(out_dir), **options))


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_writes_fairseq_files_byte_for_byte(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summaries = build(corpus, out)
    assert [s.split for s in summaries] == ["dev_clean", "train_clean"]
    assert read(out / "dev_clean.tsv") == (
        f"{corpus.resolve()}\ndev-clean/84/121/84-121-0000.flac\t8000\ndev-clean/84/121/84-121-0001.flac\t4000\n"
    )
    assert read(out / "dev_clean.wrd") == "ZOO\nHELLO\n"
    assert read(out / "dev_clean.ltr") == "Z O O |\nH E L L O |\n"
    assert read(out / "dev_clean.spk") == "84\n84\n"
    assert read(out / "dev_clean.phn") == "Z UW\nHH AH L OW\n"
    train_ltr = read(out / "train_clean.ltr").splitlines()
    assert train_ltr[0] == "H E L L O | W O R L D |"
    assert train_ltr[2] == "D O N ' T | G O |"
    assert not (out / "train_clean.align").exists() and not (out / "train_clean.rejected.tsv").exists()


def test_label_files_align_with_rows(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(corpus, out)
    manifest = Manifest.load(out / "train_clean.tsv", labels=["wrd", "ltr", "phn", "spk"])
    assert len(manifest) == 8
    assert manifest.root == corpus.resolve()
    for index, row in enumerate(manifest.rows):
        utt_id = Path(row.relpath).stem
        speaker, chapter, number = utt_id.split("-")
        words = dict((n, w) for n, w, _ in CORPUS["train-clean"][speaker][chapter])[int(number)]
        assert manifest.labels["wrd"][index] == words
        assert manifest.labels["spk"][index] == speaker
        assert row.num_samples == soundfile.info(manifest.path(index)).frames
        assert set(manifest.labels["phn"][index].split()) <= set(ARPABET_39)
    assert manifest.total_seconds() == pytest.approx(6.0)


def test_dictionaries_count_training_only(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(corpus, out)
    words = [w for speaker in CORPUS["train-clean"].values() for ch in speaker.values() for _, w, _ in ch]
    expected = Counter("".join(words).replace(" ", "")) + Counter({"|": sum(len(w.split()) for w in words)})
    lines = read(out / "dict.ltr.txt").splitlines()
    counts = [int(line.split(" ")[1]) for line in lines]
    assert dict(line.split(" ") for line in lines[:-1]) == {s: str(c) for s, c in expected.items()}
    assert lines[-1] == "Z 0"  # only in dev: appended with count 0, after every counted symbol
    assert counts == sorted(counts, reverse=True)
    phones = [line.split(" ")[0] for line in read(out / "dict.phn.txt").splitlines()]
    assert sorted(phones) == sorted(ARPABET_39)


def test_write_dict_format(tmp_path: Path) -> None:
    path = write_dict(tmp_path / "dict.ltr.txt", Counter("HELLO|WORLD|"), extra_symbols=["Q", "L"])
    assert read(path) == "L 3\nO 2\n| 2\nD 1\nE 1\nH 1\nR 1\nW 1\nQ 0\n"


def test_unreadable_empty_and_missing_audio_are_rejected(corpus: Path, tmp_path: Path) -> None:
    chapter = corpus / "train-clean" / "19" / "198"
    (chapter / "19-198-0000.flac").write_bytes(b"this is not audio" * 10)
    soundfile.write(chapter / "19-198-0001.flac", np.zeros(0, np.float32), RATE, format="WAV")
    (chapter / "19-198-0002.flac").unlink()
    (chapter / "19-198-0002.flac").symlink_to(chapter / "gone.flac")  # dangling: listed but missing
    with open(chapter / "19-198.trans.txt", "a") as handle:
        handle.write("19-198-0009 NEVER RECORDED\n")
    out = tmp_path / "out"
    summaries = build(corpus, out, on_missing_audio="reject")
    rejected = [line.split("\t") for line in read(out / "train_clean.rejected.tsv").splitlines()]
    assert [(relpath.split("/")[-1], reason.split(":")[0]) for relpath, reason in rejected] == [
        ("19-198-0000.flac", "unreadable"),
        ("19-198-0001.flac", "empty (0 frames)"),
        ("19-198-0002.flac", "missing file"),
        ("19-198-0009.flac", "missing file (transcript line 4)"),
    ]
    manifest = Manifest.load(out / "train_clean.tsv", labels=["wrd", "ltr", "phn", "spk"])
    assert len(manifest) == 5 and not any("19-198" in row.relpath for row in manifest.rows)
    assert {s.split: s.rejects for s in summaries} == {"dev_clean": 0, "train_clean": 4}


def test_non_16k_audio_is_kept_with_a_warning(corpus: Path, tmp_path: Path, caplog) -> None:
    write_audio(corpus / "dev-clean" / "84" / "121" / "84-121-0001.flac", 0.5, rate=8000, channels=2)
    with caplog.at_level(logging.WARNING):
        build(corpus, tmp_path / "out")
    assert "dev_clean: 1 files are not 16 kHz mono (1 at 8000 Hz x 2 ch)" in caplog.text
    assert read(tmp_path / "out" / "dev_clean.tsv").splitlines()[2].endswith("\t4000")


def test_missing_transcript_line_names_the_file(corpus: Path, tmp_path: Path) -> None:
    write_audio(corpus / "dev-clean" / "84" / "121" / "84-121-0007.flac", 0.25)
    transcript = corpus / "dev-clean" / "84" / "121" / "84-121.trans.txt"
    with pytest.raises(ManifestError, match=f"{transcript}: no line for 84-121-0007"):
        build(corpus, tmp_path / "out")
    build(corpus, tmp_path / "out", on_missing_transcript="reject")
    rejected = read(tmp_path / "out" / "dev_clean.rejected.tsv")
    assert rejected == "dev-clean/84/121/84-121-0007.flac\tno transcript line\n"


def test_transcript_line_without_audio_names_file_and_line(corpus: Path, tmp_path: Path) -> None:
    transcript = corpus / "dev-clean" / "84" / "121" / "84-121.trans.txt"
    with open(transcript, "a") as handle:
        handle.write("84-121-0005 LOST\n")
    with pytest.raises(ManifestError, match=f"{transcript}:3: audio file dev-clean/84/121/84-121-0005.flac"):
        build(corpus, tmp_path / "out")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("84-121-0001 hello", r"invalid characters \['e', 'h', 'l', 'o'\]"),
        ("84-121-0001 HELLO, WORLD", r"invalid characters \[','\]"),
        ("HELLO WORLD", "no utterance id"),
        ("84-999-0001 HELLO", "utterance id 84-999-0001 does not belong to chapter 84-121"),
        ("84-121-0001", "no words after the utterance id"),
        ("84-121-0000 ZOO", "utterance 84-121-0000 already on line 1"),
    ],
)
def test_malformed_transcript_line_names_file_and_line(corpus: Path, tmp_path: Path, line: str, problem) -> None:
    transcript = corpus / "dev-clean" / "84" / "121" / "84-121.trans.txt"
    transcript.write_text(f"84-121-0000 ZOO\n{line}\n")
    with pytest.raises(ManifestError, match=f"{transcript}:2: {problem}"):
        build(corpus, tmp_path / "out")


def test_wrong_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=f"{tmp_path / 'nowhere'} does not exist"):
        build(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(ManifestError, match=f"no LibriSpeech subset under {tmp_path / 'empty'}"):
        build(tmp_path / "empty", tmp_path / "out")


def test_subset_selection_and_a_single_subset_as_corpus(corpus: Path, tmp_path: Path) -> None:
    assert [s.split for s in build(corpus, tmp_path / "a", subsets=["dev-clean"])] == ["dev_clean"]
    with pytest.raises(ConfigError, match=r"subsets.*\['dev-other'\] not found; found \['dev-clean', 'train-clean'\]"):
        build(corpus, tmp_path / "a", subsets=["dev-other"])
    summaries = build(corpus / "dev-clean", tmp_path / "b")
    assert [(s.split, s.rows) for s in summaries] == [("dev_clean", 2)]
    assert read(tmp_path / "b" / "dev_clean.tsv") == read(tmp_path / "a" / "dev_clean.tsv")


def test_alignment_gives_phones_and_align_file(corpus: Path, tmp_path: Path) -> None:
    chapter = corpus / "dev-clean" / "84" / "121"
    (chapter / "84-121.align.txt").write_text(
        "84-121-0000 SIL:0.0:0.1 Z:0.1:0.2 UW:0.2:0.45 SIL:0.45:0.5\n"
        "84-121-0001 HH:0:0.1 EH:0.1:0.15 L:0.15:0.2 OW:0.2:0.25\n"
    )
    build(corpus, tmp_path / "out")
    assert read(tmp_path / "out" / "dev_clean.phn") == "Z UW\nHH EH L OW\n"
    assert read(tmp_path / "out" / "dev_clean.align") == (
        "SIL:0.0:0.1 Z:0.1:0.2 UW:0.2:0.45 SIL:0.45:0.5\nHH:0:0.1 EH:0.1:0.15 L:0.15:0.2 OW:0.2:0.25\n"
    )
    (chapter / "84-121.align.txt").write_text("84-121-0000 Z:0.1:0.2 UW1:0.2:0.45\n")
    with pytest.raises(ManifestError, match=f"{chapter / '84-121.align.txt'}:1: 'UW1' is not an ARPAbet-39 phone"):
        build(corpus, tmp_path / "out")


def synthetic_utterances(speakers: int = 4, per_speaker: int = 30) -> list[Utterance]:
    """In-memory rows (no audio needed): lengths 1-4 s, varied per speaker."""
    rng = np.random.default_rng(0)
    return [
        Utterance(f"s/{s}/1/{s}-1-{u:04d}.flac", str(s), "A", AudioInfo(int(rng.integers(1, 5) * RATE), RATE, 1))
        for s in range(speakers)
        for u in range(per_speaker)
    ]


def test_few_label_subsets_are_nested_balanced_and_hit_their_duration(caplog) -> None:
    source = Split("train_clean", synthetic_utterances())
    with caplog.at_level(logging.WARNING):
        splits = few_label_splits(source, ["1min", "30s", "2min", "1h"], seed=3)
    assert [s.name for s in splits] == ["train_30s", "train_1min", "train_2min"]
    assert "few-label subset 1h skipped: train_clean has only" in caplog.text
    previous: set[str] = set()
    for split, target in zip(splits, [30, 60, 120]):
        seconds = [u.seconds for u in split.utterances]
        assert sum(seconds) >= target > sum(seconds) - max(seconds)  # the shortest prefix reaching the target
        per_speaker = Counter(u.speaker for u in split.utterances)
        assert max(per_speaker.values()) - min(per_speaker.values()) <= 1 and len(per_speaker) == 4
        relpaths = {u.relpath for u in split.utterances}
        assert previous <= relpaths
        previous = relpaths
    again = few_label_splits(source, ["30s", "1min", "2min"], seed=3)
    assert [s.utterances for s in again] == [s.utterances for s in splits]
    other_seed = few_label_splits(source, ["2min"], seed=4)
    assert other_seed[0].utterances != splits[2].utterances


def test_round_robin_alternates_speakers() -> None:
    talkative = [Utterance(f"s/9/1/9-1-{u:04d}.flac", "9", "A", AudioInfo(RATE, RATE, 1)) for u in range(5)]
    order = speaker_round_robin(synthetic_utterances(speakers=3, per_speaker=2) + talkative, seed=0)
    speakers = [u.speaker for u in order]
    assert len(set(speakers[:4])) == 4 and len(set(speakers[4:8])) == 4  # every speaker once per round
    assert speakers[8:] == ["9", "9", "9"] and len(set(order)) == 11


def test_few_label_splits_written_with_all_labels(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_1h.tsv").write_text("stale, from a run over a bigger corpus\n")
    build(corpus, out, few_label=["2s", "4s", "1h"], few_label_from="train-clean")
    small = Manifest.load(out / "train_2s.tsv", labels=["wrd", "ltr", "phn", "spk"])
    large = Manifest.load(out / "train_4s.tsv", labels=["wrd", "ltr", "phn", "spk"])
    assert set(small.rows) <= set(large.rows)
    assert len(set(small.labels["spk"])) == len(small) and small.total_seconds() >= 2.0  # first round only
    speaker_counts = Counter(large.labels["spk"]).values()
    assert max(speaker_counts) - min(speaker_counts) <= 1 and len(speaker_counts) == 3
    assert 4.0 <= large.total_seconds() < 5.25
    assert not (out / "train_1h.tsv").exists()
    with pytest.raises(ConfigError, match="few_label_from.*'train-other' not among"):
        build(corpus, out, few_label=["2s"], few_label_from="train-other")


def test_valid_percent_holds_out_deterministic_rows(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(corpus, out, valid_percent=0.25, seed=1)
    valid = Manifest.load(out / "valid.tsv", labels=["wrd"])
    train = Manifest.load(out / "train_clean.tsv", labels=["wrd"])
    assert len(valid) == 2 and len(train) == 6
    assert not set(valid.rows) & set(train.rows)
    first = read(out / "valid.tsv")
    build(corpus, out, valid_percent=0.25, seed=1)
    assert read(out / "valid.tsv") == first
    splits = {"train-clean": Split("train_clean", synthetic_utterances(2, 10))}
    held_out = hold_out_valid(splits, 0.1, seed=7)
    assert len(held_out.utterances) == 2 and len(splits["train-clean"].utterances) == 18


def write_fairseq_manifest(directory: Path, audio_root: Path, rows: list[str], wrd: list[str], ltr: list[str]) -> Path:
    """What fairseq's wav2vec_manifest.py + libri_labels.py write, by hand."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.tsv").write_text(f"{audio_root}\n" + "".join(f"{row}\n" for row in rows))
    (directory / "train.wrd").write_text("".join(f"{line}\n" for line in wrd))
    (directory / "train.ltr").write_text("".join(f"{line}\n" for line in ltr))
    return directory / "train.tsv"


def test_reads_fairseq_written_manifest(corpus: Path, tmp_path: Path) -> None:
    root = corpus / "train-clean"
    tsv = write_fairseq_manifest(
        tmp_path / "fs",
        root,
        ["19/198/19-198-0000.flac\t16000", "26/495/26-495-0001.flac\t8000"],
        ["HELLO WORLD", "A CAT"],
        ["H E L L O | W O R L D |", "A | C A T |"],
    )
    manifest = Manifest.load(tsv, labels=["ltr", "wrd"])
    assert manifest.root == root and len(manifest) == 2
    assert manifest.rows[1] == ManifestRow("26/495/26-495-0001.flac", 8000)
    assert manifest.path(0) == root / "19/198/19-198-0000.flac" and manifest.path(0).is_file()
    assert manifest.labels == {"ltr": ["H E L L O | W O R L D |", "A | C A T |"], "wrd": ["HELLO WORLD", "A CAT"]}
    assert manifest.total_seconds() == 1.5


def test_manifest_read_errors_name_the_file(corpus: Path, tmp_path: Path) -> None:
    tsv = write_fairseq_manifest(tmp_path / "fs", corpus, ["a.flac\t10", "b.flac\t20"], ["A"], ["A |", "B |"])
    with pytest.raises(ManifestError, match=rf"{tmp_path / 'fs' / 'train.wrd'} has 1 lines but .* has 2 rows"):
        Manifest.load(tsv, labels=["wrd"])
    assert Manifest.load(tsv, labels=["ltr"]).labels["ltr"] == ["A |", "B |"]
    tsv.write_text(f"{corpus}\na.flac\t10\nb.flac\n")
    with pytest.raises(ManifestError, match=rf"{tsv}:3: expected 'relpath<TAB>num_samples'.*size column"):
        Manifest.load(tsv)
    tsv.write_text(f"{tmp_path / 'moved'}\na.flac\t10\n")
    with pytest.raises(ManifestError, match=rf"{tsv}:1: root directory .*moved does not exist"):
        Manifest.load(tsv)


def test_write_manifest_refuses_misaligned_labels(tmp_path: Path) -> None:
    rows = [ManifestRow("a.flac", 10), ManifestRow("b.flac", 20)]
    with pytest.raises(ManifestError, match="1 'wrd' label lines for 2 rows"):
        write_manifest(tmp_path, "train", tmp_path, rows, {"wrd": ["A"]})
    tsv = write_manifest(tmp_path, "train", tmp_path, rows, {"wrd": ["A", "B"]})
    assert read(tsv) == f"{tmp_path.resolve()}\na.flac\t10\nb.flac\t20\n"


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TORCH_COMPILE_DISABLE": "1"}
    command = [sys.executable, "-m", "audiossl.cli.manifest", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def test_cli_prints_table_and_fails_cleanly(corpus: Path, tmp_path: Path) -> None:
    result = run_cli(f"corpus_dir={corpus}", f"out_dir={tmp_path / 'out'}", "few_label=[2s,1h]")
    assert result.returncode == 0, result.stderr
    assert "train_2s" in result.stdout and "few-label subset 1h skipped" in result.stdout
    assert (tmp_path / "out" / "train_2s.ltr").is_file()
    failed = run_cli(f"corpus_dir={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'out'}")
    assert failed.returncode == 2 and f"{tmp_path / 'nowhere'} does not exist" in failed.stderr


def test_a_header_without_a_length_never_becomes_an_impossible_row(tmp_path: Path) -> None:
    """libsndfile reports 2**63 - 1 frames for a FLAC whose STREAMINFO leaves the total open; the row must not."""
    from audiossl.data.manifest import probe_audio

    soundfile.write(tmp_path / "whole.flac", np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32), RATE)
    data = bytearray((tmp_path / "whole.flac").read_bytes())
    data[21] &= 0xF0  # STREAMINFO total samples (36 bits from the low nibble of byte 21): 0 = unknown
    data[22:26] = bytes(4)
    (tmp_path / "header_only.flac").write_bytes(bytes(data[:42]))  # "fLaC" + STREAMINFO, no audio frames
    assert soundfile.info(str(tmp_path / "header_only.flac")).frames == 2**63 - 1
    reason = probe_audio(tmp_path / "header_only.flac")
    assert isinstance(reason, str) and reason.startswith("unknown length")
