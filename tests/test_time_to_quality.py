"""``benchmarks/time_to_quality.py``: the clock it reads from checkpoints and the crossing it interpolates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from _trainer_support import load_batches, write_clips
from test_trainer import make_trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import time_to_quality  # noqa: E402


def test_checkpoint_clock_reads_every_kept_checkpoint_in_order(tmp_path):
    batches = load_batches(write_clips(tmp_path / "clips"))
    make_trainer(tmp_path / "run", batches, max_steps=6, log_every=2, save_every=2, keep_last=0).fit()
    clock = time_to_quality.checkpoint_clock(tmp_path / "run")
    assert [step for step, _, _ in clock] == [2, 4, 6]
    minutes = [m for _, m, _ in clock]
    assert 0 < minutes[0] < minutes[1] < minutes[2] < 5, minutes
    assert time_to_quality.coarse_grid(clock, every=4) == {4, 6}  # the last checkpoint always
    assert time_to_quality.coarse_grid(clock, every=2, until=2) == {2, 6}  # bounded grid, still the last


def test_crossing_interpolates_between_the_checkpoints_around_the_target():
    curve = [(1000, 2.0, 0.50), (2000, 4.0, 0.60), (3000, 6.0, 0.70)]
    assert time_to_quality.crossing(curve, 0.65) == pytest.approx(5.0)
    assert time_to_quality.crossing(curve, 0.25) == pytest.approx(1.0)  # from the untrained start (0 min, 0 %)
    assert time_to_quality.crossing(curve, 0.60) == pytest.approx(4.0)
    assert time_to_quality.crossing(curve, 0.71) is None


def test_bisection_narrows_the_crossing_to_neighbouring_checkpoints():
    steps = list(range(250, 3001, 250))
    truth = {step: 0.4 + 0.3 * min(step, 1000) / 1000 for step in steps}  # crosses 0.63 between 750 and 1000
    probed = {step: truth[step] for step in (1000, 2000, 3000)}
    rounds = 0
    while (step := time_to_quality.next_probe(steps, probed, 0.63)) is not None:
        probed[step] = truth[step]
        rounds += 1
    assert rounds == 2 and {750, 1000} <= set(probed) and 250 not in probed, probed
    assert time_to_quality.next_probe(steps, {3000: 0.5}, 0.63) is None  # never reached: nothing to narrow
    assert time_to_quality.next_probe(steps, {250: 0.7}, 0.63) is None  # reached at the first checkpoint


def test_main_bisects_each_run_with_the_bench_it_is_given(tmp_path, monkeypatch):
    """The probe loop: the coarse grid first, then only the checkpoints that narrow the crossing, one bench per round."""
    batches = load_batches(write_clips(tmp_path / "clips"))
    make_trainer(tmp_path / "run", batches, max_steps=8, log_every=2, save_every=2, keep_last=0).fit()
    accuracy = {2: 0.50, 4: 0.58, 6: 0.66, 8: 0.70}  # MFCC 0.5: the target 0.6 is crossed between 4 and 6
    rounds: list[set[int]] = []

    def fake_bench(upstreams, out_dir, threads):
        rounds.append({int(name.split("@")[1]) for name in upstreams})
        return {"mfcc": 0.5} | {name: accuracy[int(name.split("@")[1])] for name in upstreams}

    monkeypatch.setattr(time_to_quality, "bench_phone_frames", fake_bench)
    monkeypatch.setattr(sys, "argv", ["time_to_quality.py", "--runs", f"r={tmp_path / 'run'}", "--out",
                                      str(tmp_path / "out"), "--every", "8", "--bisect"])
    time_to_quality.main()
    assert rounds == [{8}, {4, 8}, {4, 6, 8}], rounds
    summary = json.loads((tmp_path / "out" / "time_to_quality.json").read_text())
    assert [step for step, _, _ in summary["runs"]["r"]["curve"]] == [4, 6, 8]
