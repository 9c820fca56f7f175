"""Two CPU processes under torchrun (gloo): sharded data, identical weights on both ranks after training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from _trainer_support import write_clips
from audiossl.training.checkpoint import latest_checkpoint, load_checkpoint

SCRIPT = Path(__file__).with_name("_trainer_support.py")


def test_torchrun_two_processes_train_in_lockstep(tmp_path):
    manifest_dir = write_clips(tmp_path / "clips", count=30)
    run_dir = tmp_path / "run"
    env = os.environ | {"TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               str(run_dir), str(manifest_dir), "--max-steps", "6", "--save-every", "3"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr

    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # DDP kept both replicas identical
    assert not set(ranks[0]["ids"]) & set(ranks[1]["ids"])  # in each epoch, each rank had its own shard
    assert len(ranks[0]["ids"]) > 6 and len(ranks[1]["ids"]) > 6
    weights = [torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])

    checkpoint = load_checkpoint(latest_checkpoint(run_dir))
    assert checkpoint["world_size"] == 2 and len(checkpoint["ranks"]) == 2  # both ranks' RNG and data state
    assert checkpoint["ranks"][0]["rng"]["torch"].ne(checkpoint["ranks"][1]["rng"]["torch"]).any()
    assert all(torch.equal(weights[0][name], checkpoint["model"][name]) for name in weights[0])
    assert not list(run_dir.glob("rank*/")), "only rank 0 writes the run directory"


def test_torchrun_finetuning_shards_data_and_keeps_thawed_layers_in_sync(tmp_path):
    """Two ranks fine-tune ASR; the context thaws mid-run and must still be averaged across ranks."""
    from _tone_corpus import TINY_ENCODER, write_tone_corpus

    manifests = write_tone_corpus(tmp_path / "tones", {"train_10min": 16, "dev_clean": 4})
    run_dir = tmp_path / "ft"
    run_dir.mkdir()
    env = os.environ | {"TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(SCRIPT.with_name("_finetune_ranks.py")), "task=asr", "init=random", f"run_dir={run_dir}",
               f"data.manifest_dir={manifests}", "trainer.max_steps=8", "trainer.validate_every=4",
               "trainer.save_every=4", "trainer.device=cpu", "trainer.num_threads=1", "trainer.progress=false",
               "task.freeze_context_updates=3", "trainer.keep_last=3", "data.max_batch_samples=48000", "data.max_sample_size=48000",
               *TINY_ENCODER]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    weights = [torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    start = torch.load(run_dir / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    context = [name for name in weights[0] if name.startswith("encoder.context.")]
    assert any(not torch.equal(start[name], weights[0][name]) for name in context)  # it trained after thawing
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "valid"] == [4, 8]
