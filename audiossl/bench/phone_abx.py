"""ABX phone discriminability of frozen features (libri-light protocol, ``downstream.abx``).

Within- and across-speaker error, within-context, on each ABX split (dev, and test in the full profile),
for the layer that classified phones best (``phone_frames`` row of the same upstream; quick profile) or
for every layer (full profile). The headline is the layer with the lowest across-speaker error on dev.
"""

from __future__ import annotations

from audiossl.bench.config import BenchConfig
from audiossl.bench.features import UpstreamFeatures
from audiossl.bench.results import BenchRow
from audiossl.bench.abx import abx_error, phone_items


def layers_to_score(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> list[int]:
    count = features.split(cfg.dev_split).num_layers
    if cfg.settings.abx_layers == "all" or count == 1:
        return list(range(count))
    phones = done.get("phone_frames")
    return [int(phones.details["best_layer"])] if phones is not None else [count - 1]


def run(features: UpstreamFeatures, cfg: BenchConfig, done: dict[str, BenchRow]) -> BenchRow:
    layers = layers_to_score(features, cfg, done)
    per_layer: dict[str, list[float]] = {}
    items_count = {}
    for split_name in cfg.settings.abx_splits:
        split = features.split(split_name)
        items = phone_items(split.ids, split.labels["align"], split.labels["spk"])
        items_count[split_name] = len(items)
        for layer in layers:
            score = abx_error(split, layer, items)
            per_layer.setdefault(f"{split_name}_within", []).append(score.within)
            per_layer.setdefault(f"{split_name}_across", []).append(score.across)
    dev = cfg.dev_split if cfg.dev_split in cfg.settings.abx_splits else cfg.settings.abx_splits[0]
    best = min(range(len(layers)), key=lambda i: per_layer[f"{dev}_across"][i])
    scores = {key: values[best] for key, values in per_layer.items()}
    details = {"layers": layers, "best_layer": layers[best], "items": items_count,
               "protocol": "within context; frame-wise angular distance, DTW-averaged (zrc_abx2)"}
    return BenchRow(features.name, "abx", scores, per_layer, {}, details)
