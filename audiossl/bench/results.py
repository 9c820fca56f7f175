"""One row of the bench table: an (upstream, task) result with its curves, saved as it completes."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchRow:
    """``scores``: headline numbers (fractions; ``*_std`` keys hold the spread over seeds).

    ``per_layer``: a score per hidden state (``{"dev_accuracy": [...]}``); ``curves``: training curves
    that show the probe converged; ``details``: anything else worth printing (chosen layer, L2, weights).
    """

    upstream: str
    task: str
    scores: dict[str, float]
    per_layer: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(_finite(asdict(self)), indent=1) + "\n")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> BenchRow:
        return cls(**json.loads(path.read_text()))


def _finite(value: Any) -> Any:
    """NaN is not JSON: store it as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def mean_and_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread
