"""The bench's clip tasks on tiny real audio: speaker ID on crops, accent ID on unseen voices, keywords."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from _tone_corpus import SAMPLE_RATE, WORDS, tone_utterance
from audiossl.bench import config as bench_config
from audiossl.bench.clips import draw_windows, window_frames
from audiossl.bench.config import BenchConfig, Profile
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.runner import run_bench
from audiossl.config import ConfigError
from audiossl.data.manifest import ManifestRow, write_manifest
from audiossl.data.synth.keywords import KeywordsConfig, build_keywords
from audiossl.reports.bench import write_bench_report

# speaker_crops' training split: four speakers, each its own pitch
PITCHES = {"100": 1.00, "101": 1.12, "102": 1.40, "103": 1.55}
# a set in the accent set's layout where the accent is audible: it sets the pitch register, voices vary inside it
VOICES = {"train": {"a1": ("en-us", 1.00), "a2": ("en-us", 1.12), "b1": ("en-gb-x-rp", 1.40), "b2": ("en-gb-x-rp", 1.55)},
          "dev": {"a3": ("en-us", 1.06), "b3": ("en-gb-x-rp", 1.47)},
          "test": {"a4": ("en-us", 1.05), "b4": ("en-gb-x-rp", 1.48)}}


def write_tones(root: Path, manifests: Path, split: str, speakers: dict[str, float], count: int,
                accents: dict[str, str] | None = None) -> None:
    """``count`` tone utterances (1.5-2.5 s) per speaker at the speaker's pitch, with ``.spk`` (and ``.accent``)."""
    rng = np.random.default_rng(len(split))
    rows, spk = [], []
    for speaker, pitch in speakers.items():
        for index in range(count):
            words = [WORDS[i] for i in rng.choice(len(WORDS), size=4 + index % 3)]
            wave, _ = tone_utterance(words, pitch, rng)
            relpath = f"{split}/{speaker}/{speaker}-{index:04d}.flac"
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / relpath, wave, SAMPLE_RATE)
            rows.append(ManifestRow(relpath, wave.size))
            spk.append(speaker)
    labels = {"spk": spk} | ({"accent": [accents[s] for s in spk]} if accents else {})
    write_manifest(manifests, split, root, rows, labels)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tones")
    write_tones(root / "audio", root / "manifests", "train_1h", PITCHES, 10)
    return root / "manifests"


@pytest.fixture(scope="module")
def tone_accents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tone_accents")
    for split, voices in VOICES.items():
        write_tones(root / "audio", root / "manifests", split, {v: pitch for v, (_, pitch) in voices.items()},
                    10 if split == "train" else 3, {v: accent for v, (accent, _) in voices.items()})
    return root / "manifests"


@pytest.fixture
def two_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench_config.PROFILES, "quick", Profile(seeds=[1, 2], probe_iterations=100))


def bench(manifests: Path, out: Path, tasks: list[str], **overrides: object) -> BenchConfig:
    return BenchConfig(upstreams=["mfcc"], tasks=tasks, manifest_dir=str(manifests), out_dir=str(out),
                       progress=False, num_threads=1, **overrides)


def test_windows_have_the_crop_length_and_follow_the_seed(corpus: Path, one_thread_seeded: None) -> None:
    features = UpstreamFeatures("mfcc", "mfcc", bench(corpus, corpus, []))
    split = features.split("train_1h", cmvn=False)
    rows = list(range(len(split.ids)))
    size = window_frames(split, 1.0)
    assert size == 100  # 10 ms frames
    windows = draw_windows(split, rows, 1.0, 3, seed=1)
    counts = split.frame_counts()
    assert len(windows) == 3 * len(rows) and all(n == size for _, _, n in windows)
    assert all(0 <= start and start + n <= counts[row] for row, start, n in windows)
    assert draw_windows(split, rows, 1.0, 3, seed=1) == windows != draw_windows(split, rows, 1.0, 3, seed=2)
    assert draw_windows(split, rows[::-1], 1.0, 3, seed=1) == sorted(windows, key=lambda w: -w[0])  # order-free
    whole = draw_windows(split, rows, 0, 3, seed=1)
    assert [(row, n) for row, _, n in whole] == [(row, int(counts[row])) for row in rows]
    long = draw_windows(split, rows[:1], 100.0, 3, seed=1)  # longer than the utterance: the utterance once
    assert long == [(0, 0, int(counts[0]))]


def test_speaker_crops_and_accent_rows(corpus: Path, tone_accents: Path, tmp_path: Path, two_seeds: None,
                                       one_thread_seeded: None) -> None:
    cfg = bench(corpus, tmp_path, ["speaker_crops", "accent"], crops_per_utterance=2, accent_seconds=1.0,
                accent_manifest_dir=str(tone_accents))
    crops, accent = run_bench(cfg, log=lambda _: None)
    assert crops.details["speakers"] == 4 and crops.details["items"]["test"] == 2 * 4  # 1 test utterance each
    assert crops.scores["test_accuracy"] > 0.5 and "test_accuracy_std" in crops.scores
    assert [crops.details[f"seed {s}"]["items"]["train"] for s in (1, 2)] == [2 * 32, 2 * 32]

    assert accent.details["accents"] == ["en-gb-x-rp", "en-us"]
    assert accent.details["voices"] == {"train": 4, "dev": 2, "test": 2}
    assert accent.details["items"] == {"train": 2 * 40, "dev": 2 * 6, "test": 2 * 6}
    assert accent.scores["chance_accuracy"] == pytest.approx(0.5)
    assert accent.scores["test_accuracy"] > 0.9  # the pitch register generalises to the unseen voices
    assert set(accent.details["seed 2"]) >= {"test_accuracy", "best_layer", "l2"}

    report = write_bench_report(tmp_path, [crops, accent], "clips", cfg.dev_split).read_text()
    assert "accent acc % (unseen voices)" in report and "chance (majority accent) 50.00 %" in report
    assert "speaker acc % (crops)" in report and " ± " in report


def test_keywords_on_mfcc_beat_chance(tmp_path: Path, two_seeds: None, one_thread_seeded: None) -> None:
    with pytest.raises(ConfigError, match="keywords_manifest_dir.*audiossl-keywords"):
        run_bench(bench(tmp_path, tmp_path / "none", ["keywords"], keywords_manifest_dir=str(tmp_path)),
                  log=lambda _: None)
    kw = KeywordsConfig(out_dir=str(tmp_path / "kw"), manifest_dir=str(tmp_path / "kwm"), train_speakers=4,
                        dev_speakers=2, test_speakers=2, repetitions=2, unknown_per_speaker=2, noise_seconds=2.0)
    build_keywords(kw)
    (row,) = run_bench(bench(tmp_path, tmp_path / "out", ["keywords"], keywords_manifest_dir=kw.manifest_dir),
                       log=lambda _: None)
    assert row.details["items"] == {"train": 96, "dev": 48, "test": 48, "test_other": 48}  # 12 balanced classes
    assert row.scores["test_accuracy"] > 3 / 12  # chance is 1/12
    assert {"test_other_accuracy", "test_other_accuracy_std"} <= set(row.scores)
    assert row.details["seed 1"]["items"] == row.details["seed 2"]["items"]
