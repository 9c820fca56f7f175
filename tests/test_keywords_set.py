"""The synthetic Speech Commands-style keyword set: layout, disjoint speakers, 1 s clips, determinism."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.config import ConfigError, to_config
from audiossl.data.manifest import Manifest
from audiossl.data.synth.keywords import (
    BABBLE_WORDS, KEYWORDS, SILENCE, UNKNOWN, UNKNOWN_WORDS, KeywordsConfig, background_noise, build_keywords,
)

TINY = dict(train_speakers=3, dev_speakers=1, test_speakers=2, repetitions=1, unknown_per_speaker=2,
            noise_seconds=2.0)
NAME = re.compile(r"([a-z]+|_background_noise_)/([0-9a-f]{8}_nohash_\d+|[a-z]+_(train|dev|test))\.wav")


def tiny_set(root: Path) -> KeywordsConfig:
    cfg = KeywordsConfig(out_dir=str(root / "data"), manifest_dir=str(root / "manifests"), **TINY)
    build_keywords(cfg)
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> KeywordsConfig:
    return tiny_set(tmp_path_factory.mktemp("keywords"))


def manifest(cfg: KeywordsConfig, split: str) -> Manifest:
    return Manifest.load(Path(cfg.manifest_dir) / f"{split}.tsv", ["kw", "spk"])


def test_speech_commands_layout_and_lists(built: KeywordsConfig) -> None:
    root = Path(built.out_dir) / "SpeechCommands"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.wav"))
    assert files and all(NAME.fullmatch(f) for f in files)
    assert {f.split("/")[0] for f in files} >= set(KEYWORDS) | {"_background_noise_"}
    testing = (root / "testing_list.txt").read_text().split()
    validation = (root / "validation_list.txt").read_text().split()
    test_rows = manifest(built, "test")
    assert sorted(testing) == sorted(r.relpath.split("/", 1)[1] for r, kw in zip(test_rows.rows, test_rows.labels["kw"])
                                     if kw != SILENCE)
    assert not set(testing) & set(validation)
    other = (root.parent / "SpeechCommands-other" / "testing_list.txt").read_text().split()
    assert other == testing  # the same clips, corrupted


def test_twelve_classes_and_disjoint_speakers(built: KeywordsConfig) -> None:
    speakers = {}
    for split in ("train", "dev", "test"):
        m = manifest(built, split)
        assert set(m.labels["kw"]) == set(KEYWORDS) | {UNKNOWN, SILENCE}
        assert m.labels["kw"].count(UNKNOWN) == TINY["unknown_per_speaker"] * TINY[f"{split}_speakers"]
        speakers[split] = {s for s in m.labels["spk"] if s != "noise"}
        for row, kw in zip(m.rows, m.labels["kw"]):
            word = row.relpath.split("/")[1]
            assert kw == (word if word in KEYWORDS else SILENCE if word == "_background_noise_" else UNKNOWN)
    assert len(speakers["train"]) == 3 and len(speakers["dev"]) == 1 and len(speakers["test"]) == 2
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    assert manifest(built, "test_other").labels["spk"] == manifest(built, "test").labels["spk"]
    assert not set(BABBLE_WORDS) & (set(KEYWORDS) | set(UNKNOWN_WORDS))  # babble cannot say a class word


def test_clips_are_one_second_with_speech_and_noise_is_speechless(built: KeywordsConfig) -> None:
    m = manifest(built, "train")
    for row, kw in zip(m.rows, m.labels["kw"]):
        wave, rate = sf.read(m.root / row.relpath, dtype="float32")
        assert rate == 16_000 and wave.ndim == 1 and len(wave) == row.num_samples
        if kw != SILENCE:
            assert len(wave) == 16_000
            assert np.abs(wave).max() > 0.2  # loud enough: a word, not just the room noise
        else:
            assert len(wave) == 2 * 16_000
    other = manifest(built, "test_other")
    assert all(14_000 <= r.num_samples <= 18_000 for r, kw in zip(other.rows, other.labels["kw"]) if kw != SILENCE)


def test_same_seed_same_bytes_and_reuse(built: KeywordsConfig, tmp_path: Path) -> None:
    again = tiny_set(tmp_path)

    def hashes(cfg: KeywordsConfig) -> dict[str, str]:
        root = Path(cfg.out_dir)
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*.wav")} | {"lists": (root / "SpeechCommands" / "testing_list.txt").read_text()}

    assert hashes(again) == hashes(built)
    assert build_keywords(again).reused


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum"])
def test_background_noise_is_stationary_and_quiet(kind: str) -> None:
    wave = background_noise(kind, 32_000, np.random.default_rng(0))
    halves = [float(np.std(part)) for part in np.split(wave, 2)]
    assert 0 < max(halves) < 0.3 and max(halves) / min(halves) < 1.5


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="keywords.unknown_per_speaker"):
        to_config(KeywordsConfig, {"unknown_per_speaker": 99}, "keywords")
    with pytest.raises(ConfigError, match="keywords.test_speakers"):
        to_config(KeywordsConfig, {"test_speakers": 0}, "keywords")
