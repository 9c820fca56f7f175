"""Accent identification on unseen voices: does an upstream encode how words are pronounced, not who says them?

The clips come from ``audiossl-accents`` (``audiossl.data.synth.accents``): every espeak voice
reads the same sentences in every accent, so neither the voice nor the text says which accent a clip has,
and train, dev and test voices (and sentences) are disjoint. The probe trains on ``train``, its L2 is chosen
on ``dev`` and it is scored on ``test``; a probe that learnt voices or words instead of accents scores at
chance. Chance is reported as the test share of the training split's most frequent accent (1/8 on the
balanced set), so a row stays readable on a set built with other sizes.

Items are ``accent_seconds`` windows (``crops_per_utterance`` per clip, mean-pooled frames, no CMVN, which
would subtract the mean the probe reads), so each profile seed draws other windows; ``accent_seconds: 0``
uses whole clips instead, and then the seeds change nothing.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.bench import clips
from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.config import ConfigError
from audiossl.data.synth.accents import LABEL, SPLITS


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    directory = Path(cfg.accent_manifest_dir)
    missing = [f"{split}.{kind}" for split in SPLITS for kind in ("tsv", LABEL, "spk")
               if not (directory / f"{split}.{kind}").is_file()]
    if missing:
        raise ConfigError(f"invalid config at 'accent_manifest_dir': {directory} lacks {missing}; build the accent "
                          f"set with audiossl-accents manifest_dir={directory}")
    splits = {part: features.split(part, cmvn=False, manifest_dir=str(directory)) for part in SPLITS}
    labels = {part: [line.strip() for line in split.labels[LABEL]] for part, split in splits.items()}
    voices = {part: {line.strip() for line in split.labels["spk"]} for part, split in splits.items()}
    classes = clips.class_index(labels["train"])
    for part in ("dev", "test"):
        unknown = sorted(set(labels[part]) - set(classes))
        if unknown:
            raise ConfigError(f"invalid config at 'accent_manifest_dir': {directory / part}.{LABEL} has accents no "
                              f"training clip has: {unknown}")
        heard = sorted(voices[part] & voices["train"])
        if heard:
            raise ConfigError(f"invalid config at 'accent_manifest_dir': {part} voices {heard[:5]} also read in train, "
                              "so the probe could score voices; rebuild the set with audiossl-accents")
    results = {}
    for seed in cfg.settings.seeds:
        windows = {part: clips.draw_windows(splits[part], list(range(len(labels[part]))), cfg.accent_seconds,
                                            cfg.crops_per_utterance, seed) for part in SPLITS}
        targets = {part: clips.window_targets(windows[part], labels[part], classes) for part in SPLITS}
        result = clips.probe_layers(splits["train"].num_layers,
                                    lambda layer, part: clips.pool(splits[part], layer, windows[part]), targets,
                                    len(classes), cfg.settings.probe_iterations)
        majority = int(targets["train"].bincount(minlength=len(classes)).argmax())
        result.extra["chance_accuracy"] = float((targets["test"] == majority).float().mean())
        results[seed] = result
    details = {"accents": sorted(classes), "manifest_dir": str(directory),
               "voices": {part: len(names) for part, names in voices.items()},
               "clips": {part: len(lines) for part, lines in labels.items()},
               "accent_seconds": cfg.accent_seconds, "crops_per_utterance": cfg.crops_per_utterance}
    return clips.seeded_row(features.name, "accent", results, details)
