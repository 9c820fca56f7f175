"""Speaker identification on short windows: hundreds of test items where ``speaker`` has tens.

Whole-utterance speaker ID saturates on the embedded corpus (a random encoder already scores 90 % on
its 80 test utterances), so it cannot rank systems; a ``crop_seconds`` window (1 s: a word or two)
carries much less speaker evidence, and drawing ``crops_per_utterance`` windows per held-out utterance
multiplies the test items. Utterances and speakers are those of the ``speaker`` task (the training
split's speakers, ``speaker_holdout``), so the two rows are comparable.

Each window is the mean of its frames, the pooling SUPERB's speaker probe and ``speaker`` use: a linear
probe on the mean frame scores how linearly the speaker can be read from frames on average, with no
pooling parameters that a richer upstream could exploit unevenly; per-utterance CMVN is off, since it
would subtract exactly that mean. The window is cut from the frames of the whole utterance: the encoder
heard the utterance, not the window alone, so a contextual encoder may carry speaker evidence from
outside the window into it (front-ends cannot).
"""

from __future__ import annotations

from audiossl.bench import clips
from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.bench.speaker_id import held_out


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    split = features.split(cfg.train_split, cmvn=False)
    speakers, *parts = held_out(split, cfg)
    classes = clips.class_index(speakers)
    results = {}
    for seed in cfg.settings.seeds:
        windows = {name: clips.draw_windows(split, rows, cfg.crop_seconds, cfg.crops_per_utterance, seed)
                   for name, rows in zip(("train", "dev", "test"), parts)}
        targets = {name: clips.window_targets(items, speakers, classes) for name, items in windows.items()}
        results[seed] = clips.probe_layers(split.num_layers, lambda layer, name: clips.pool(split, layer, windows[name]),
                                           targets, len(classes), cfg.settings.probe_iterations)
    details = {"speakers": len(classes), "utterances": [len(rows) for rows in parts],
               "crop_seconds": cfg.crop_seconds, "crops_per_utterance": cfg.crops_per_utterance}
    return clips.seeded_row(features.name, "speaker_crops", results, details)
