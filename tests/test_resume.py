"""A run killed with SIGKILL and started again ends bit-identical to a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from _trainer_support import write_clips
from audiossl.training.checkpoint import latest_checkpoint, load_checkpoint
from audiossl.training.logging import read_metrics

SCRIPT = Path(__file__).with_name("_trainer_support.py")
MAX_STEPS = 24


def launch(run_dir: Path, manifest_dir: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), str(run_dir), str(manifest_dir), "--max-steps", str(MAX_STEPS),
               "--save-every", "8", *extra]  # logs every 4: windows never straddle a checkpoint
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return output


def kill_after_first_checkpoint(process: subprocess.Popen, run_dir: Path) -> int:
    """SIGKILL as soon as a checkpoint exists; returns the step the run had checkpointed."""
    deadline = time.monotonic() + 90
    while latest_checkpoint(run_dir) is None:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return load_checkpoint(latest_checkpoint(run_dir))["step"]


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    manifest_dir = write_clips(tmp_path / "clips")
    reference = launch(tmp_path / "reference", manifest_dir)
    victim = launch(tmp_path / "victim", manifest_dir, "--delay", "0.1")  # slow, so the kill lands mid-run
    killed_at = kill_after_first_checkpoint(victim, tmp_path / "victim")
    assert 0 < killed_at < MAX_STEPS
    output = finish(launch(tmp_path / "victim", manifest_dir))
    assert f"at step {killed_at}" in output
    finish(reference)

    resumed = torch.load(tmp_path / "victim" / "rank0.pt", weights_only=True)
    uninterrupted = torch.load(tmp_path / "reference" / "rank0.pt", weights_only=True)
    assert resumed.keys() == uninterrupted.keys()
    differing = [name for name in resumed if not torch.equal(resumed[name], uninterrupted[name])]
    assert not differing, f"weights differ after resume: {differing}"

    final_resumed = load_checkpoint(latest_checkpoint(tmp_path / "victim"))
    final_reference = load_checkpoint(latest_checkpoint(tmp_path / "reference"))
    assert final_resumed["step"] == final_reference["step"] == MAX_STEPS
    assert final_resumed["ranks"][0]["data"]["epoch"] == final_reference["ranks"][0]["data"]["epoch"]
    for a, b in zip(final_resumed["optimizer"]["state"].values(), final_reference["optimizer"]["state"].values()):
        assert all(torch.equal(a[key], b[key]) for key in a)

    def trajectory(run: str) -> list[tuple]:
        return [(r["step"], r["loss"], r["grad_norm"]) for r in read_metrics(tmp_path / run, "train")]

    assert trajectory("victim") == trajectory("reference")  # every logged loss, before and after the kill
