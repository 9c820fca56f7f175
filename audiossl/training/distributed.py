"""torchrun / DistributedDataParallel plumbing, so the loop reads the same with one process or many.

``torchrun --nproc_per_node=N`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR``; with
``WORLD_SIZE > 1`` we join the process group (gloo on CPU, NCCL on GPU). With one process every helper
here is a cheap no-op, so tests and laptops need no launcher.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from audiossl.config import ConfigError, check_choice

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job and which device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process logs and writes files, so N processes do not race on one run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` takes the GPU when there is one; asking for ``cuda`` without one is a config error."""
    check_choice(preference, DEVICES, "trainer.device")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("invalid config at 'trainer.device': cuda asked for but no CUDA device is visible; "
                              "use cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str) -> DistContext:
    """Join the torchrun process group when launched with more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def wrap_model(module: nn.Module, ctx: DistContext, find_unused_parameters: bool) -> nn.Module:
    """DDP when distributed, the module itself otherwise.

    Objectives often leave parameters out of some steps (a quantizer on a frozen path, a head used every other
    batch); ``find_unused_parameters`` keeps DDP from waiting forever for their gradients.
    """
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def gather_objects(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (for RNG / data states and logged metrics)."""
    if not ctx.distributed:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on one, so all ranks take the same branch (skip a step, stop)."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def mean_over_ranks(metrics: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Per-key mean of each rank's metrics; a key missing on some ranks averages over the ranks that have it."""
    per_rank = gather_objects(metrics, ctx)
    keys = sorted({key for rank_metrics in per_rank for key in rank_metrics})
    return {key: mean_or_nan([m[key] for m in per_rank if key in m]) for key in keys}


def sum_over_ranks(value: float, ctx: DistContext) -> float:
    return float(sum(gather_objects(value, ctx)))


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_or_nan(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")
