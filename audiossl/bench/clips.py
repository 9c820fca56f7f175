"""What the clip-level tasks share: seeded windows over stored frames, mean pooling, per-layer probes, seeds.

A clip task turns each item (a window of an utterance, or a whole clip) into one vector per layer and
fits ``probe.fit_best_l2`` on it per layer. The probes are deterministic, so the only chance left in a
row is which windows and clips were drawn: each profile seed draws them anew, and a row reports the
mean and sample standard deviation over seeds, which says how far apart two systems must be to differ.

Windows are cut from the frames of the whole encoded utterance (``UpstreamFeatures`` encodes each file
once), so a contextual encoder has heard the audio around a window; encoding every crop alone would
multiply the encoding cost by the number of crops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from audiossl.bench.probe import fit_best_l2
from audiossl.bench.results import BenchRow, mean_and_std
from audiossl.data.pipeline import stable_int
from audiossl.features.frozen import FrozenSplit

Window = tuple[int, int, int]
"""``(utterance row, first frame, number of frames)``."""


def window_frames(split: FrozenSplit, seconds: float) -> int:
    """Frames in ``seconds`` on the split's frame grid (at least one)."""
    return max(1, round(seconds * split.grid.sample_rate / split.grid.stride))


def draw_windows(split: FrozenSplit, rows: list[int], seconds: float, count: int, seed: int,
                 names: list[str] | None = None) -> list[Window]:
    """``count`` windows of ``seconds`` per utterance at uniform random starts; ``seconds == 0``: whole utterances.

    Each utterance draws from its own generator, seeded by ``seed`` and its name (default: its id), so its
    windows do not depend on the manifest order or on which other utterances are drawn, and two copies of a
    file given the same name (a clean and a corrupted one) get the same windows. An utterance no longer
    than a window gives one window, the whole utterance (repeating it would only weigh it more).
    """
    names = names or split.ids
    counts = split.frame_counts()
    size = window_frames(split, seconds) if seconds > 0 else None
    windows = []
    for row in rows:
        frames = int(counts[row])
        if size is None or frames <= size:
            windows.append((row, 0, frames))
            continue
        rng = np.random.default_rng([seed, stable_int(names[row])])
        windows += [(row, int(start), size) for start in rng.integers(0, frames - size + 1, count)]
    return windows


def pool(split: FrozenSplit, layer: int, windows: list[Window]) -> Tensor:
    """``(len(windows), dim)``: the mean frame of each window of ``layer``."""
    frames = split.layers[layer]
    pooled = [frames[int(split.offsets[row]) + start: int(split.offsets[row]) + start + size].float().mean(0)
              for row, start, size in windows]
    return torch.stack(pooled) if pooled else torch.zeros(0, frames.shape[1])


@dataclass
class SeedResult:
    """One seed's probes: accuracy per layer on dev and on each test set, and each layer's curve."""

    dev_accuracy: list[float] = field(default_factory=list)
    test_accuracy: dict[str, list[float]] = field(default_factory=dict)
    curves: list[dict] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)  # seed-dependent scores of the task (chance level)

    @property
    def best_layer(self) -> int:
        """The best dev layer; ties go to the lower layer."""
        return max(range(len(self.dev_accuracy)), key=lambda layer: (self.dev_accuracy[layer], -layer))


def probe_layers(num_layers: int, inputs: Callable[[int, str], Tensor], targets: dict[str, Tensor],
                 num_classes: int, iterations: int) -> SeedResult:
    """A probe per layer, trained on ``train``, L2 chosen on ``dev``, scored on every other part of ``targets``.

    ``inputs(layer, part)`` gives the pooled items of ``part`` in the order of ``targets[part]``.
    """
    tests = [part for part in targets if part not in ("train", "dev")]
    result = SeedResult(test_accuracy={part: [] for part in tests},
                        items={part: len(values) for part, values in targets.items()})
    for layer in range(num_layers):
        probe = fit_best_l2([inputs(layer, "train")], targets["train"], num_classes, [inputs(layer, "dev")],
                            targets["dev"], max_iterations=iterations)
        result.dev_accuracy.append(probe.curve.dev_accuracy[-1])
        for part in tests:
            result.test_accuracy[part].append(probe.accuracy([inputs(layer, part)], targets[part]))
        result.curves.append(vars(probe.curve))
        result.l2.append(probe.l2)
    return result


def seeded_row(upstream: str, task: str, results: dict[int, SeedResult], details: dict) -> BenchRow:
    """Mean and sample std over seeds of every score at each seed's best dev layer; per-seed values in details.

    Test part ``test`` is reported as ``test_accuracy``, any other part ``p`` as ``p_accuracy``.
    """
    first = next(iter(results.values()))
    series: dict[str, list[float]] = {"dev_accuracy": [r.dev_accuracy[r.best_layer] for r in results.values()]}
    per_layer = {"dev_accuracy": _layer_means([r.dev_accuracy for r in results.values()])}
    for part in first.test_accuracy:
        key = "test_accuracy" if part == "test" else f"{part}_accuracy"
        series[key] = [r.test_accuracy[part][r.best_layer] for r in results.values()]
        per_layer[key] = _layer_means([r.test_accuracy[part] for r in results.values()])
    for key in first.extra:
        series[key] = [r.extra[key] for r in results.values()]
    scores = {}
    for key, values in series.items():
        scores[key], scores[f"{key}_std"] = mean_and_std(values)
    curves = {f"seed {seed} layer {layer}": curve for seed, r in results.items() for layer, curve in enumerate(r.curves)}
    per_seed = {f"seed {seed}": {"best_layer": r.best_layer, "l2": r.l2[r.best_layer], "items": r.items,
                                 **{key: values[index] for key, values in series.items()}}
                for index, (seed, r) in enumerate(results.items())}
    return BenchRow(upstream, task, scores, per_layer, curves,
                    {"seeds": list(results), "best_layer": first.best_layer, "items": first.items} | details | per_seed)


def _layer_means(values: list[list[float]]) -> list[float]:
    return [sum(column) / len(column) for column in zip(*values)]


def class_index(labels: list[str]) -> dict[str, int]:
    return {label: index for index, label in enumerate(sorted(set(labels)))}


def window_targets(windows: list[Window], labels: list[str], classes: dict[str, int]) -> Tensor:
    return torch.tensor([classes[labels[row]] for row, _, _ in windows], dtype=torch.int64)
