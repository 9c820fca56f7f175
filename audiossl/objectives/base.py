"""The interface every pretext task implements, and the registry the trainer builds them from.

An objective owns an encoder plus whatever heads its loss needs (predictors, quantizer, ...).
Adding a fifth objective means one new module in this package that calls ``register_objective`` and
one YAML file in ``conf/objective/``; nothing else changes (modules here are discovered on import).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn
from typing_extensions import override

from audiossl.config import ConfigError
from audiossl.data.batch import AudioBatch


@dataclass
class ObjectiveOutput:
    """A differentiable ``loss`` (mean over the batch) and detached scalar ``metrics`` for logging.

    ``metrics`` values are 0-dim detached tensors (or plain floats for host-side values such as a
    temperature): the trainer keeps them on the device and reads them back only when a log line is written,
    so no step waits for the host. Names are short and stable (``acc``, ``code_ppl``, ...) because they
    become TensorBoard tags and JSONL keys.
    """

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)


class Objective(nn.Module, abc.ABC):
    """A self-supervised (or, downstream, supervised) task over ``AudioBatch`` es.

    ``encoder`` is the part that survives pretraining: checkpoints store it under the ``encoder.`` prefix
    so fine-tuning can load it whatever objective produced it.
    """

    encoder: nn.Module

    @abc.abstractmethod
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:  # type: ignore[override]
        ...

    def on_update(self, step: int) -> dict[str, float]:
        """Called once after each optimiser update with the new step count.

        Schedules that live in the objective (Gumbel temperature decay) advance here; returned values are logged.
        """
        return {}

    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Human advice when logged metrics look pathological (e.g. wav2vec 2.0 codebook collapse)."""
        return []


class CountsUpdates(Objective):
    """An objective whose behaviour depends on how far training is (a temperature schedule, health warnings
    that wait for the first updates). The count lives in a ``num_updates`` buffer, so checkpoints carry it
    and a resumed run continues where it stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    @override
    def on_update(self, step: int) -> dict[str, float]:
        self.num_updates.fill_(step)
        return {}


def require_causal(encoder: nn.Module, objective: str) -> None:
    """Objectives that predict the future (CPC, APC) are trivial if frame ``t`` has already seen ``t + k``."""
    if not getattr(encoder, "is_causal", False):
        raise ConfigError(f"invalid config at 'encoder.context': {objective} predicts the future, so the context "
                          "network must be causal (gru, lstm, or a transformer with causal=true)")


ObjectiveFactory = Callable[[Any, nn.Module], Objective]


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    config_cls: type
    build: ObjectiveFactory


_REGISTRY: dict[str, ObjectiveSpec] = {}


def register_objective(name: str, config_cls: type) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: ``@register_objective("cpc", CPCConfig)`` on ``class CPC(Objective)``.

    The class must accept ``(config, encoder)``.
    """

    def decorate(cls: type[Objective]) -> type[Objective]:
        if name in _REGISTRY:
            raise ValueError(f"objective {name!r} registered twice")
        _REGISTRY[name] = ObjectiveSpec(name, config_cls, cls)
        return cls

    return decorate


def _discover() -> None:
    package = importlib.import_module("audiossl.objectives")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"audiossl.objectives.{module.name}")


def objective_spec(name: str) -> ObjectiveSpec:
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"objective.name={name!r} is unknown; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def objective_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)
