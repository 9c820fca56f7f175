"""The Trainer on a tiny real objective over real (synthesised, FLAC round-tripped) audio, in process."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from _trainer_support import build_tiny_objective, load_batches, tiny_encoder_config, write_clips
from audiossl.config import ConfigError, to_config
from audiossl.data.batch import AudioBatch
from audiossl.features.upstream import load_encoder
from audiossl.training import OptimConfig, Trainer, TrainerConfig, TrainingDiverged, Validation
from audiossl.training import checkpoint as ckpt
from audiossl.training.logging import RunLogger, read_metrics
from audiossl.training.optim import build_optimizer, build_scheduler, lr_schedule


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> list[AudioBatch]:
    return load_batches(write_clips(tmp_path_factory.mktemp("clips")))


def quick_config(**overrides) -> TrainerConfig:
    base = dict(max_steps=12, log_every=4, save_every=6, device="cpu", num_threads=1, progress=False, tensorboard=False)
    return TrainerConfig(**(base | overrides))


def make_trainer(run_dir: Path, batches, objective=None, optim=None, **config) -> Trainer:
    objective = objective or build_tiny_objective()
    optim = optim or OptimConfig(lr=3e-3, warmup_steps=2)
    return Trainer(objective, batches, quick_config(**config), optim, run_dir,
                   config_to_save={"encoder": tiny_encoder_config()})


def test_training_lowers_loss_logs_everything_and_calls_hooks(tmp_path, batches, capsys):
    objective = build_tiny_objective()
    objective.warning_text = "codebook collapsed (test)"
    summary = make_trainer(tmp_path, batches, objective, max_steps=40, log_every=5, tensorboard=True).fit()

    records = read_metrics(tmp_path, "train")
    assert [r["step"] for r in records] == list(range(5, 41, 5))
    assert records[-1]["loss"] < records[0]["loss"] - 0.5, [r["loss"] for r in records]
    for record in records:
        assert record["audio_sec_per_sec"] > 0 and record["grad_norm"] > 0 and record["nonfinite_steps"] == 0
        norms = {k: v for k, v in record["metrics"].items() if k.startswith("grad_norm/")}
        assert set(record["metrics"]) - set(norms) == {"acc", "chance", "temperature"}
        # Each part's gradient norm, before clipping: the encoder's parts and the objective's own head.
        assert {"grad_norm/encoder.feature_encoder", "grad_norm/encoder.context", "grad_norm/predictor"} <= set(norms)
        assert all(value > 0 for value in norms.values())
    assert records[-1]["metrics"]["temperature"] == pytest.approx(1 / 40)  # on_update's return value is logged
    assert objective.updates_seen == list(range(1, 41))
    printed = capsys.readouterr().out
    assert printed.count("codebook collapsed (test)") == 1, printed  # once, although its number changes per log
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").read_text().startswith("encoder:")
    assert summary["step"] == 40 and summary["last_checkpoint"].endswith("step_00000040.pt")


def test_nonfinite_updates_are_skipped_and_counted(tmp_path, batches):
    objective = build_tiny_objective()
    objective.poison_calls = {3, 4}
    summary = make_trainer(tmp_path, batches, objective, max_steps=6, log_every=3).fit()
    assert summary["step"] == 6 and summary["nonfinite_steps"] == 2
    assert objective.updates_seen == [1, 2, 3, 4, 5, 6]  # skipped updates neither count nor call on_update
    records = read_metrics(tmp_path, "train")
    assert all(math.isfinite(r["loss"]) for r in records)
    assert records[-1]["nonfinite_steps"] == 2
    assert all(torch.isfinite(p).all() for p in objective.parameters())


def test_consecutive_nonfinite_stops_with_checkpoint_and_untouched_weights(tmp_path, batches):
    objective = build_tiny_objective()
    initial = {k: v.clone() for k, v in objective.state_dict().items()}
    objective.poison_calls = {-1}
    with pytest.raises(TrainingDiverged, match="max_consecutive_nonfinite=3"):
        make_trainer(tmp_path, batches, objective, max_consecutive_nonfinite=3).fit()
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert saved["trainer"]["nonfinite_steps"] == 3 and saved["step"] == 0
    assert saved["optimizer"]["state"] == {}  # the optimiser never stepped
    assert all(torch.equal(initial[k], v) for k, v in objective.state_dict().items())


def test_validation_hook_selects_best_checkpoint(tmp_path, batches):
    scores = iter([0.2, 0.9, 0.5])
    objective = build_tiny_objective()

    def evaluate(model) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        return {"dev_acc": next(scores)}

    trainer = Trainer(objective, batches, quick_config(max_steps=6, validate_every=2), OptimConfig(lr=1e-3),
                      tmp_path, Validation(evaluate=evaluate, select_metric="dev_acc", higher_is_better=True))
    summary = trainer.fit()
    assert (summary["best_step"], summary["best_metric"]) == (4, 0.9)
    assert ckpt.load_checkpoint(tmp_path / "checkpoints" / "best.pt")["step"] == 4
    assert [r["metrics"]["dev_acc"] for r in read_metrics(tmp_path, "valid")] == [0.2, 0.9, 0.5]


def test_default_validation_averages_objective_metrics_without_touching_training_rng(tmp_path, batches):
    with_valid = make_trainer(tmp_path / "a", batches, max_steps=6, validate_every=2)
    with_valid.validation = Validation(data=batches[:2])
    with_valid.fit()
    valid = read_metrics(tmp_path / "a", "valid")
    assert [r["step"] for r in valid] == [2, 4, 6] and {"loss", "acc"} <= set(valid[0]["metrics"])
    without = make_trainer(tmp_path / "b", batches, max_steps=6)
    without.fit()
    assert all(torch.equal(a, b) for a, b in zip(with_valid.objective.state_dict().values(),
                                                  without.objective.state_dict().values()))


def test_checkpoints_keep_last_k_with_latest_pointer(tmp_path, batches):
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / ".step_00000002.pt.tmp-999"
    stale.write_bytes(b"half a checkpoint")
    make_trainer(tmp_path, batches, max_steps=8, save_every=2, keep_last=2).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000006.pt", "step_00000008.pt"]
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert {"model", "optimizer", "scheduler", "trainer", "ranks", "config", "world_size"} <= set(saved)
    assert {"python", "numpy", "torch"} <= set(saved["ranks"][0]["rng"])
    assert any(key.startswith("encoder.") for key in saved["model"])


def test_interrupted_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(3)}, step=1, keep_last=3)

    def dies_mid_write(state, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, {"step": 2}, step=2, keep_last=3)
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000001.pt"
    assert not (tmp_path / "checkpoints" / "step_00000002.pt").exists()
    assert torch.equal(ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["w"], torch.ones(3))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    ckpt.seed_everything(3)
    ckpt.atomic_torch_save({"rng": ckpt.capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(2))
    ckpt.seed_everything(99)
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])


def test_gradient_accumulation_matches_one_large_batch(tmp_path, batches):
    size = min(b.waveforms.shape[1] for b in batches[:4])
    halves = [AudioBatch(b.waveforms[:, :size], torch.full((b.size,), size), b.ids) for b in batches[:4]]
    whole = [AudioBatch(torch.cat([a.waveforms, b.waveforms]), torch.cat([a.lengths, b.lengths]), a.ids + b.ids)
             for a, b in zip(halves[::2], halves[1::2])]
    accumulated = build_tiny_objective(dropout=0.0)
    single = build_tiny_objective(dropout=0.0)
    make_trainer(tmp_path / "acc", halves, accumulated, max_steps=4, accumulate=2).fit()
    make_trainer(tmp_path / "one", whole, single, max_steps=4).fit()
    for a, b in zip(accumulated.parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_load_pretrained_encoder_rebuilds_the_trained_encoder(tmp_path, batches):
    trainer = make_trainer(tmp_path, batches, max_steps=3)
    trainer.fit()
    encoder = load_encoder(ckpt.latest_checkpoint(tmp_path))[0].eval()
    trained = trainer.objective.encoder.eval()
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), trained.state_dict().values()))
    batch = batches[0]
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch.waveforms, batch.lengths).features,
                                   trained(batch.waveforms, batch.lengths).features, rtol=0, atol=0)


def test_resuming_drops_log_records_a_killed_process_wrote_past_the_checkpoint(tmp_path):
    lines = [f'{{"step": {s}, "split": "train"}}\n' for s in (5, 10, 15)] + ['{"step": 20, "spl']
    (tmp_path / "metrics.jsonl").write_text("".join(lines))
    RunLogger(tmp_path, total_steps=30, start_step=10, progress=False, tensorboard=False).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [5, 10]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # step:          0     10    40    50   75    100
        ("polynomial", [0.0, 1.0, 0.6667, 0.5556, 0.2778, 0.0]),
        ("cosine", [0.0, 1.0, 0.75, 0.5868, 0.1786, 0.0]),
        ("tri_stage", [0.01, 1.0, 1.0, 1.0, 0.2236, 0.05]),
    ],
)
def test_lr_schedules(schedule, expected):
    extra = {"init_lr_scale": 0.01, "final_lr_scale": 0.05} if schedule == "tri_stage" else {"warmup_steps": 10}
    factor = lr_schedule(OptimConfig(schedule=schedule, **extra), total_steps=100)
    assert [round(factor(step), 4) for step in (0, 10, 40, 50, 75, 100)] == pytest.approx(expected, abs=1e-4)


def test_scheduler_drives_the_optimiser_lr():
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = build_optimizer([{"params": [weight]}], OptimConfig(lr=1.0, warmup_steps=4, schedule="constant"))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1.0, warmup_steps=4, schedule="constant"), 10)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_fused_update_on_cpu_is_the_plain_adamw_update():
    torch.manual_seed(0)
    start = [torch.randn(8, 4), torch.randn(4)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(3)]
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    plain_params = [torch.nn.Parameter(t.clone()) for t in start]
    fused = build_optimizer([{"params": iter(fused_params)}], cfg)  # an iterator, as module.parameters() gives
    plain = torch.optim.AdamW(plain_params, lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    assert fused.param_groups[0]["fused"] is True and len(fused.param_groups[0]["params"]) == 2
    for step_grads in grads:
        for params, optimizer in ((fused_params, fused), (plain_params, plain)):
            for param, grad in zip(params, step_grads):
                param.grad = grad.clone()
            optimizer.step()
    for fused_param, plain_param, original in zip(fused_params, plain_params, start):
        torch.testing.assert_close(fused_param, plain_param, rtol=1e-5, atol=1e-6)
        assert not torch.equal(fused_param, original)


@pytest.mark.parametrize(
    ("node", "key"),
    [({"schedule": "linear"}, "optim.schedule"), ({"lr": "fast"}, "optim.lr"), ({"betas": [0.9]}, "optim.betas"),
     ({"phase_ratios": [0.5, 0.5, 0.5]}, "optim.phase_ratios"), ({"warmup": 3}, "optim.warmup")],
)
def test_bad_optim_config_names_the_key(node, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_config(OptimConfig, node, "optim")


def test_bad_trainer_config_names_the_key():
    with pytest.raises(ConfigError, match=r"trainer\.device"):
        to_config(TrainerConfig, {"device": "tpu"}, "trainer")
    with pytest.raises(ConfigError, match=r"trainer\.accumulate"):
        to_config(TrainerConfig, {"accumulate": 0}, "trainer")


class SlowData:
    """Batches that take ``delay`` seconds each to arrive: a data pipeline slower than the model."""

    def __init__(self, batches, delay: float) -> None:
        self.batches, self.delay = batches, delay

    def __iter__(self):
        for batch in self.batches:
            time.sleep(self.delay)
            yield batch


def test_the_log_says_how_much_of_the_time_went_to_waiting_for_data(tmp_path, batches):
    make_trainer(tmp_path / "fast", batches, max_steps=10, log_every=5).fit()
    make_trainer(tmp_path / "slow", SlowData(batches, 0.3), max_steps=10, log_every=5).fit()
    fast = [r["data_wait_share"] for r in read_metrics(tmp_path / "fast", "train")]
    slow = [r["data_wait_share"] for r in read_metrics(tmp_path / "slow", "train")]
    assert all(0 <= share < 0.5 for share in fast), fast
    assert all(0.5 < share <= 1 for share in slow), slow


@pytest.mark.parametrize("cpu_amp", [False, True])
def test_cpu_amp_runs_the_forward_in_bf16_and_keeps_float32_weights(tmp_path, batches, cpu_amp):
    objective = build_tiny_objective()
    seen: list[torch.dtype] = []
    objective.encoder.feature_projection.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    summary = make_trainer(tmp_path, batches, objective, max_steps=4, cpu_amp=cpu_amp).fit()
    assert summary["nonfinite_steps"] == 0
    assert set(seen) == {torch.bfloat16 if cpu_amp else torch.float32}
    assert all(p.dtype == torch.float32 for p in objective.parameters())


@pytest.mark.parametrize("has_units", [False, True])
def test_cpu_amp_warns_on_a_cpu_without_bf16_units(tmp_path, batches, capsys, monkeypatch, has_units):
    """bf16 is emulated without AVX512-BF16 / AMX (10x slower measured): the run must say so at its start."""
    monkeypatch.setattr("audiossl.training.loop.cpu_has_bf16_units", lambda: has_units)
    make_trainer(tmp_path, batches, build_tiny_objective(), max_steps=1, cpu_amp=True).fit()
    warned = "trainer.cpu_amp=true, but this CPU" in capsys.readouterr().out
    assert warned != has_units


def test_wall_clock_is_logged_and_carried_over_a_resume(tmp_path, batches):
    """Time-to-quality curves read ``trainer.run_wall_seconds`` from checkpoints: it must survive a resume."""
    make_trainer(tmp_path, SlowData(batches, 0.05), max_steps=6, log_every=2).fit()
    first = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["trainer"]["run_wall_seconds"]
    make_trainer(tmp_path, SlowData(batches, 0.05), max_steps=12, log_every=2).fit()
    final = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["trainer"]["run_wall_seconds"]
    assert first >= 6 * 0.05 and final >= first + 6 * 0.05, (first, final)
    logged = [r["run_wall_seconds"] for r in read_metrics(tmp_path, "train")]
    assert len(logged) == 6 and logged == sorted(logged) and logged[-1] <= final, logged
