"""The embedded synthetic corpus: layout, formats, alignments, speakers, determinism, corruptions."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.audio import corrupt as C
from audiossl.audio.espeak import ARPABET_PHONES, SAMPLE_RATE, VoiceSettings, synthesize
from audiossl.config import ConfigError, to_config
from audiossl.data.synth import SPLITS, SynthConfig, build_corpus
from audiossl.data.synth.layout import parse_alignment_line

TINY = dict(size=0.01, seed=0)
UTT_NAME = re.compile(r"(\d+)-(\d+)-(\d{4})\.flac")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = build_corpus(SynthConfig(out_dir=str(out), workers=2, **TINY))
    assert not summary.reused and all(s.utterances >= 2 for s in summary.splits.values())
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def flacs(root: Path, split: str) -> list[Path]:
    return sorted((root / "LibriSpeech" / split).rglob("*.flac"))


def read_lines(root: Path, split: str, suffix: str) -> dict[str, str]:
    lines = {}
    for path in (root / "LibriSpeech" / split).rglob(f"*{suffix}"):
        for line in path.read_text().splitlines():
            utt_id, _, rest = line.partition(" ")
            lines[utt_id] = rest
    return lines


def alignments(root: Path, split: str) -> dict[str, list[tuple[str, float, float]]]:
    return dict(parse_alignment_line(f"{k} {v}") for k, v in read_lines(root, split, ".align.txt").items())


def audio(root: Path, split: str, utt_id: str) -> np.ndarray:
    spk, chapter, _ = utt_id.split("-")
    wave, _ = sf.read(root / "LibriSpeech" / split / spk / chapter / f"{utt_id}.flac", dtype="float32")
    return wave


def test_layout_formats_and_transcripts(corpus: Path) -> None:
    for split in SPLITS:
        files = flacs(corpus, split)
        transcripts = read_lines(corpus, split, ".trans.txt")
        assert files and {f.stem for f in files} == set(transcripts)
        for f in files:
            spk, chapter, _ = UTT_NAME.fullmatch(f.name).groups()
            assert f.parent.name == chapter and f.parent.parent.name == spk
            assert (f.parent / f"{spk}-{chapter}.trans.txt").is_file()
            info = sf.info(f)
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        for text in transcripts.values():
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text) and 5 <= len(text.split()) <= 20


def test_alignments_cover_audio_with_arpabet(corpus: Path) -> None:
    allowed = set(ARPABET_PHONES) | {"SIL"}
    for split in SPLITS:
        aligned = alignments(corpus, split)
        transcripts = read_lines(corpus, split, ".trans.txt")
        assert set(aligned) == set(transcripts)
        for utt_id, phones in aligned.items():
            assert {p for p, _, _ in phones} <= allowed
            assert phones[0][1] == 0.0
            assert abs(phones[-1][2] - len(audio(corpus, split, utt_id)) / SAMPLE_RATE) <= 0.0005
            assert all(start < end for _, start, end in phones)
            assert all(a[2] == b[1] for a, b in zip(phones, phones[1:]))
            assert sum(p != "SIL" for p, _, _ in phones) >= 2 * len(transcripts[utt_id].split())


def silence_and_speech_rms(root: Path, split: str) -> tuple[float, float]:
    """Median RMS over SIL segments and over phone segments (>= 20 ms) of a split."""
    rms: dict[bool, list[float]] = {True: [], False: []}
    for utt_id, phones in alignments(root, split).items():
        wave = audio(root, split, utt_id)
        for phone, start, end in phones:
            segment = wave[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            if len(segment) >= 320:
                rms[phone == "SIL"].append(float(np.sqrt(np.mean(segment**2))))
    return float(np.median(rms[True])), float(np.median(rms[False]))


def test_alignment_matches_the_audio(corpus: Path) -> None:
    """SIL segments are (near) silent in clean speech and phone segments are not: times are real."""
    silence, speech = silence_and_speech_rms(corpus, "train-clean")
    assert silence < 0.05 * speech


def test_other_splits_are_noisier_than_clean(corpus: Path) -> None:
    clean_silence, _ = silence_and_speech_rms(corpus, "dev-clean")
    other_silence, _ = silence_and_speech_rms(corpus, "dev-other")
    assert other_silence > 10 * clean_silence
    log = (corpus / "corruptions" / "dev-other.tsv").read_text().splitlines()
    assert log and all("noise=" in line for line in log)
    assert all(line.endswith("clean") for line in (corpus / "corruptions" / "train-clean.tsv").read_text().splitlines())


def speakers_txt(root: Path) -> list[list[str]]:
    text = (root / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines()
    return [[field.strip() for field in line.split("|")] for line in text if not line.startswith(";")]


def test_speakers_disjoint_and_listed(corpus: Path) -> None:
    rows = speakers_txt(corpus)
    by_split = {split: {p.name for p in (corpus / "LibriSpeech" / split).iterdir()} for split in SPLITS}
    for split, ids in by_split.items():
        assert len(ids) >= 2
        assert ids == {row[0] for row in rows if row[2] == split}
        assert all(ids.isdisjoint(other) for name, other in by_split.items() if name != split)
    assert all(row[1] in ("M", "F") and float(row[3]) > 0 for row in rows)
    assert len({row[4] for row in rows}) == len(rows)  # every speaker has its own voice settings


def test_same_seed_same_bytes_any_worker_count(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_corpus(SynthConfig(out_dir=str(again), workers=1, **TINY))
    assert tree_hashes(again) == tree_hashes(corpus)


def test_different_seed_differs(corpus: Path, tmp_path: Path) -> None:
    other = tmp_path / "seed1"
    build_corpus(SynthConfig(out_dir=str(other), workers=2, size=0.003, seed=1))
    assert set(read_lines(other, "train-clean", ".trans.txt").values()).isdisjoint(
        read_lines(corpus, "train-clean", ".trans.txt").values()
    )
    mine = {hashlib.sha256(f.read_bytes()).hexdigest() for f in flacs(corpus, "dev-clean")}
    assert mine.isdisjoint(hashlib.sha256(f.read_bytes()).hexdigest() for f in flacs(other, "dev-clean"))


def test_existing_corpus_is_reused_and_changed_config_rebuilds(corpus: Path, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.flac")}
    summary = build_corpus(SynthConfig(out_dir=str(corpus), workers=1, **TINY))
    assert summary.reused and summary.splits["train-clean"].utterances == len(flacs(corpus, "train-clean"))
    assert before == {p: p.stat().st_mtime_ns for p in corpus.rglob("*.flac")}
    small = tmp_path / "small"
    build_corpus(SynthConfig(out_dir=str(small), size=0.003))
    clean_text = read_lines(small, "train-clean", ".trans.txt")
    rebuilt = build_corpus(SynthConfig(out_dir=str(small), size=0.003, corrupt_train=True))
    assert not rebuilt.reused
    noisy_text = read_lines(small, "train-clean", ".trans.txt")
    assert all(clean_text[k] == noisy_text[k] for k in clean_text.keys() & noisy_text.keys())  # same sentences
    log = (small / "corruptions" / "train-clean.tsv").read_text().splitlines()
    corrupted = [line for line in log if "noise=" in line]
    assert 0 < len(corrupted) < len(log)  # corrupt_train corrupts a fraction of the training utterances


def test_cli_reuses_corpus(corpus: Path, monkeypatch, capsys) -> None:
    from audiossl.cli.synth import main

    monkeypatch.setattr(sys, "argv", ["audiossl-synth", f"out_dir={corpus}", "size=0.01", "seed=0"])
    main()
    out = capsys.readouterr().out
    assert "reused existing corpus" in out and "train-clean" in out


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synth.size"):
        to_config(SynthConfig, {"size": "big"}, "synth")
    with pytest.raises(ConfigError, match="synth.variants"):
        build_corpus(SynthConfig(out_dir=str(tmp_path), variants=["no-such-voice"]))
    with pytest.raises(ConfigError, match="synth.corruption.noise_kinds"):
        build_corpus(SynthConfig(out_dir=str(tmp_path), corruption=C.CorruptionConfig(noise_kinds=["rain"])))


# ---- corruptions on a real synthesized utterance -------------------------------------------------


@pytest.fixture(scope="module")
def speech():
    return synthesize("the quick brown fox jumped over seven lazy dogs near the river", VoiceSettings("en-us", "m3"))


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr_db", [5.0, 12.5, 20.0])
def test_noise_hits_requested_snr(speech, kind: str, snr_db: float) -> None:
    rng = np.random.default_rng(0)
    talkers = [synthesize("another person talks here", VoiceSettings("en", "f2")).waveform, speech.waveform[::-1]]
    noise = C.make_noise(kind, len(speech.waveform), rng, lambda n, r: C.mix_talkers(talkers, n))
    noisy = C.add_noise(speech.waveform, noise, snr_db)
    assert abs(C.measured_snr_db(speech.waveform, noisy) - snr_db) < 0.01
    assert not np.allclose(noisy, speech.waveform)


def spectrum_share(wave: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_band_limit_removes_out_of_band_energy(speech) -> None:
    phone = C.band_limit(speech.waveform, SAMPLE_RATE)
    assert spectrum_share(speech.waveform, 4500, 8000) > 0.005
    assert spectrum_share(phone, 4500, 8000) < 0.01 * spectrum_share(speech.waveform, 4500, 8000)
    assert spectrum_share(phone, 0, 150) < 0.01 * spectrum_share(speech.waveform, 0, 150)


def test_reverb_smears_energy_into_pauses(speech) -> None:
    rng = np.random.default_rng(1)
    wet = C.reverberate(speech.waveform, 0.6, rng, SAMPLE_RATE)
    assert len(wet) == len(speech.waveform)
    end = speech.phones[-1][1]  # trailing silence: only the reverb tail can fill it
    tail = slice(int(end * SAMPLE_RATE), int((end + 0.05) * SAMPLE_RATE))
    assert C.power(wet[tail]) > 10 * C.power(speech.waveform[tail]) + 1e-12


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_change_rescales_alignment(speech, factor: float) -> None:
    cfg = C.CorruptionConfig(speed_prob=1.0, speed=[factor, factor], reverb_prob=0, telephone_prob=0, noise_kinds=[])
    out = C.corrupt(speech.waveform, speech.phones, np.random.default_rng(0), cfg, SAMPLE_RATE)
    assert abs(len(out.waveform) - len(speech.waveform) / factor) <= 2
    assert out.phones[-1][2] == round(len(out.waveform) / SAMPLE_RATE, 3)
    assert [p for p, _, _ in out.phones] == [p for p, _, _ in speech.phones]
    for (_, s0, e0), (_, s1, e1) in zip(speech.phones[:-1], out.phones[:-1]):
        assert abs(s1 - s0 / factor) <= 0.0015 and abs(e1 - e0 / factor) <= 0.0015
    assert out.applied == [f"speed={factor:.3f}"]
