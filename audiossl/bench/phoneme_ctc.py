"""Phoneme recognition (SUPERB PR): a linear CTC head over a learned weighted sum of frozen layers, PER.

Trained on the training split's ``.phn`` labels until the dev PER stops improving (``ctc_probe``); one
run per profile seed, reported as mean and spread.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow, mean_and_std
from audiossl import metrics
from audiossl.bench.ctc_probe import CTCProbeConfig, fit_ctc_probe, predict_split
from audiossl.asr.decode import GreedyDecoder
from audiossl.features.frozen import FrozenSplit
from audiossl.asr.vocab import Vocabulary


def references(split: FrozenSplit, vocab: Vocabulary) -> list[str]:
    return [vocab.to_text(line.split()) for line in split.labels["phn"]]


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    profile = cfg.settings
    train, dev = features.split(cfg.train_split), features.split(cfg.dev_split)
    tests = {name: features.split(name) for name in profile.test_splits}
    vocab = Vocabulary.from_dict_file(Path(cfg.manifest_dir) / "dict.phn.txt")
    targets = [vocab.encode(line, utt) for line, utt in zip(train.labels["phn"], train.ids)]
    decode = GreedyDecoder(vocab)
    dev_refs = references(dev, vocab)

    def dev_error(hypotheses: list[str]) -> float:
        return float(metrics.phone_error_rate(dev_refs, hypotheses)["per"])

    results: dict[str, list[float]] = {"dev_per": [], **{f"{name}_per": [] for name in tests}}
    curves, details = {}, {}
    for seed in profile.seeds:
        probe_cfg = CTCProbeConfig(head="linear", lr=1e-2, max_epochs=profile.ctc_max_epochs,
                                   patience=profile.ctc_patience, seed=seed)
        fitted = fit_ctc_probe(train, targets, dev, dev_error, decode, len(vocab), probe_cfg)
        results["dev_per"].append(fitted.best_dev_error)
        for name, split in tests.items():
            hypotheses = predict_split(fitted.probe, split, decode, probe_cfg.batch_frames)
            results[f"{name}_per"].append(float(metrics.phone_error_rate(references(split, vocab), hypotheses)["per"]))
        curves[f"seed {seed}"] = vars(fitted.curve)
        details[f"seed {seed}"] = {"best_epoch": fitted.best_epoch, "layer_weights": fitted.probe.mix.layer_weights()}
    scores = {}
    for key, values in results.items():
        scores[key], scores[f"{key}_std"] = mean_and_std(values)
    return BenchRow(features.name, "phoneme", scores, {}, curves, details | {"seeds": profile.seeds})
