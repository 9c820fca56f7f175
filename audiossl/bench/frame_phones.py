"""Frame phone classification (the CPC paper's linear probe): one phone per frame, per layer and mixed.

Each frame is labelled with the ``.align`` phone at its receptive-field centre (``FrameGrid``); a linear
probe is fitted to convergence by L-BFGS on every hidden state alone and on a learned softmax mix of
all of them (SUPERB's weighted sum). The headline is the best single layer, chosen on dev.
"""

from __future__ import annotations

import torch
from torch import Tensor

from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.data.manifest import parse_alignment
from audiossl.features.frozen import FrozenSplit
from audiossl.bench.probe import LinearProbe, fit_probe
from audiossl.downstream.base import IGNORE
from audiossl.downstream.frame_phones import frame_phones

L2 = 1e-5


def phone_inventory(split: FrozenSplit) -> dict[str, int]:
    phones = sorted({segment[0] for line, utt in zip(split.labels["align"], split.ids)
                     for segment in parse_alignment(line, utt)})
    return {phone: index for index, phone in enumerate(phones)}


def frame_targets(split: FrozenSplit, index: dict[str, int]) -> Tensor:
    """``(frames,)`` phone index per stored frame (``IGNORE`` where no segment or an unknown phone)."""
    per_utterance = []
    for line, utt, count in zip(split.labels["align"], split.ids, split.frame_counts().tolist()):
        segments = [segment for segment in parse_alignment(line, utt) if segment[0] in index]
        per_utterance.append(frame_phones(segments, utt, split.grid.centres(count), index))
    return torch.cat(per_utterance)


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    profile = cfg.settings
    train, dev = features.split(cfg.train_split), features.split(cfg.dev_split)
    tests = {name: features.split(name) for name in profile.test_splits}
    index = phone_inventory(train)
    y_train = frame_targets(train, index)
    keep = (y_train != IGNORE) & (torch.arange(len(y_train)) % profile.frame_stride == 0)
    scored = {name: (split, frame_targets(split, index)) for name, split in {"dev": dev, **tests}.items()}

    def fit(layers: list[int]) -> tuple[LinearProbe, dict[str, float]]:
        dev_mask = scored["dev"][1] != IGNORE
        probe = fit_probe([train.layers[i][keep] for i in layers], y_train[keep], len(index),
                          dev=[dev.layers[i][dev_mask] for i in layers], dev_targets=scored["dev"][1][dev_mask],
                          l2=L2, max_iterations=profile.probe_iterations)
        accuracies = {}
        for name, (split, targets) in scored.items():
            mask = targets != IGNORE
            accuracies[name] = probe.accuracy([split.layers[i][mask] for i in layers], targets[mask])
        return probe, accuracies

    per_layer: dict[str, list[float]] = {f"{name}_accuracy": [] for name in scored}
    curves = {}
    for layer in range(train.num_layers):
        probe, accuracies = fit([layer])
        for name, value in accuracies.items():
            per_layer[f"{name}_accuracy"].append(value)
        curves[f"layer {layer}"] = vars(probe.curve)
    best = max(range(train.num_layers), key=lambda layer: per_layer["dev_accuracy"][layer])
    scores = {f"{name}_accuracy": per_layer[f"{name}_accuracy"][best] for name in scored}
    details = {"best_layer": best, "classes": len(index), "train_frames": int(keep.sum()), "l2": L2}
    if train.num_layers > 1:
        probe, accuracies = fit(list(range(train.num_layers)))
        scores |= {f"weighted_{name}_accuracy": value for name, value in accuracies.items()}
        curves["weighted"] = vars(probe.curve)
        details["layer_weights"] = probe.layer_weights()
    return BenchRow(features.name, "phone_frames", scores, per_layer, curves, details)
