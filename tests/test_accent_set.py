"""The synthetic accent set: every voice reads every accent, voices and sentences never cross splits, determinism."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

from audiossl.bench.config import BenchConfig
from audiossl.bench.runner import run_bench
from audiossl.config import ConfigError, to_config
from audiossl.data.manifest import Manifest
from audiossl.data.synth.accents import SPLITS, AccentsConfig, build_accents

ACCENTS = ["en-us", "en-gb-x-rp", "en-029"]
TINY = dict(train_voices=3, dev_voices=1, test_voices=2, train_sentences=2, eval_sentences=1, accents=ACCENTS)
NAME = re.compile(r"(train|dev|test)/(\w+)/\2_(en[-\w]*)_(\d+)\.flac")


def tiny_set(root: Path) -> AccentsConfig:
    cfg = AccentsConfig(out_dir=str(root / "data"), manifest_dir=str(root / "manifests"), **TINY)
    build_accents(cfg)
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> AccentsConfig:
    return tiny_set(tmp_path_factory.mktemp("accents"))


def manifest(cfg: AccentsConfig, split: str) -> Manifest:
    return Manifest.load(Path(cfg.manifest_dir) / f"{split}.tsv", ["accent", "spk", "wrd"])


def test_every_voice_reads_the_same_sentences_in_every_accent(built: AccentsConfig) -> None:
    for split in SPLITS:
        m = manifest(built, split)
        said: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))  # voice -> accent -> sentences
        for row, accent, voice, words in zip(m.rows, m.labels["accent"], m.labels["spk"], m.labels["wrd"]):
            match = NAME.fullmatch(row.relpath)
            assert match and match.groups()[:3] == (split, voice, accent)
            assert 2 * 16_000 <= row.num_samples <= 4 * 16_000  # AccentsConfig.seconds
            said[voice][accent].append(words)
        assert len(said) == TINY[f"{split}_voices"]
        sentences = TINY["train_sentences" if split == "train" else "eval_sentences"]
        for voice, by_accent in said.items():
            assert sorted(by_accent) == sorted(ACCENTS), voice
            readings = list(by_accent.values())
            assert all(r == readings[0] for r in readings) and len(set(readings[0])) == sentences


def test_voices_and_sentences_never_cross_splits(built: AccentsConfig) -> None:
    voices = {split: set(manifest(built, split).labels["spk"]) for split in SPLITS}
    sentences = {split: set(manifest(built, split).labels["wrd"]) for split in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not voices[a] & voices[b] and not sentences[a] & sentences[b]


def test_same_seed_same_bytes_and_reuse(built: AccentsConfig, tmp_path: Path) -> None:
    again = tiny_set(tmp_path)

    def hashes(cfg: AccentsConfig) -> dict[str, str]:
        files = [*Path(cfg.out_dir).rglob("*.flac"), *(p for p in Path(cfg.manifest_dir).iterdir() if p.suffix != ".tsv")]
        return {p.name if p.suffix != ".flac" else str(p.relative_to(cfg.out_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in files}

    assert hashes(again) == hashes(built) and len(hashes(built)) == 18 + 3 + 6 + 9  # clips + 3 label files per split
    assert build_accents(again).reused
    assert not build_accents(AccentsConfig(**{**vars(again), "seed": 1, "out_dir": str(tmp_path / "s1"),
                                               "manifest_dir": str(tmp_path / "m1")})).reused
    assert set(manifest(again, "test").labels["wrd"]) != set(Manifest.load(tmp_path / "m1" / "test.tsv", ["wrd"]).labels["wrd"])


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="accent_set.train_voices.*exceed"):
        to_config(AccentsConfig, {"train_voices": 200}, "accent_set")
    with pytest.raises(ConfigError, match="accent_set.seconds"):
        to_config(AccentsConfig, {"seconds": [3.0, 2.0]}, "accent_set")
    with pytest.raises(ConfigError, match="accent_set.accents.*not bundled"):
        to_config(AccentsConfig, {"accents": ["en-mars"]}, "accent_set")
    with pytest.raises(ConfigError, match="accent_set.accents.*two"):
        to_config(AccentsConfig, {"accents": ["en-us"]}, "accent_set")


def test_the_bench_reads_the_set_and_names_what_is_missing(built: AccentsConfig, tmp_path: Path,
                                                           one_thread_seeded: None) -> None:
    def bench(manifests: Path | str) -> BenchConfig:
        return BenchConfig(upstreams=["mfcc"], tasks=["accent"], accent_manifest_dir=str(manifests),
                           out_dir=str(tmp_path / "out"), progress=False, num_threads=1)

    (row,) = run_bench(bench(built.manifest_dir), log=lambda _: None)
    assert row.details["voices"] == {"train": 3, "dev": 1, "test": 2}
    assert row.details["clips"] == {"train": 18, "dev": 3, "test": 6}
    assert row.details["accents"] == sorted(ACCENTS) and 0.2 < row.scores["chance_accuracy"] < 0.5

    partial = tmp_path / "partial"
    partial.mkdir()
    for path in Path(built.manifest_dir).iterdir():
        if path.name != "test.accent":
            (partial / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match=r"accent_manifest_dir.*lacks \['test.accent'\].*audiossl-accents"):
        run_bench(bench(partial), log=lambda _: None)
