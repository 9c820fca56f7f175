"""``audiossl-kmeans``: one fitted model, reused for every split, labels on the target encoder's frame grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from _tone_corpus import run_cli, write_tone_corpus
from audiossl.config import ConfigError
from audiossl.data.manifest import read_tsv
from audiossl.features.kmeans import KMeansConfig, run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), {"train_clean": 12, "dev_clean": 4},
                             dict_split="train_clean")


def config(corpus: Path, **overrides) -> KMeansConfig:
    settings = dict(num_clusters=8, max_fit_frames=3000, splits=["train_clean", "dev_clean"], progress=False)
    return KMeansConfig(manifest_dir=str(corpus), **(settings | overrides))


def test_labels_cover_every_row_on_the_target_grid_and_match_phones(corpus: Path, one_thread_seeded: None) -> None:
    summary = run(config(corpus))
    for split in ("train_clean", "dev_clean"):
        _, rows = read_tsv(corpus / f"{split}.tsv")
        lines = (corpus / f"{split}.km").read_text().splitlines()
        assert len(lines) == len(rows)
        for row, line in zip(rows, lines):
            ids = [int(token) for token in line.split()]
            assert len(ids) == (row.num_samples - 400) // 320 + 1  # the wav2vec 2.0 stack's frame count
            assert min(ids) >= 0 and max(ids) < 8
    assert len((corpus / "dict.km.txt").read_text().splitlines()) == 8
    quality = summary["quality"]
    assert quality["split"] == "dev_clean" and quality["frames"] > 100
    assert quality["pnmi"] > 0.5 and quality["phone_purity"] > 0.5  # each letter is its own tone


def test_the_model_is_reused_and_a_changed_setting_must_be_forced(corpus: Path, one_thread_seeded: None) -> None:
    run(config(corpus))
    model = corpus / "km.kmeans.pt"
    fitted_at = model.stat().st_mtime_ns
    before = (corpus / "dev_clean.km").read_text()
    run(config(corpus, splits=["dev_clean"]))
    assert model.stat().st_mtime_ns == fitted_at and (corpus / "dev_clean.km").read_text() == before
    with pytest.raises(ConfigError, match="'force'"):
        run(config(corpus, num_clusters=5))


def test_cli_writes_a_second_iteration_label_kind(corpus: Path, tmp_path: Path) -> None:
    done = run_cli("kmeans", f"manifest_dir={corpus}", "label=km2", "num_clusters=4", "max_fit_frames=2000",
                   "frame_stride=160", "receptive_field=465", "splits=[dev_clean]", "progress=false")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PNMI" in done.stdout and (corpus / "dev_clean.km2").is_file() and (corpus / "km2.kmeans.pt").is_file()
    _, rows = read_tsv(corpus / "dev_clean.tsv")
    first = (corpus / "dev_clean.km2").read_text().splitlines()[0].split()
    assert len(first) == (rows[0].num_samples - 465) // 160 + 1  # the CPC stack's 10 ms grid


def test_a_second_iteration_clusters_an_encoder_layer(corpus: Path, tmp_path: Path, one_thread_seeded: None) -> None:
    """HuBERT iteration 2: the features are a layer of a (pretraining) checkpoint, labels on its own grid."""
    from dataclasses import asdict

    import torch

    from audiossl.models.encoder import EncoderConfig, build_encoder

    encoder_config = EncoderConfig(conv_layers=[[16, 10, 5], [16, 8, 4], [16, 4, 2], [16, 4, 2], [16, 4, 2]],
                                   conv_norm="layer_norm", model_dim=16, context="gru", num_layers=2,
                                   feature_dropout=0.0, dropout=0.0)
    encoder = build_encoder(encoder_config)
    checkpoint = tmp_path / "it1.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                "config": {"encoder": asdict(encoder_config)}}, checkpoint)
    second = config(corpus, features=str(checkpoint), layer=1, label="km_it2", num_clusters=4,
                    splits=["dev_clean"], frame_stride=160, receptive_field=465)
    summary = run(second)
    assert summary["settings"]["features"] == str(checkpoint) and summary["settings"]["layer"] == 1
    _, rows = read_tsv(corpus / "dev_clean.tsv")
    lines = (corpus / "dev_clean.km_it2").read_text().splitlines()
    assert [len(line.split()) for line in lines] == [(row.num_samples - 465) // 160 + 1 for row in rows]
    assert second.model_path.is_file()


def test_both_hubert_iterations_through_the_command_line(tmp_path: Path) -> None:
    """The README's recipe, shrunk: MFCC k-means -> hubert_tiny -> k-means of its layer 2 -> hubert_tiny_it2.
    Each run keeps the quality of the targets it learned."""
    corpus = write_tone_corpus(tmp_path / "corpus", {"train_clean": 8, "dev_clean": 3}, dict_split="train_clean")
    shrink = [f"data.manifest_dir={corpus}", "data.train_split=train_clean", "data.valid_split=dev_clean",
              "data.max_batch_samples=32000", "trainer.max_steps=2", "trainer.validate_every=0",
              "trainer.num_threads=1", "trainer.progress=false", "trainer.tensorboard=false"]
    grid = ["frame_stride=160", "receptive_field=465", "num_clusters=6", "max_fit_frames=3000", "progress=false"]
    first = run_cli("kmeans", f"manifest_dir={corpus}", "label=km", *grid)
    assert first.returncode == 0, first.stderr[-2000:]
    it1 = run_cli("pretrain", "+experiment=hubert_tiny", f"run_dir={tmp_path / 'it1'}", "objective.num_clusters=6",
                  *shrink)
    assert it1.returncode == 0, it1.stdout[-2000:] + it1.stderr[-2000:]
    assert "targets 'km': phone purity" in it1.stdout and (tmp_path / "it1" / "km.quality.json").is_file()

    second = run_cli("kmeans", f"manifest_dir={corpus}", f"features={tmp_path / 'it1'}", "layer=2", "label=km2",
                     *grid)
    assert second.returncode == 0, second.stderr[-2000:]
    it2 = run_cli("pretrain", "+experiment=hubert_tiny_it2", f"run_dir={tmp_path / 'it2'}",
                  "objective.num_clusters=6", *shrink)
    assert it2.returncode == 0, it2.stdout[-2000:] + it2.stderr[-2000:]
    assert "targets 'km2': phone purity" in it2.stdout
    saved = (tmp_path / "it2" / "km2.quality.json").read_text()
    assert str(tmp_path / "it1") in saved and '"layer": 2' in saved
