"""Keyword spotting (SUPERB KS): 10 keywords, ``_unknown_`` and ``_silence_`` on 1 s clips of unseen speakers.

The clips come from ``audiossl-keywords`` (``audiossl.data.synth.keywords``): espeak voices
disjoint between train, dev and test, plus a ``test_other`` condition through the corpus's corruptions.
Each clip is its mean frame (SUPERB KS's pooling; no CMVN, which would zero that mean) fed to the linear
probe; the score is accuracy over the twelve classes on every test condition (``keywords_test_splits``).

As in Speech Commands recipes, ``_unknown_`` and ``_silence_`` are drawn, and that is what each profile
seed draws anew: per part, ``_unknown_`` is a random subset of the other-word clips, and ``_silence_`` are
1 s windows of the part's background noise files (the encoder heard the whole noise file, the window is
cut from its frames), both as many as an average keyword class, so the twelve classes are balanced and
chance is 1/12. A clip's draw depends on its path inside the set, so ``test`` and ``test_other`` draw the
same clips and windows.
"""

from __future__ import annotations

import math
from pathlib import Path

from audiossl.bench import clips
from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.config import ConfigError
from audiossl.data.pipeline import stable_int
from audiossl.data.synth.keywords import CLASSES, CLIP_SAMPLES, KEYWORDS, SILENCE, UNKNOWN
from audiossl.audio.espeak import SAMPLE_RATE
from audiossl.features.frozen import FrozenSplit


def clip_name(utterance_id: str) -> str:
    """The path inside the set (``yes/0000008c_nohash_0.wav``), the same for a clip and its corrupted copy."""
    return utterance_id.split("/", 1)[-1]


def draw_items(split: FrozenSplit, labels: list[str], seed: int) -> list[clips.Window]:
    """Every keyword clip whole, then a class-sized draw of ``_unknown_`` clips and of ``_silence_`` windows."""
    names = [clip_name(utterance) for utterance in split.ids]
    whole = clips.draw_windows(split, [r for r, label in enumerate(labels) if label in KEYWORDS], 0, 1, seed)
    size = max(1, round(len(whole) / max(1, len({labels[row] for row, _, _ in whole}))))
    unknown = sorted((r for r, label in enumerate(labels) if label == UNKNOWN),
                     key=lambda row: stable_int(seed, names[row]))[:size]
    noise = [r for r, label in enumerate(labels) if label == SILENCE]
    per_file = math.ceil(size / max(1, len(noise)))
    windows = clips.draw_windows(split, noise, CLIP_SAMPLES / SAMPLE_RATE, per_file, seed, names)
    interleaved = sorted(range(len(windows)), key=lambda index: (index % per_file, index // per_file))
    silence = [windows[index] for index in interleaved][:size]
    return whole + clips.draw_windows(split, unknown, 0, 1, seed) + silence


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    directory = Path(cfg.keywords_manifest_dir)
    names = {"train": "train", "dev": "dev", **{name: name for name in cfg.keywords_test_splits}}
    missing = [f"{name}.tsv" for name in names.values() if not (directory / f"{name}.tsv").is_file()]
    if missing:
        raise ConfigError(f"invalid config at 'keywords_manifest_dir': {directory} lacks {missing}; build the "
                          f"keyword set with audiossl-keywords manifest_dir={directory}")
    splits = {part: features.split(name, cmvn=False, manifest_dir=str(directory)) for part, name in names.items()}
    labels = {part: [line.strip() for line in split.labels.get("kw", [])] for part, split in splits.items()}
    classes = {label: index for index, label in enumerate(CLASSES)}
    for part, lines in labels.items():
        strange = sorted(set(lines) - set(classes))
        if strange or not lines:
            raise ConfigError(f"invalid config at 'keywords_manifest_dir': {directory / names[part]}.kw has no "
                              f"labels or labels outside the 12 classes: {strange[:5]}")
    results = {}
    for seed in cfg.settings.seeds:
        windows = {part: draw_items(splits[part], labels[part], seed) for part in names}
        targets = {part: clips.window_targets(windows[part], labels[part], classes) for part in names}
        results[seed] = clips.probe_layers(splits["train"].num_layers,
                                           lambda layer, part: clips.pool(splits[part], layer, windows[part]),
                                           targets, len(classes), cfg.settings.probe_iterations)
    details = {"classes": len(classes), "files": {names[part]: len(lines) for part, lines in labels.items()},
               "speakers": {names[part]: len({s for s in split.labels["spk"] if s != "noise"})
                            for part, split in splits.items()}}
    return clips.seeded_row(features.name, "keywords", results, details)
