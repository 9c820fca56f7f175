"""AudioPipeline on tiny real audio: batch contents, bucketing, sharding, determinism and exact resume.

Every clip is seeded noise whose label line is its own file name, so a test can check that each
batch row is really (a crop of) the file its label names.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from omegaconf import OmegaConf

from audiossl.config import ConfigError, to_config
from audiossl.data.pipeline import AudioPipeline, DataConfig

RATE = 16_000
LENGTHS = [1500, 2400, 3100, 4000, 4700, 5200, 6100, 7000, 7600, 8300, 9900, 12000, 2000, 3500, 5600, 6600]


def write_corpus(directory: Path, lengths: list[int], extensions: tuple[str, ...] = ("wav", "flac")) -> Path:
    """Noise clips plus a manifest (``train.tsv``, ``train.wrd`` = file name, ``train.spk``); returns its folder."""
    audio_dir, manifest_dir = directory / "audio", directory / "manifest"
    audio_dir.mkdir(parents=True)
    manifest_dir.mkdir()
    names = []
    for index, length in enumerate(lengths):
        name = f"clip{index:02d}.{extensions[index % len(extensions)]}"
        noise = np.random.default_rng(index).uniform(-0.5, 0.5, length).astype(np.float32)
        soundfile.write(audio_dir / name, noise, RATE)
        names.append(name)
    rows = [f"{name}\t{length}" for name, length in zip(names, lengths)]
    (manifest_dir / "train.tsv").write_text("\n".join([str(audio_dir), *rows]) + "\n")
    (manifest_dir / "train.wrd").write_text("\n".join(names) + "\n")
    (manifest_dir / "train.spk").write_text("\n".join(f"spk{i % 3}" for i in range(len(names))) + "\n")
    return manifest_dir


def tiny_config(manifest_dir: Path, **overrides: object) -> DataConfig:
    settings: dict[str, object] = dict(
        manifest_dir=str(manifest_dir), labels=["wrd", "spk"], max_batch_samples=24_000, max_sample_size=8000,
        min_sample_size=1000, num_parallel_calls=2, prefetch=2, seed=7,
    )
    settings.update(overrides)
    return DataConfig(**settings)  # type: ignore[arg-type]


def source(manifest_dir: Path, name: str) -> torch.Tensor:
    root = (manifest_dir / "train.tsv").read_text().splitlines()[0]
    return torch.from_numpy(soundfile.read(Path(root) / name, dtype="float32")[0])


def is_slice_of(row: torch.Tensor, full: torch.Tensor) -> bool:
    windows = full.unfold(0, len(row), 1)
    return bool((windows == row).all(dim=1).any())


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path, LENGTHS)


def epoch_ids(pipeline: AudioPipeline) -> list[list[str]]:
    return [batch.ids for batch in pipeline]


def test_crop_mode_cuts_every_clip_from_its_own_file(corpus: Path) -> None:
    cfg = tiny_config(corpus)
    batches = list(AudioPipeline(cfg, "train"))
    seen = [name for batch in batches for name in batch.ids]
    assert sorted(seen) == sorted(f"clip{i:02d}.{'wav' if i % 2 == 0 else 'flac'}" for i in range(len(LENGTHS)))
    for batch in batches:
        assert batch.waveforms.dtype == torch.float32 and batch.lengths.dtype == torch.int64
        assert batch.waveforms.numel() <= cfg.max_batch_samples
        width = batch.waveforms.shape[1]
        assert width <= cfg.max_sample_size
        assert batch.lengths.tolist() == [width] * batch.size
        assert batch.labels["wrd"] == batch.ids  # labels travel with their audio
        for row, name in zip(batch.waveforms, batch.ids):
            full = source(corpus, name)
            assert width <= len(full)
            assert is_slice_of(row, full), f"{name}: row is not a crop of its file"


def test_crop_width_is_the_shortest_clip_capped_at_max_sample_size(corpus: Path) -> None:
    cfg = tiny_config(corpus)
    for batch in AudioPipeline(cfg, "train"):
        shortest = min(LENGTHS[int(name[4:6])] for name in batch.ids)
        assert batch.waveforms.shape[1] == min(shortest, cfg.max_sample_size)


def test_pad_mode_keeps_whole_clips_and_skips_too_long(corpus: Path) -> None:
    cfg = tiny_config(corpus, crop=False, max_sample_size=10_000)
    pipeline = AudioPipeline(cfg, "train")
    seen = []
    for batch in pipeline:
        assert batch.waveforms.numel() <= cfg.max_batch_samples
        assert batch.waveforms.shape[1] == int(batch.lengths.max())
        for row, length, name in zip(batch.waveforms, batch.lengths.tolist(), batch.labels["wrd"]):
            assert torch.equal(row[:length], source(corpus, name))
            assert not row[length:].any()
        seen += batch.ids
    assert len(seen) == len(LENGTHS) - 1
    report = pipeline.fault_report()
    assert report.counts == {"too_long": 1} and report.examples["too_long"][0].endswith("clip11.flac")


def test_buckets_bound_total_samples_not_clip_count(tmp_path: Path) -> None:
    lengths = [1100] * 40 + [7900] * 6
    cfg = tiny_config(write_corpus(tmp_path, lengths, ("wav",)), crop=False)
    sizes = {}
    for batch in AudioPipeline(cfg, "train"):
        assert batch.waveforms.numel() <= cfg.max_batch_samples
        sizes.setdefault(batch.waveforms.shape[1], []).append(batch.size)
    assert max(sizes[1100]) > cfg.max_batch_samples // cfg.max_sample_size  # short clips: more per batch
    assert max(sizes[7900]) <= 3


def test_ranks_get_disjoint_shards_with_equal_batch_counts(corpus: Path) -> None:
    cfg = tiny_config(corpus, max_batch_samples=16_000)
    ranks = [AudioPipeline(cfg, "train", rank=rank, world_size=2) for rank in range(2)]
    batches = [epoch_ids(pipeline) for pipeline in ranks]
    assert len(batches[0]) == len(batches[1]) == ranks[0].num_batches(0) == ranks[1].num_batches(0) > 0
    shards = [[name for ids in rank_batches for name in ids] for rank_batches in batches]
    assert not set(shards[0]) & set(shards[1])
    everything = [name for ids in epoch_ids(AudioPipeline(cfg, "train")) for name in ids]
    dropped = set(everything) - set(shards[0]) - set(shards[1])
    assert len(dropped) <= max(len(ids) for ids in epoch_ids(AudioPipeline(cfg, "train")))  # one batch at most


def test_evaluation_shards_cover_every_clip(corpus: Path) -> None:
    cfg = tiny_config(corpus, max_batch_samples=16_000)
    shards = [epoch_ids(AudioPipeline(cfg, "train", rank=r, world_size=2, train=False)) for r in range(2)]
    names = [name for shard in shards for ids in shard for name in ids]
    assert sorted(names) == sorted(set(names)) and len(names) == len(LENGTHS)


def test_same_seed_same_batches_and_epochs_reshuffle(corpus: Path) -> None:
    cfg = tiny_config(corpus)
    first, second = AudioPipeline(cfg, "train"), AudioPipeline(cfg, "train")
    batches_a, batches_b = list(first), list(second)
    assert [b.ids for b in batches_a] == [b.ids for b in batches_b]
    assert all(torch.equal(a.waveforms, b.waveforms) for a, b in zip(batches_a, batches_b))
    assert epoch_ids(first) != [b.ids for b in batches_a]  # epoch 1 is shuffled differently
    other_seed = AudioPipeline(tiny_config(corpus, seed=8), "train")
    assert epoch_ids(other_seed) != [b.ids for b in batches_a]


def assert_same_batches(left: list, right: list) -> None:
    assert [b.ids for b in left] == [b.ids for b in right]
    assert all(torch.equal(a.waveforms, b.waveforms) and a.labels == b.labels for a, b in zip(left, right))


@pytest.mark.parametrize("consumed", [3, 9])  # mid-epoch, and past the first epoch boundary
def test_resume_yields_exactly_the_uninterrupted_rest(corpus: Path, consumed: int) -> None:
    cfg = tiny_config(corpus, max_batch_samples=16_000)
    per_epoch = AudioPipeline(cfg, "train").num_batches()
    assert per_epoch < 9, "the second case must cross an epoch boundary"
    total = 2 * per_epoch + 2
    reference = list(itertools.islice(AudioPipeline(cfg, "train").iter_epochs(), total))
    interrupted = AudioPipeline(cfg, "train")
    head = list(itertools.islice(interrupted.iter_epochs(), consumed))
    state = interrupted.state_dict()
    resumed = AudioPipeline(cfg, "train")
    resumed.load_state_dict(state)
    tail = list(itertools.islice(resumed.iter_epochs(), total - consumed))
    assert_same_batches(head + tail, reference)


def test_resume_at_the_exact_end_of_an_epoch_starts_the_next(corpus: Path) -> None:
    cfg = tiny_config(corpus)
    pipeline = AudioPipeline(cfg, "train")
    list(itertools.islice(iter(pipeline), pipeline.num_batches()))  # consumer stops without exhausting
    resumed = AudioPipeline(cfg, "train")
    resumed.load_state_dict(pipeline.state_dict())
    reference = AudioPipeline(cfg, "train")
    list(reference)
    assert_same_batches(list(resumed), list(reference))


def test_max_batches_per_epoch_caps_every_epoch(corpus: Path) -> None:
    pipeline = AudioPipeline(tiny_config(corpus, max_batch_samples=8000, max_batches_per_epoch=3), "train")
    assert len(pipeline) == 3
    assert [len(epoch_ids(pipeline)) for _ in range(2)] == [3, 3]


def test_normalize_gives_each_clip_zero_mean_unit_variance(corpus: Path) -> None:
    for batch in AudioPipeline(tiny_config(corpus, crop=False, max_sample_size=12_000, normalize=True), "train"):
        for row, length in zip(batch.waveforms, batch.lengths.tolist()):
            clip = row[:length].double()
            assert abs(clip.mean().item()) < 1e-4 and abs(clip.std(unbiased=False).item() - 1) < 1e-3


def test_label_file_with_wrong_line_count_names_file_and_counts(corpus: Path) -> None:
    (corpus / "train.spk").write_text("spk0\nspk1\n")
    with pytest.raises(ValueError, match=r"train\.spk has 2 lines but .*train\.tsv has 16 rows"):
        AudioPipeline(tiny_config(corpus), "train")


def test_malformed_manifest_row_names_the_line(corpus: Path) -> None:
    tsv = corpus / "train.tsv"
    tsv.write_text(tsv.read_text().replace("\t2400", " 2400"))
    with pytest.raises(ValueError, match=r"train\.tsv:3: expected 'relpath<TAB>num_samples'"):
        AudioPipeline(tiny_config(corpus, labels=[]), "train")


def test_config_rejects_impossible_sizes_with_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.max_sample_size"):
        to_config(DataConfig, {"max_sample_size": 10, "max_batch_samples": 5, "min_sample_size": 1}, "data")
    with pytest.raises(ConfigError, match=r"data\.num_parallel_calls"):
        to_config(DataConfig, {"num_parallel_calls": 0}, "data")


@pytest.mark.parametrize("preset", ["synth", "librispeech", "tiny"])
def test_conf_presets_mirror_data_config(preset: str) -> None:
    node = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "data" / f"{preset}.yaml")
    assert set(node) == set(DataConfig.__dataclass_fields__)  # every field spelled out, nothing extra
    assert isinstance(to_config(DataConfig, node, "data"), DataConfig)
