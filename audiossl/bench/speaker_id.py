"""Speaker identification from mean-pooled frozen features (SUPERB SID / the CPC paper's speaker probe).

Held-out utterances of the training split's own speakers (``speaker_holdout``: per speaker, sorted by id,
one in ten to test and one in ten to dev), mean-pooled per layer without CMVN (it would erase the mean
that carries the speaker), then an L-BFGS logistic regression with its L2 strength chosen on dev.
The headline is the test accuracy of the best dev layer.
"""

from __future__ import annotations

import torch

from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.config import ConfigError
from audiossl.bench.probe import fit_best_l2
from audiossl.downstream.speaker import speaker_holdout
from audiossl.features.frozen import FrozenSplit

HOLDOUT = 0.1


def held_out(split: FrozenSplit, cfg: BenchConfig) -> tuple[list[str], list[int], list[int], list[int]]:
    """Each utterance's speaker, and the train / dev / test rows of ``speaker_holdout``."""
    speakers = [s.strip() for s in split.labels["spk"]]
    train, dev, test = speaker_holdout(split.ids, speakers, HOLDOUT)
    if not dev or not test:
        raise ConfigError(f"invalid config at 'train_split': {cfg.train_split} has fewer than {round(1 / HOLDOUT)} "
                          "utterances per speaker, too few to hold some out for dev and test")
    return speakers, train, dev, test


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    split = features.split(cfg.train_split, cmvn=False)
    speakers, train, dev, test = held_out(split, cfg)
    classes = {speaker: index for index, speaker in enumerate(sorted(set(speakers)))}
    targets = torch.tensor([classes[s] for s in speakers])
    per_layer: dict[str, list[float]] = {"dev_accuracy": [], "test_accuracy": []}
    curves, l2s = {}, []
    for layer in range(split.num_layers):
        pooled = torch.stack([split.utterance(layer, i).float().mean(0) for i in range(len(split.ids))])
        probe = fit_best_l2([pooled[train]], targets[train], len(classes), [pooled[dev]], targets[dev],
                            max_iterations=cfg.settings.probe_iterations)
        per_layer["dev_accuracy"].append(probe.curve.dev_accuracy[-1])
        per_layer["test_accuracy"].append(probe.accuracy([pooled[test]], targets[test]))
        curves[f"layer {layer}"] = vars(probe.curve)
        l2s.append(probe.l2)
    best = max(range(split.num_layers), key=lambda layer: (per_layer["dev_accuracy"][layer], -layer))
    scores = {key: values[best] for key, values in per_layer.items()}
    details = {"best_layer": best, "speakers": len(classes), "utterances": [len(train), len(dev), len(test)],
               "l2": l2s[best]}
    return BenchRow(features.name, "speaker", scores, per_layer, curves, details)
