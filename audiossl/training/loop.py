"""The training loop shared by pretraining and fine-tuning: any ``Objective`` over any stream of ``AudioBatch`` es.

One update = ``accumulate`` forward/backward passes, a gradient-norm check (and clip), an AdamW step and a
scheduler step. Around it: a non-finite guard (skip the update, stop after too many in a row), logging,
validation with model selection, and checkpoints that make "run the same command again" resume exactly.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, NamedTuple, final

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_, get_total_norm

from audiossl.config import check_choice, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.objectives.base import Objective
from audiossl.training.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_best,
    save_checkpoint,
    seed_everything,
)
from audiossl.training.distributed import (
    DEVICES,
    any_rank,
    gather_objects,
    init_distributed,
    mean_over_ranks,
    sum_over_ranks,
    wrap_model,
)
from audiossl.training.logging import RunLogger
from audiossl.training.optim import OptimConfig, build_optimizer, build_scheduler, default_parameter_groups

EvaluateHook = Callable[[Objective], dict[str, float]]


@dataclass
class Validation:
    """How a run is validated and which checkpoint becomes ``best.pt``.

    ``evaluate(objective)`` (dev WER, say) when given, else the mean objective metrics (plus ``loss``) over
    ``data``; ``select_metric`` of the result picks ``best.pt``, higher or lower being better.
    """

    data: Iterable[AudioBatch] | None = None
    evaluate: EvaluateHook | None = None
    select_metric: str = "loss"
    higher_is_better: bool = False

    @property
    def enabled(self) -> bool:
        return self.data is not None or self.evaluate is not None


def cpu_has_bf16_units() -> bool:
    """Whether bf16 autocast can pay on this CPU: without AVX512-BF16 or AMX torch emulates bf16 matrix products."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@dataclass
class TrainerConfig:
    """How long to train and how to watch it (``trainer.*`` on the command line).

    Counts are optimiser updates. ``validate_every: 0`` validates only at the end; ``clip_norm: 0`` measures
    the gradient norm without clipping; ``amp`` (bf16 autocast) only takes effect on CUDA; ``cpu_amp`` is the
    same on CPU, off by default: it pays on CPUs with bf16 matrix units (AVX512-BF16, AMX) at BASE size, where
    matrix products dominate the step, and numerics then differ from float32 runs; ``num_threads: 0`` keeps
    torch's default.
    """

    max_steps: int = 1000
    seed: int = 1
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 2
    validate_every: int = 0
    accumulate: int = 1
    clip_norm: float = 0.0
    amp: bool = True
    cpu_amp: bool = False
    max_consecutive_nonfinite: int = 10
    device: str = "auto"
    num_threads: int = 0
    find_unused_parameters: bool = True
    progress: bool = True
    tensorboard: bool = True

    def validate(self) -> TrainerConfig:
        for key in ("max_steps", "log_every", "save_every", "accumulate", "max_consecutive_nonfinite"):
            check_positive(getattr(self, key), f"trainer.{key}")
        for key in ("keep_last", "validate_every", "clip_norm", "num_threads"):
            check_positive(getattr(self, key), f"trainer.{key}", allow_zero=True)
        check_choice(self.device, DEVICES, "trainer.device")
        return self


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient; a checkpoint was saved first."""


@dataclass
class TrainState:
    """The loop's counters; saved in every checkpoint."""

    step: int = 0
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    run_wall_seconds: float = 0.0  # the run's training wall time, validation and saving included, over resumes


class PassResult(NamedTuple):
    """One forward/backward over one micro-batch; ``loss`` and ``metrics`` stay on the device."""

    loss: Tensor
    metrics: dict[str, Tensor | float]
    seconds: float


@dataclass
class StepResult:
    """One optimiser update (or one skipped for a non-finite loss or gradient)."""

    finite: bool
    loss: Tensor
    metrics: dict[str, Tensor]
    seconds: float
    grad_norm: Tensor
    update_info: dict[str, float]
    data_wait: float  # seconds spent waiting for the data pipeline


