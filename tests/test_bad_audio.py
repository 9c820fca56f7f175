"""Bad audio never stops a run: each kind is skipped, counted and reported once with its path.

The corpus mixes good clips with one file of every failure kind the pipeline knows; resampling and
downmixing are checked to produce the right length and content when the config asks for them.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiossl.audio.io import AudioPolicy, read_audio
from audiossl.data.pipeline import AudioPipeline, DataConfig

RATE = 16_000
GOOD_LENGTHS = [3000, 4200, 5100, 6000, 2500, 3900]


def noise(length: int, seed: int, channels: int = 1) -> np.ndarray:
    shape = (length, channels) if channels > 1 else (length,)
    return np.random.default_rng(seed).uniform(-0.5, 0.5, shape).astype(np.float32)


def write_bad_files(audio_dir: Path) -> dict[str, tuple[str, int]]:
    """One file per fault kind; returns ``fault -> (file name, manifest num_samples)``."""
    soundfile.write(audio_dir / "whole.flac", noise(8000, 99), RATE)
    flac_bytes = (audio_dir / "whole.flac").read_bytes()
    (audio_dir / "cut.flac").write_bytes(flac_bytes[: len(flac_bytes) * 6 // 10])
    (audio_dir / "whole.flac").unlink()
    soundfile.write(audio_dir / "header.wav", noise(4000, 98), RATE)
    (audio_dir / "header_only.wav").write_bytes((audio_dir / "header.wav").read_bytes()[:44])
    (audio_dir / "header.wav").unlink()
    (audio_dir / "empty.flac").write_bytes(b"")
    (audio_dir / "garbage.flac").write_bytes(np.random.default_rng(3).bytes(6000))
    soundfile.write(audio_dir / "narrowband.flac", noise(2000, 97), 8000)
    soundfile.write(audio_dir / "stereo.flac", noise(3000, 96, channels=2), RATE)
    soundfile.write(audio_dir / "tiny.wav", noise(400, 95), RATE)
    with_nan = noise(3000, 94)
    with_nan[100] = np.nan
    soundfile.write(audio_dir / "nan.wav", with_nan, RATE, subtype="FLOAT")
    return {
        "missing": ("absent.flac", 3000),
        "empty_file": ("empty.flac", 3000),
        "unreadable": ("garbage.flac", 3000),
        "truncated": ("cut.flac", 8000),
        "no_audio": ("header_only.wav", 4000),
        "wrong_sample_rate": ("narrowband.flac", 2000),
        "multi_channel": ("stereo.flac", 3000),
        "too_short": ("tiny.wav", 400),
        "non_finite": ("nan.wav", 3000),
    }


def write_manifest(manifest_dir: Path, audio_dir: Path, rows: list[tuple[str, int]]) -> None:
    manifest_dir.mkdir(exist_ok=True)
    lines = [str(audio_dir), *(f"{name}\t{size}" for name, size in rows)]
    (manifest_dir / "train.tsv").write_text("\n".join(lines) + "\n")
    (manifest_dir / "train.wrd").write_text("\n".join(name for name, _ in rows) + "\n")


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, int]]]:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    bad = write_bad_files(audio_dir)
    good = []
    for index, length in enumerate(GOOD_LENGTHS):
        soundfile.write(audio_dir / f"good{index}.flac", noise(length, index), RATE)
        good.append((f"good{index}.flac", length))
    pairs = itertools.zip_longest(good, bad.values())
    rows = [row for row in itertools.chain.from_iterable(pairs) if row is not None]
    write_manifest(tmp_path / "manifest", audio_dir, rows)
    return tmp_path / "manifest", bad


def pad_config(manifest_dir: Path, **overrides: object) -> DataConfig:
    settings: dict[str, object] = dict(
        manifest_dir=str(manifest_dir), labels=["wrd"], crop=False, max_batch_samples=20_000,
        max_sample_size=10_000, min_sample_size=1000, num_parallel_calls=2, prefetch=2,
    )
    settings.update(overrides)
    return DataConfig(**settings)  # type: ignore[arg-type]


def test_every_bad_file_is_skipped_counted_and_warned_once(corpus, caplog) -> None:
    manifest_dir, bad = corpus
    pipeline = AudioPipeline(pad_config(manifest_dir), "train")
    with caplog.at_level(logging.WARNING, logger="audiossl.data.pipeline"):
        seen = [name for batch in itertools.islice(pipeline.iter_epochs(), 2 * len(pipeline)) for name in batch.ids]
    assert sorted(set(seen)) == sorted(f"good{i}.flac" for i in range(len(GOOD_LENGTHS)))
    assert len(seen) == 2 * len(GOOD_LENGTHS)  # two epochs, every good clip each time
    report = pipeline.fault_report()
    assert report.counts == {fault: 1 for fault in bad}
    root = (manifest_dir / "train.tsv").read_text().splitlines()[0]
    for fault, (name, _) in bad.items():
        path = os.path.join(root, name)
        assert report.examples[fault] == [path]
        assert sum(path in record.getMessage() for record in caplog.records) == 1, f"{fault} not warned exactly once"
        assert path in report.table()


def test_resample_and_downmix_convert_instead_of_skipping(corpus) -> None:
    manifest_dir, bad = corpus
    cfg = pad_config(manifest_dir, resample_to_target=True, downmix=True)
    pipeline = AudioPipeline(cfg, "train")
    clips = {name: row[:length] for batch in pipeline for name, row, length in
             zip(batch.ids, batch.waveforms, batch.lengths.tolist())}
    assert len(clips["narrowband.flac"]) == 2 * 2000  # 8 kHz -> 16 kHz doubles the samples
    stereo, _ = soundfile.read(manifest_dir.parent / "audio" / "stereo.flac", dtype="float32")
    assert torch.allclose(clips["stereo.flac"], torch.from_numpy(stereo.mean(axis=1)), atol=1e-6)
    assert "wrong_sample_rate" not in pipeline.fault_report().counts
    assert "multi_channel" not in pipeline.fault_report().counts


def test_resampled_audio_matches_a_sine_at_the_new_rate(tmp_path: Path) -> None:
    times = np.arange(8000) / 8000
    soundfile.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * times)).astype(np.float32), 8000)
    result = read_audio(str(tmp_path / "tone.wav"), AudioPolicy(RATE, resample=True))
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    assert result.waveform is not None and len(result.waveform) == RATE
    assert np.abs(result.waveform.numpy()[200:-200] - expected[200:-200]).max() < 2e-2


def test_batch_with_only_bad_files_is_substituted_so_ranks_stay_equal(tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    rows = []
    for index in range(8):  # every clip is longer than half the budget: one clip per batch
        name = f"clip{index}.flac"
        if index % 3 != 1:
            soundfile.write(audio_dir / name, noise(5000, index), RATE)
        rows.append((name, 5000))
    write_manifest(tmp_path / "manifest", audio_dir, rows)
    cfg = pad_config(tmp_path / "manifest", max_batch_samples=6000, max_sample_size=6000)
    ranks = [AudioPipeline(cfg, "train", rank=rank, world_size=2) for rank in range(2)]
    yielded = [list(pipeline) for pipeline in ranks]
    assert len(yielded[0]) == len(yielded[1]) == ranks[0].num_batches(0) == 4
    missing = {"clip1.flac", "clip4.flac", "clip7.flac"}
    assert all(batch.size == 1 and batch.ids[0] not in missing for batch in yielded[0] + yielded[1])
    assert sum(pipeline.fault_report().substituted_batches for pipeline in ranks) == len(missing)


def test_faults_survive_a_resume_without_new_warnings(corpus, caplog) -> None:
    manifest_dir, bad = corpus
    cfg = pad_config(manifest_dir, max_batch_samples=10_000)
    first = AudioPipeline(cfg, "train")
    list(first)
    resumed = AudioPipeline(cfg, "train")
    resumed.load_state_dict(first.state_dict())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audiossl.data.pipeline"):
        list(resumed)
    assert resumed.fault_report().counts == first.fault_report().counts
    assert not [record for record in caplog.records if "skipping" in record.getMessage()]


def test_corpus_without_readable_audio_fails_with_the_report(tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    write_manifest(tmp_path / "manifest", audio_dir, [("gone.flac", 3000), ("lost.flac", 3000)])
    with pytest.raises(RuntimeError, match="no readable audio"):
        list(AudioPipeline(pad_config(tmp_path / "manifest"), "train"))
