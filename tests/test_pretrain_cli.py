"""``audiossl-pretrain``: config validation before compute, the tiny presets, every objective through the Trainer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from _trainer_support import write_clips
from audiossl.cli._hydra import CONF_DIR
from audiossl.cli.pretrain import pretrain, validate
from audiossl.config import ConfigError
from audiossl.features.upstream import load_encoder
from audiossl.training.checkpoint import latest_checkpoint, load_checkpoint
from audiossl.training.logging import read_metrics

PRESETS = ["cpc_tiny", "wav2vec2_tiny", "apc_tiny", "cola_tiny", "pase_tiny", "multiformat_tiny"]
CLI = Path(sys.executable).with_name("audiossl-pretrain")


def compose_pretrain(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="pretrain", overrides=list(overrides))


def tiny_run_overrides(manifest_dir: Path, run_dir: Path, steps: int) -> list[str]:
    """Point a preset at clips made on the fly and shrink it to a few single-threaded steps."""
    return [
        f"data.manifest_dir={manifest_dir}", "data.train_split=train", "data.valid_split=valid",
        "data.min_sample_size=8000", "data.max_sample_size=16000", "data.max_batch_samples=48000",
        f"run_dir={run_dir}", f"trainer.max_steps={steps}", "trainer.log_every=2", "trainer.save_every=2",
        "trainer.validate_every=0", "trainer.device=cpu", "trainer.num_threads=1", "trainer.progress=false",
        "trainer.tensorboard=false",
    ]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips"), count=18, seconds=(1.0, 1.4))


@pytest.mark.parametrize("preset", PRESETS)
def test_tiny_presets_validate(preset):
    setup = validate(compose_pretrain(f"+experiment={preset}"))
    assert setup.objective.name == preset.removesuffix("_tiny")
    assert setup.run_dir == f"runs/pretrain/{preset}"


def keys_changed(base: str, preset: str) -> set[str]:
    """``group.key`` of every setting in which experiment ``preset`` differs from experiment ``base``."""
    old = OmegaConf.to_container(compose_pretrain(f"+experiment={base}"))
    new = OmegaConf.to_container(compose_pretrain(f"+experiment={preset}"))
    return {f"{group}.{key}" for group in ("objective", "encoder", "optim", "data", "trainer")
            for key in new[group] if new[group][key] != old[group].get(key)}


def test_wav2vec2_tiny_is_the_papers_preset_plus_its_documented_changes():
    """The README's paper-objective rows (peers, overfit check) come from wav2vec2_paper_tiny; wav2vec2_tiny
    must differ from it only in the four keys its YAML explains."""
    paper = OmegaConf.to_container(compose_pretrain("+experiment=wav2vec2_paper_tiny"))
    assert keys_changed("wav2vec2_paper_tiny", "wav2vec2_tiny") == {
        "objective.target_features", "objective.unmasked_weight", "objective.mask_contiguous",
        "encoder.feature_grad_scale"}
    assert paper["objective"]["target_features"] == "conv" and paper["objective"]["unmasked_weight"] == 0.0
    assert validate(compose_pretrain("+experiment=wav2vec2_paper_tiny")).objective.name == "wav2vec2"


def test_hubert_tiny_fast_is_hubert_tiny_plus_its_two_documented_changes():
    """The README's other HuBERT rows are hubert_tiny's: the fast preset may only move the two loss-side keys."""
    assert keys_changed("hubert_tiny", "hubert_tiny_fast") == {"objective.unmasked_weight", "objective.mask_prob"}
    setup = validate(compose_pretrain("+experiment=hubert_tiny_fast"))
    assert setup.objective.name == "hubert" and setup.run_dir == "runs/pretrain/hubert_tiny_fast"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=fast", "optim.lr"),
        ("optim.schedule=linear", "optim.schedule"),
        ("trainer.device=tpu", "trainer.device"),
        ("trainer.max_steps=0", "trainer.max_steps"),
        ("encoder.context=mamba", "encoder.context"),
        ("data.min_sample_size=999999999", "data.min_sample_size"),
        ("objective.name=byol", "objective.name"),
        ("objective.num_negatives=-3", "objective.num_negatives"),
        ("+objective.negative_pool=batch", "objective.negative_pool"),
        ("+optimizer.lr=1", "optimizer"),
    ],
)
def test_invalid_keys_and_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}"):
        validate(compose_pretrain(override))


def test_missing_manifest_is_a_config_error_naming_the_file(tmp_path):
    setup = validate(compose_pretrain(f"data.manifest_dir={tmp_path}", f"run_dir={tmp_path / 'run'}"))
    with pytest.raises(ConfigError, match=f"{tmp_path}/train_clean.tsv"):
        pretrain(setup)
    assert not (tmp_path / "run").exists()


def test_cli_fails_before_compute_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    command = [str(CLI), f"run_dir={run_dir}", "objective=apc", "objective.shift=zero"]
    env = os.environ | {"TORCH_COMPILE_DISABLE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert "objective.shift" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_cli_trains_saves_config_and_resumes(tmp_path, clips):
    run_dir = tmp_path / "run"
    command = [str(CLI), "+experiment=cpc_tiny", *tiny_run_overrides(clips, run_dir, steps=2)]
    env = os.environ | {"TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["objective"]["name"] == "cpc" and saved["trainer"]["max_steps"] == 2
    assert saved["encoder"]["name"] == "cpc_gru_tiny" and saved["data"]["manifest_dir"] == str(clips)

    second = subprocess.run([*command, "trainer.max_steps=4"], capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming from" in second.stdout and "at step 2" in second.stdout
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [2, 4]
    assert load_checkpoint(latest_checkpoint(run_dir))["step"] == 4


@pytest.mark.parametrize("preset", PRESETS)
def test_every_objective_trains_through_the_trainer(preset, tmp_path, clips):
    setup = validate(compose_pretrain(f"+experiment={preset}", *tiny_run_overrides(clips, tmp_path, steps=3)))
    summary = pretrain(setup)
    assert summary["step"] == 3 and summary["nonfinite_steps"] == 0
    assert summary["valid"] and all(map(float.__instancecheck__, summary["valid"].values()))
    encoder, _ = load_encoder(summary["last_checkpoint"])
    assert type(encoder).__name__ == "Encoder" and encoder.config.name == setup.encoder.name


def write_cluster_labels(clips: Path, clusters: int = 100, stride: int = 160) -> None:
    """Random HuBERT targets on a 10 ms grid for every clip (``{split}.km``): resuming needs labels, not good ones."""
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "valid"):
        sizes = [int(line.split("\t")[1]) for line in (clips / f"{split}.tsv").read_text().splitlines()[1:]]
        lines = [" ".join(map(str, torch.randint(clusters, (size // stride + 1,), generator=generator).tolist()))
                 for size in sizes]
        (clips / f"{split}.km").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("preset", [*PRESETS, "hubert_tiny"])
def test_every_objective_resumes_bitwise_after_a_kill(preset, tmp_path, clips):
    """A run killed after its step-2 checkpoint ends at step 4 identical to a run never interrupted: weights,
    optimizer moments, RNG streams and data position all come back. (Whatever moment a kill lands, the newest
    complete checkpoint is what survives; ``test_resume.py`` SIGKILLs a real process to show that.)"""
    if preset == "hubert_tiny":
        write_cluster_labels(clips)

    def run(run_dir: Path) -> dict:
        return pretrain(validate(compose_pretrain(f"+experiment={preset}", *tiny_run_overrides(clips, run_dir, 4))))

    run(tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "killed")
    checkpoints = tmp_path / "killed" / "checkpoints"
    (checkpoints / "step_00000004.pt").unlink()  # the kill: nothing after step 2 reached the disk
    (checkpoints / "best.pt").unlink(missing_ok=True)
    (checkpoints / "latest").write_text("step_00000002.pt\n")
    assert run(tmp_path / "killed")["resumed_from"].endswith("step_00000002.pt")

    whole, resumed = (load_checkpoint(tmp_path / run_dir / "checkpoints" / "step_00000004.pt")
                      for run_dir in ("whole", "killed"))
    assert resumed["model"].keys() == whole["model"].keys()
    assert not [name for name in whole["model"] if not torch.equal(whole["model"][name], resumed["model"][name])]
    for a, b in zip(whole["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(whole["ranks"][0]["rng"]["torch"], resumed["ranks"][0]["rng"]["torch"])
    assert whole["ranks"][0]["data"] == resumed["ranks"][0]["data"]