@dataclass
class LogWindow:
    """Running sums between two log lines; skipped (non-finite) updates add audio seconds only.

    Losses and metrics are kept as device tensors and read back once, when the log line is written
    (``means``), so a training step never waits for the host to see a number.
    """

    losses: list[Tensor] = field(default_factory=list)
    grad_norms: list[Tensor] = field(default_factory=list)
    metrics: dict[str, list[Tensor]] = field(default_factory=lambda: defaultdict(list))
    update_info: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    data_wait: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: StepResult) -> None:
        self.seconds += result.seconds
        self.data_wait += result.data_wait
        if result.finite:
            self.losses.append(result.loss)
            self.grad_norms.append(result.grad_norm)
            for name, value in result.metrics.items():
                self.metrics[name].append(value)
            self.update_info.update(result.update_info)

    def means(self) -> dict[str, float]:
        series = dict(self.metrics) | {"loss": self.losses, "grad_norm": self.grad_norms}
        names = [name for name, values in series.items() if values]
        read = torch.stack([torch.stack(series[name]).double().mean() for name in names]).tolist() if names else []
        means = {name: math.nan for name in series} | dict(zip(names, read))  # one device-to-host copy
        return means | self.update_info


def module_grad_norms(objective: nn.Module) -> dict[str, float]:
    """Gradient norm of each part of the model (the encoder's parts, the objective's own heads), before
    clipping: which module a stuck or exploding run is training (or not) shows here first."""
    parts = [(f"encoder.{name}", module) for name, module in objective.encoder.named_children()] if hasattr(
        objective, "encoder") else []
    parts += [(name, module) for name, module in objective.named_children() if name != "encoder"]
    norms = {}
    for name, module in parts:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            norms[f"grad_norm/{name}"] = float(get_total_norm(grads))
    return norms


@final
class Trainer:
    """Train ``objective`` on ``train_data`` for ``cfg.max_steps`` updates; ``fit()`` resumes when it can.

    ``train_data`` is re-iterated once per epoch; when it has ``state_dict()`` / ``load_state_dict()``
    (``AudioPipeline`` does) its position is checkpointed, which makes a resumed run exact.
    ``validation`` (see ``Validation``) says how dev metrics are made and which one picks ``best.pt``.
    ``param_groups`` (AdamW groups, may set their own ``lr``) replaces the default decay/no-decay split.
    ``config_to_save`` (a plain dict, with an ``encoder`` entry) goes to ``config.yaml`` and every checkpoint.
    """

    def __init__(
        self,
        objective: Objective,
        train_data: Iterable[AudioBatch],
        cfg: TrainerConfig,
        optim: OptimConfig,
        run_dir: str | Path,
        validation: Validation | None = None,
        param_groups: list[dict[str, Any]] | None = None,
        config_to_save: dict[str, Any] | None = None,
    ) -> None:
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = init_distributed(cfg.device)
        self.objective = objective.to(self.dist.device)
        self.model = wrap_model(self.objective, self.dist, cfg.find_unused_parameters)
        groups = param_groups if param_groups is not None else default_parameter_groups(objective, optim.weight_decay)
        self.optimizer = build_optimizer(groups, optim)
        self.scheduler = build_scheduler(self.optimizer, optim, cfg.max_steps)
        self.train_data = train_data
        self.validation = validation or Validation()
        self.config_to_save = config_to_save
        self.state = TrainState()
        self.log = RunLogger(self.run_dir, cfg.max_steps, 0, enabled=False)
        self._last_train: dict[str, Any] = {}
        self._last_valid: dict[str, float] = {}

    # ---------------------------------------------------------------- the loop

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps`` (from the latest checkpoint in ``run_dir`` if any); return a summary."""
        started = time.perf_counter()
        resumed_from = self._start()
        self._tick = time.perf_counter()
        batches, window = self._batches(), LogWindow()
        try:
            while self.state.step < self.cfg.max_steps:
                result = self._train_step(batches)
                window.add(result)
                window = self._after_step(result, window)
        finally:
            self.log.close()
        return self._summary(resumed_from, time.perf_counter() - started)

    def _train_step(self, batches: Iterator[AudioBatch]) -> StepResult:
        passes, data_wait = [], 0.0
        for index in range(self.cfg.accumulate):
            asked = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - asked
            passes.append(self._forward_backward(batch, sync=index == self.cfg.accumulate - 1))
        module_norms = module_grad_norms(self.objective) if self._logs_at(self.state.step + 1) else {}
        grad_norm = clip_grad_norm_(self.objective.parameters(), self.cfg.clip_norm or math.inf)
        losses = torch.stack([p.loss for p in passes])
        bad = not bool(torch.isfinite(torch.cat([losses, grad_norm.reshape(1).to(losses)])).all())  # the step's one sync
        finite = not any_rank(bad, self.dist)
        update_info = (self._update() | module_norms) if finite else self._skip_update()
        metrics = {name: torch.stack([torch.as_tensor(p.metrics.get(name, math.nan), dtype=torch.float32,
                                                      device=losses.device) for p in passes]).mean()
                   for name in passes[0].metrics}
        return StepResult(finite, losses.mean(), metrics, sum(p.seconds for p in passes), grad_norm, update_info,
                          data_wait)

    def _forward_backward(self, batch: AudioBatch, sync: bool) -> PassResult:
        """One micro-batch; DDP all-reduces gradients only on the last one of an accumulation (``sync``)."""
        seconds = batch.seconds
        batch = batch.to(self.dist.device, non_blocking=True)
        no_sync = self.model.no_sync() if self.dist.distributed and not sync else nullcontext()
        with no_sync:
            with self._autocast():
                output = self.model(batch)
            (output.loss.float() / self.cfg.accumulate).backward()
        return PassResult(output.loss.detach().float(), dict(output.metrics), seconds)

    def _update(self) -> dict[str, float]:
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.consecutive_nonfinite = 0
        return self.objective.on_update(self.state.step)

    def _skip_update(self) -> dict[str, float]:
        """No optimiser or scheduler step: a single bad batch (or bf16 overflow) must not poison the weights."""
        self.optimizer.zero_grad(set_to_none=True)
        self.state.nonfinite_steps += 1
        self.state.consecutive_nonfinite += 1
        self.log.message(
            f"step {self.state.step}: non-finite loss or gradient, update skipped "
            f"({self.state.consecutive_nonfinite} in a row, {self.state.nonfinite_steps} in all)"
        )
        return {}

    def _after_step(self, result: StepResult, window: LogWindow) -> LogWindow:
        """Log, validate, checkpoint on their schedules; returns the (possibly fresh) log window."""
        step = self.state.step
        self.log.advance(step)
        self._count_wall_time()
        if not result.finite:
            self._stop_if_diverged()
            return window
        last = step == self.cfg.max_steps
        logged = self._logs_at(step)
        if logged:
            self._log_train(window)
        if self.validation.enabled and ((self.cfg.validate_every and step % self.cfg.validate_every == 0) or last):
            self._validate()
        if step % self.cfg.save_every == 0 or last:
            self._count_wall_time()  # the validation just run belongs to the checkpoint's time to quality
            self._save()
        return LogWindow() if logged else window  # started after validation and saving: throughput is training's

    def _count_wall_time(self) -> None:
        now = time.perf_counter()
        self.state.run_wall_seconds += now - self._tick
        self._tick = now

    def _logs_at(self, step: int) -> bool:
        """Does update ``step`` end with a training log line?"""
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def _stop_if_diverged(self) -> None:
        if self.state.consecutive_nonfinite < self.cfg.max_consecutive_nonfinite:
            return
        path = self._save()
        raise TrainingDiverged(
            f"stopping at step {self.state.step}: {self.state.consecutive_nonfinite} consecutive updates had a "
            f"non-finite loss or gradient (trainer.max_consecutive_nonfinite={self.cfg.max_consecutive_nonfinite}). "
            f"Checkpoint: {path}. Try a lower optim.lr, trainer.clip_norm > 0 or trainer.amp=false; running again "
            "in the same run_dir resumes from that checkpoint."
        )

    def _batches(self) -> Iterator[AudioBatch]:
        """Endless batches, epoch after epoch. One empty epoch is fine (a resume at an epoch's end); two are not."""
        empty_epochs = 0
        while empty_epochs < 2:
            empty_epochs += 1
            for batch in self.train_data:
                empty_epochs = 0
                yield batch
        raise RuntimeError("the training data yielded no batches in a whole epoch; check the manifest and data.*")

    def _autocast(self) -> ContextManager[Any]:
        device = self.dist.device.type
        if (device == "cuda" and self.cfg.amp) or (device == "cpu" and self.cfg.cpu_amp):
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return nullcontext()

    # ---------------------------------------------------------------- logging and validation

    def _log_train(self, window: LogWindow) -> None:
        means = mean_over_ranks(window.means(), self.dist)
        seconds = sum_over_ranks(window.seconds, self.dist)
        loss, grad_norm = means.pop("loss"), means.pop("grad_norm")
        elapsed = max(time.perf_counter() - window.started, 1e-9)
        record = {
            "lr": self.scheduler.get_last_lr()[0],
            "loss": loss,
            "grad_norm": grad_norm,
            "audio_sec_per_sec": seconds / elapsed,
            "data_wait_share": window.data_wait / elapsed,  # of wall time, waiting on the data pipeline
            "nonfinite_steps": self.state.nonfinite_steps,
            "run_wall_seconds": self.state.run_wall_seconds,  # since the run began, over resumes: time to quality
            "epoch": getattr(self.train_data, "epoch", None),
            "metrics": means,
        }
        self._last_train = record
        self.log.train(self.state.step, record)
        self.log.warn_once(self.objective.warnings(means))

    def _validate(self) -> None:
        """Validation draws its own randomness (masks, negatives) without disturbing training's RNG streams."""
        rng = capture_rng_state()
        self.objective.eval()
        with torch.no_grad():
            evaluate = self.validation.evaluate
            metrics = evaluate(self.objective) if evaluate is not None else self._mean_valid_metrics()
        self.objective.train()
        restore_rng_state(rng)
        metrics = mean_over_ranks(metrics, self.dist)
        self._last_valid = metrics
        self.log.valid(self.state.step, metrics)
        self._track_best(metrics)

    def _mean_valid_metrics(self) -> dict[str, float]:
        """Item-weighted means of the objective's loss and metrics over one pass of ``valid_data``."""
        totals: dict[str, float] = defaultdict(float)
        items = 0
        for batch in self.validation.data or []:
            with self._autocast():
                output = self.objective(batch.to(self.dist.device))
            for name, value in ({"loss": output.loss} | output.metrics).items():
                totals[name] += float(value) * batch.size
            items += batch.size
        return {name: total / items for name, total in totals.items()} if items else {}  # an empty shard

    def _track_best(self, metrics: dict[str, float]) -> None:
        selected = self.validation.select_metric
        if selected not in metrics:
            raise KeyError(
                f"select_metric {selected!r} is not among the validation metrics {sorted(metrics)}"
                + (" (the validation data yielded no batches?)" if not metrics else "")
            )
        value, best = metrics[selected], self.state.best_metric
        if not math.isfinite(value):
            return
        if best is None or (value > best if self.validation.higher_is_better else value < best):
            self.state.best_metric, self.state.best_step = value, self.state.step
            self._save(best=True)

    # ---------------------------------------------------------------- checkpoints and resume

    def _save(self, best: bool = False) -> Path | None:
        """Collective (every rank contributes RNG and data state); only rank 0 writes."""
        state = self._checkpoint_state()
        if not self.dist.is_main:
            return None
        if best:
            return save_best(self.run_dir, state)
        return save_checkpoint(self.run_dir, state, self.state.step, self.cfg.keep_last)

    def _checkpoint_state(self) -> dict[str, Any]:
        data_state = self.train_data.state_dict() if hasattr(self.train_data, "state_dict") else None
        ranks = gather_objects({"rng": capture_rng_state(), "data": data_state}, self.dist)
        return {
            "step": self.state.step,
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "trainer": asdict(self.state),
            "ranks": ranks,
            "world_size": self.dist.world_size,
            "config": self.config_to_save,
        }

    def _start(self) -> Path | None:
        resumed_from = self._resume()
        if resumed_from is None:
            seed_everything(self.cfg.seed + self.dist.rank)
        self.log = RunLogger(
            self.run_dir,
            self.cfg.max_steps,
            self.state.step,
            enabled=self.dist.is_main,
            progress=self.cfg.progress,
            tensorboard=self.cfg.tensorboard,
        )
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)
            self._write_config()
        where = f"resuming from {resumed_from} at step {self.state.step}" if resumed_from else "starting from scratch"
        self.log.message(f"{where}; {self._parameter_summary()}; device {self.dist.device} x {self.dist.world_size}")
        if self.dist.device.type == "cpu" and self.cfg.cpu_amp and not cpu_has_bf16_units():
            self.log.warn_once([
                f"trainer.cpu_amp=true, but this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 matrix "
                "units (AVX512-BF16 or AMX): bf16 is emulated there (the HuBERT tiny step took 4.1 s instead of "
                "0.43 on an AVX2 EPYC); set trainer.cpu_amp=false"])
        self.objective.train()
        return resumed_from

    def _resume(self) -> Path | None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return None
        checkpoint = load_checkpoint(path)
        try:
            self.objective.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise RuntimeError(
                f"checkpoint {path} does not fit this model/optimiser (was run_dir={self.run_dir} used with another "
                f"config?): {error}"
            ) from error
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.state = TrainState(**checkpoint["trainer"])
        self._restore_rank_state(checkpoint)
        return path

    def _restore_rank_state(self, checkpoint: dict[str, Any]) -> None:
        """Data position and RNG are per rank; with another world size they cannot carry over exactly."""
        if checkpoint["world_size"] != self.dist.world_size:
            if self.dist.is_main:
                print(
                    f"warning: checkpoint was written by {checkpoint['world_size']} processes, now "
                    f"{self.dist.world_size}: weights and optimiser resume, data order and RNG start afresh",
                    file=sys.stderr,
                )
            seed_everything(self.cfg.seed + self.dist.rank + self.state.step)
            return
        mine = checkpoint["ranks"][self.dist.rank]
        if mine["data"] is not None and hasattr(self.train_data, "load_state_dict"):
            self.train_data.load_state_dict(mine["data"])
        restore_rng_state(mine["rng"])

    def _write_config(self) -> None:
        if self.config_to_save is None:
            return
        path = self.run_dir / "config.yaml"
        text = OmegaConf.to_yaml(OmegaConf.create(self.config_to_save))
        if path.is_file() and path.read_text() != text:
            self.log.message(f"note: the config differs from the one saved in {path}; saving the new one")
        path.write_text(text)

    def _parameter_summary(self) -> str:
        total = sum(p.numel() for p in self.objective.parameters())
        trainable = sum(p.numel() for p in self.objective.parameters() if p.requires_grad)
        return f"{total / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M trainable)"

    def _summary(self, resumed_from: Path | None, wall_seconds: float) -> dict[str, Any]:
        latest = latest_checkpoint(self.run_dir)
        return {
            "step": self.state.step,
            "nonfinite_steps": self.state.nonfinite_steps,
            "best_metric": self.state.best_metric,
            "best_step": self.state.best_step,
            "select_metric": self.validation.select_metric,
            "last_checkpoint": str(latest) if latest else None,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "train": self._last_train,
            "valid": self._last_valid,
            "wall_seconds": wall_seconds,
        }
